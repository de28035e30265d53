package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Indexing. Deliver stores a message's bytes (durably, with its ledger row
// and mailbox entry) without parsing it: on a first fetch of thousands of
// messages, parsing was most of the store's CPU, and nothing about the
// message's safety depends on it. The message is "unindexed" until the
// indexer has parsed it and stored its envelope, structure and texts; the
// indexer runs in the background once deliveries have paused for
// indexQuiet, and on Open. Until then every read that needs what parsing
// gives computes it on demand from the stored bytes with the same parser,
// so an unindexed message answers exactly as an indexed one: Meta parses
// and caches it; SearchText parses it for its texts. Append (an IMAP
// client's upload, one message) indexes at once.

// indexQuiet is how long deliveries must pause before the indexer runs, so
// that a large fetch is not slowed by indexing the messages it just
// stored.
const indexQuiet = 250 * time.Millisecond

// indexBatch is how many messages the indexer parses per transaction.
const indexBatch = 128

// encodedMeta is a parsed message's metadata in its stored (binary) form
// and decoded, for the metadata cache.
type encodedMeta struct {
	env, st []byte
	info    *messageInfo
}

// encodeMeta encodes pm's envelope and structure as stored and decodes them
// back exactly as a later read would.
func encodeMeta(pm *parsedMessage, size int64, date string) (encodedMeta, error) {
	env := appendEnvelopeBlob(nil, pm.envelope)
	st := appendStructureBlob(nil, pm.structure)
	arena := joinBlobs(env, st)
	info, err := decodeInfo(size, date, arena[:len(env)], arena[len(env):])
	if err != nil {
		return encodedMeta{}, fmt.Errorf("decode new message metadata: %w", err)
	}
	return encodedMeta{env: env, st: st, info: info}, nil
}

// insertMessage records a message whose bytes are durable in a pack at
// raw (a rawRecord: its header checksummed apart). With pm (and its texts durable at text) the message is stored
// indexed; without, unindexed, for the indexer.
func insertMessage(w *writeTx, raw recordLoc, size int64, date time.Time, pm *parsedMessage, text recordLoc) (MessageID, error) {
	stored := fmtTime(date)
	if pm == nil {
		ins, err := w.stmt(`INSERT INTO messages (size, internal_date, envelope, structure, indexed, pack, pack_off, body_crc, raw_head_len, raw_head_crc)
			VALUES (?, ?, x'', x'', 0, ?, ?, ?, ?, ?) RETURNING id`)
		if err != nil {
			return 0, err
		}
		var id MessageID
		if err := ins.QueryRowContext(w.ctx, size, stored, raw.pack, raw.off, int64(raw.sum), raw.len0, int64(raw.crc[0])).Scan(&id); err != nil {
			return 0, fmt.Errorf("insert message: %w", err)
		}
		return id, nil
	}
	em, err := encodeMeta(pm, size, stored)
	if err != nil {
		return 0, err
	}
	ins, err := w.stmt(`INSERT INTO messages (size, internal_date, envelope, structure, indexed, pack, pack_off, body_crc,
		text_pack, text_off, head_len, text_len, head_crc, text_crc, text_from, raw_head_len, raw_head_crc)
		VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`)
	if err != nil {
		return 0, err
	}
	var id MessageID
	if err := ins.QueryRowContext(w.ctx, size, stored, em.env, em.st, raw.pack, raw.off, int64(raw.sum),
		text.pack, text.off, len(pm.headerText), len(pm.storedBodyText()), int64(text.crc[0]), int64(text.crc[1]), pm.textFromArg(),
		raw.len0, int64(raw.crc[0])).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert message: %w", err)
	}
	w.newMsgs = append(w.newMsgs, id)
	w.newInfos = append(w.newInfos, em.info)
	return id, nil
}

// parseStored reads the bytes of loc through r and parses them. The
// result owns its memory.
func (s *Store) parseStored(r *blobReader, loc blobLoc) (parsedMessage, error) {
	raw, err := r.body(loc)
	if err != nil {
		return parsedMessage{}, err
	}
	return s.parseStoredForm(slices.Clone(raw)), nil
}

// parseAll parses raws, stored bytes, on all the processors.
func (s *Store) parseAll(raws [][]byte) []parsedMessage {
	pms := make([]parsedMessage, len(raws))
	ParallelEach(len(raws), func(i int) { pms[i] = s.parseStoredForm(raws[i]) })
	return pms
}

// startIndexer starts the background indexer: it runs at Open and
// indexQuiet after the last of a series of deliveries.
func (s *Store) startIndexer(hooks *testHooks) {
	s.indexer = StartBackground(indexQuiet, 0, func(ctx context.Context) {
		start := time.Now()
		n, err := s.indexPending(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("index messages", "err", err)
		}
		if n > 0 {
			s.log.Info("indexed messages", "messages", n, "took", time.Since(start).Round(time.Millisecond))
		}
		if hooks != nil && hooks.onIndexed != nil {
			hooks.onIndexed(n, err)
		}
	})
}

// indexPending indexes every unindexed message, a batch per transaction,
// and returns how many it indexed. It stops between batches when ctx is
// cancelled. A message whose bytes cannot be read (ErrCorrupt) is logged
// and passed over: it stays unindexed, and the others are indexed.
func (s *Store) indexPending(ctx context.Context) (int, error) {
	done := 0
	var after MessageID // the batches go up by id, past damaged messages
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		type pending struct {
			id   MessageID
			date string
			loc  blobLoc
		}
		var batch []pending
		var raws [][]byte
		scanned := false
		r := s.blobs.begin()
		err := s.read(ctx, "unindexed messages", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, internal_date, `+locColumns("")+` FROM messages WHERE indexed = 0 AND id > ? ORDER BY id LIMIT ?`, after, indexBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var p pending
				if err := scanLoc(rows, &p.loc, &p.id, &p.date); err != nil {
					return err
				}
				after, scanned = p.id, true
				raw, err := r.body(p.loc)
				if isCorruptRead(err) {
					s.log.Warn("not indexing a damaged message (run popbridge verify)", "message", int64(p.id), "err", err)
					continue
				}
				if err != nil {
					return fmt.Errorf("message %d: %w", p.id, err)
				}
				batch = append(batch, p)
				raws = append(raws, slices.Clone(raw))
			}
			return rows.Err()
		})
		r.end()
		if err != nil {
			return done, err
		}
		if len(batch) == 0 {
			if scanned {
				continue // a batch of damaged messages only
			}
			return done, nil
		}
		pms := s.parseAll(raws)
		metas := make([]encodedMeta, len(pms))
		recs := make([]blobRec, len(pms))
		for i := range pms {
			if metas[i], err = encodeMeta(&pms[i], batch[i].loc.size, batch[i].date); err != nil {
				return done, fmt.Errorf("message %d: %w", batch[i].id, err)
			}
			recs[i] = textRecord(&pms[i])
		}
		err = s.writeRecords(ctx, "index messages", recs, func(w *writeTx, locs []recordLoc) error {
			upd, err := w.stmt(`UPDATE messages SET envelope = ?, structure = ?, text_pack = ?, text_off = ?, head_len = ?, text_len = ?,
				head_crc = ?, text_crc = ?, text_from = ?, indexed = 1 WHERE id = ? AND indexed = 0`)
			if err != nil {
				return err
			}
			for i, p := range batch {
				res, err := upd.ExecContext(w.ctx, metas[i].env, metas[i].st, locs[i].pack, locs[i].off,
					len(pms[i].headerText), len(pms[i].storedBodyText()), int64(locs[i].crc[0]), int64(locs[i].crc[1]), pms[i].textFromArg(), p.id)
				if err != nil {
					return fmt.Errorf("index message %d: %w", p.id, err)
				}
				if n, err := res.RowsAffected(); err == nil && n > 0 {
					w.newMsgs = append(w.newMsgs, p.id)
					w.newInfos = append(w.newInfos, metas[i].info)
				}
			}
			return nil
		})
		if err != nil {
			return done, err
		}
		done += len(batch)
	}
}
