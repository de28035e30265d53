package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/popbridge/popbridge/store"
)

// What `popbridge verify` does on this store. PostgreSQL checks its own
// pages (with data checksums, when the cluster has them): a damaged row
// shows as an error of the query that reads it (SQLSTATE class XX). So
// Verify reads every message's bytes and texts in full on the server
// (md5 of each forces detoasting and decompression without sending the
// bytes), compares the bytes' length with the recorded size and decodes
// the metadata; a batch that fails is read again message by message to
// name the damaged ones.

// verifyBatch is how many messages one query of Verify checks.
const verifyBatch = 512

// Verify checks every stored message: its bytes are readable and of the
// recorded size, its search texts are readable, its envelope and
// structure decode. Integrity lists rows that break the schema's
// promises (a message without bytes or texts). Packs and Unpacked are
// always empty here (the SQLite store's pack files). progress, when not
// nil, is called with the messages checked so far. It works beside
// running nodes.
func (s *Store) Verify(ctx context.Context, progress func(done int)) (store.VerifyReport, error) {
	var rep store.VerifyReport
	var damaged []store.MessageID
	var after store.MessageID
	for {
		var ids []store.MessageID
		bad, err := s.verifyRange(ctx, after, &ids)
		if err != nil {
			return rep, err
		}
		if len(ids) == 0 {
			break
		}
		damaged = append(damaged, bad...)
		rep.Messages += len(ids)
		after = ids[len(ids)-1]
		if progress != nil {
			progress(rep.Messages)
		}
	}
	for _, id := range damaged {
		d, ok, err := s.describeDamage(ctx, id)
		if err != nil {
			return rep, err
		}
		if ok {
			rep.Damaged = append(rep.Damaged, d)
		}
	}
	for _, q := range []struct{ what, sql string }{
		{"messages without bytes", `SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM message_data d WHERE d.message_id = m.id)`},
		// Since migration 0006 no foreign key rules these out: pgstore
		// never writes them, so any is a bad manual edit or a bug.
		{"chunk rows without their message", `SELECT count(*) FROM message_data d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)`},
		{"messages without search texts", `SELECT count(*) FROM messages m WHERE m.envelope IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM message_text t WHERE t.message_id = m.id)`},
	} {
		var n int64
		if err := s.pool.QueryRow(ctx, q.sql).Scan(&n); err != nil {
			return rep, fmt.Errorf("verify: %w", s.classify(err))
		}
		if n > 0 {
			rep.Integrity = append(rep.Integrity, fmt.Sprintf("%d %s", n, q.what))
		}
	}
	return rep, nil
}

// verifyRange checks the next batch of messages after `after`, appending
// their ids to ids, and returns those that are damaged.
func (s *Store) verifyRange(ctx context.Context, after store.MessageID, ids *[]store.MessageID) ([]store.MessageID, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM messages WHERE id > $1 ORDER BY id LIMIT $2`, after, verifyBatch)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", s.classify(err))
	}
	batch, err := pgx.CollectRows(rows, pgx.RowTo[store.MessageID])
	if err != nil {
		return nil, fmt.Errorf("verify: %w", s.classify(err))
	}
	*ids = append(*ids, batch...)
	if len(batch) == 0 {
		return nil, nil
	}
	bad, err := s.checkMessages(ctx, batch)
	if err == nil {
		return bad, nil
	}
	if !isDataCorrupt(err) {
		return nil, fmt.Errorf("verify: %w", s.classify(err))
	}
	// Some row of the batch cannot be read: one by one.
	bad = nil
	for _, id := range batch {
		b, err := s.checkMessages(ctx, []store.MessageID{id})
		switch {
		case isDataCorrupt(err):
			bad = append(bad, id)
		case err != nil:
			return nil, fmt.Errorf("verify: %w", s.classify(err))
		default:
			bad = append(bad, b...)
		}
	}
	return bad, nil
}

// checkMessages reads ids in full on the server and returns those whose
// bytes, texts or metadata are wrong.
func (s *Store) checkMessages(ctx context.Context, ids []store.MessageID) ([]store.MessageID, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.id, m.size, m.envelope, m.structure, d.n, coalesce(d.ok, false),
			m.envelope IS NULL OR (md5(t.header_text) IS NOT NULL AND md5(t.body_text) IS NOT NULL)
		FROM messages m LEFT JOIN LATERAL (`+chunksCheckSQL+`) d ON true LEFT JOIN message_text t ON t.message_id = m.id
		WHERE m.id = ANY ($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var bad []store.MessageID
	for rows.Next() {
		var (
			id             store.MessageID
			size           int64
			env, st        []byte
			n              *int64
			hasData, texts bool
		)
		if err := rows.Scan(&id, &size, &env, &st, &n, &hasData, &texts); err != nil {
			return nil, err
		}
		var metaErr error
		if env != nil { // else not indexed yet: nothing derived to check
			_, _, metaErr = store.DecodeMeta(string(env), string(st))
		}
		if !hasData || n == nil || *n != size || !texts || metaErr != nil {
			bad = append(bad, id)
		}
	}
	return bad, rows.Err()
}

// chunksCheckSQL reads every chunk of the message m on the server (so
// that a damaged page fails the query) and gives the bytes' length n and
// whether the chunks are whole (ok: seq 0 to count-1, all readable);
// both NULL when it has none.
const chunksCheckSQL = `SELECT sum(octet_length(c.data)) AS n, bool_and(md5(c.data) IS NOT NULL) AND min(c.seq) = 0 AND max(c.seq) = count(*) - 1 AS ok
	FROM message_data c WHERE c.message_id = m.id`

// joinedBytesSQL is the bytes of the message m, its chunks joined on the
// server (NULL when it has none): for reads that are not on a hot path.
const joinedBytesSQL = `(SELECT string_agg(c.data, ''::bytea ORDER BY c.seq) FROM message_data c WHERE c.message_id = m.id)`

// isDataCorrupt reports a server error of class XX (internal error, data
// corrupted, index corrupted).
func isDataCorrupt(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code[:2] == "XX"
}

// damageOf checks message id again and tells what is wrong with it: its
// bytes (missing, unreadable, of the wrong size) or only what is derived
// from them (texts, metadata). ok is false when nothing is (any more).
// An unindexed message (indexed false) has no texts or metadata yet.
func (s *Store) damageOf(ctx context.Context, tx pgx.Tx, id store.MessageID, d *store.DamagedMessage, indexed bool) (ok bool, err error) {
	var n *int64
	var whole bool
	err = tx.QueryRow(ctx, `SELECT d.n, coalesce(d.ok, false) FROM messages m
		LEFT JOIN LATERAL (`+chunksCheckSQL+`) d ON true WHERE m.id = $1`, id).Scan(&n, &whole)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // gone meanwhile
	}
	switch {
	case isDataCorrupt(err):
		d.Bytes, d.Err = true, fmt.Errorf("message %d: bytes unreadable: %w: %w", id, store.ErrCorrupt, err)
		return true, nil
	case err != nil:
		return false, err
	case n == nil:
		d.Bytes, d.Err = true, fmt.Errorf("message %d: bytes missing: %w", id, store.ErrCorrupt)
		return true, nil
	case !whole:
		d.Bytes, d.Err = true, fmt.Errorf("message %d: chunks of its bytes missing: %w", id, store.ErrCorrupt)
		return true, nil
	case *n != d.Size:
		d.Bytes, d.Err = true, fmt.Errorf("message %d: %d bytes stored, %d recorded: %w", id, *n, d.Size, store.ErrCorrupt)
		return true, nil
	}
	if !indexed {
		return false, nil
	}
	var texts *bool
	err = tx.QueryRow(ctx, `SELECT md5(header_text) IS NOT NULL AND md5(body_text) IS NOT NULL FROM message_text WHERE message_id = $1`, id).Scan(&texts)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		d.Err = fmt.Errorf("message %d: search texts missing: %w", id, store.ErrCorrupt)
		return true, nil
	case isDataCorrupt(err):
		d.Err = fmt.Errorf("message %d: search texts unreadable: %w: %w", id, store.ErrCorrupt, err)
		return true, nil
	case err != nil:
		return false, err
	}
	if d.Err != nil { // the metadata did not decode
		return true, nil
	}
	return false, nil
}

// describeDamage reads message id again and, when it is still damaged,
// describes it: where it is filed and where it came from. The damage is
// checked last: a read of a damaged row aborts the transaction.
func (s *Store) describeDamage(ctx context.Context, id store.MessageID) (store.DamagedMessage, bool, error) {
	d := store.DamagedMessage{Message: id}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return d, false, fmt.Errorf("describe damaged message: %w", s.classify(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	found, err := s.describe(ctx, tx, id, &d)
	if err != nil {
		return d, false, fmt.Errorf("describe damaged message %d: %w", id, s.classify(err))
	}
	return d, found, nil
}

func (s *Store) describe(ctx context.Context, tx pgx.Tx, id store.MessageID, d *store.DamagedMessage) (bool, error) {
	var (
		date    time.Time
		env, st []byte
	)
	err := tx.QueryRow(ctx, `SELECT size, internal_date, envelope, structure FROM messages WHERE id = $1`, id).Scan(&d.Size, &date, &env, &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d.Date = date.UTC()
	if env != nil { // else not indexed yet: no envelope stored
		if e, _, err := store.DecodeMeta(string(env), string(st)); err != nil {
			d.Err = fmt.Errorf("message %d: metadata: %w: %w", id, store.ErrCorrupt, err)
		} else if e != nil {
			d.Subject = e.Subject
			if len(e.From) > 0 {
				d.From = e.From[0].Mailbox + "@" + e.From[0].Host
			}
		}
	}
	rows, err := tx.Query(ctx, `SELECT u.name, u.id, mb.name, mb.id, mm.uid FROM mailbox_messages mm
		JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN users u ON u.id = mb.user_id
		WHERE mm.message_id = $1 ORDER BY u.name, mb.name, mm.uid`, id)
	if err != nil {
		return false, err
	}
	d.Entries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MailboxEntry, error) {
		var e store.MailboxEntry
		var uid int64
		err := r.Scan(&e.User, &e.UserID, &e.Mailbox, &e.MailboxID, &uid)
		e.UID = store.UID(uid)
		return e, err
	})
	if err != nil {
		return false, err
	}
	rows, err = tx.Query(ctx, `SELECT account, uidl, digest FROM pop_ledger WHERE message_id = $1 ORDER BY id`, id)
	if err != nil {
		return false, err
	}
	d.Origins, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Origin, error) {
		var o store.Origin
		err := r.Scan(&o.Account, &o.UIDL, &o.Digest)
		return o, err
	})
	if err != nil {
		return false, err
	}
	return s.damageOf(ctx, tx, id, d, env != nil)
}

// RawBytes returns the bytes of message id when they are readable, for
// rebuilding its texts; an error wrapping store.ErrCorrupt when they are
// not, store.ErrNotFound when there is no such message.
func (s *Store) RawBytes(ctx context.Context, id store.MessageID) ([]byte, error) {
	var (
		raw  []byte
		size int64
	)
	err := s.read(ctx, "message bytes", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT m.size, `+joinedBytesSQL+` FROM messages m WHERE m.id = $1`, id).Scan(&size, &raw)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("message %d: %w", id, store.ErrNotFound)
		case isDataCorrupt(err):
			return fmt.Errorf("message %d: %w: %w", id, store.ErrCorrupt, err)
		case err != nil:
			return err
		case raw == nil || int64(len(raw)) != size:
			return fmt.Errorf("message %d: %d bytes stored, %d recorded: %w", id, len(raw), size, store.ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// ReplaceMessage stores raw as the content of message id, as `popbridge
// verify -repair` does with a copy fetched again, texts rebuilt from
// intact bytes, or a notice in place of lost bytes. Every mailbox entry
// and ledger row of id moves to a new message (a new MessageID, parsed
// and indexed) in one transaction, keeping its UID and flags, and id is
// deleted: messages stay immutable, so no node's metadata cache can serve
// the old envelope for the new bytes. Callers check that raw is the
// message's content (the ledger's digest).
func (s *Store) ReplaceMessage(ctx context.Context, id store.MessageID, raw []byte) error {
	pm := s.parse(raw)
	return s.write(ctx, "replace message", func(w *wtx) error {
		var date time.Time
		var zone int32
		err := w.QueryRow(w.ctx, `SELECT internal_date, internal_zone FROM messages WHERE id = $1 FOR UPDATE`, id).Scan(&date, &zone)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("message %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		nid, err := insertMessage(w, &pm, date.In(time.FixedZone("", int(zone))))
		if err != nil {
			return err
		}
		if _, err := w.Exec(w.ctx, `UPDATE mailbox_messages SET message_id = $1 WHERE message_id = $2`, nid, id); err != nil {
			return fmt.Errorf("move entries of message %d: %w", id, err)
		}
		if _, err := w.Exec(w.ctx, `UPDATE pop_ledger SET message_id = $1 WHERE message_id = $2`, nid, id); err != nil {
			return fmt.Errorf("move ledger rows of message %d: %w", id, err)
		}
		if _, err := w.Exec(w.ctx, `DELETE FROM messages WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete message %d: %w", id, err)
		}
		return nil
	})
}

// Quarantine moves the entry uid of mailbox src of user u into the user's
// store.DamagedMailbox (created when missing) and returns its new UID.
func (s *Store) Quarantine(ctx context.Context, u store.UserID, src store.MailboxID, uid store.UID) (store.UID, error) {
	dst, err := s.MailboxByName(ctx, u, store.DamagedMailbox)
	if errors.Is(err, store.ErrNotFound) {
		dst, err = s.CreateMailbox(ctx, u, store.DamagedMailbox, "")
		if errors.Is(err, store.ErrExists) { // another node was first
			dst, err = s.MailboxByName(ctx, u, store.DamagedMailbox)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	if dst.ID == src {
		return uid, nil
	}
	res, err := s.Move(ctx, u, src, []store.UID{uid}, dst.ID)
	if err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	if len(res.Dest) != 1 {
		return 0, fmt.Errorf("quarantine uid %d: %w", uid, store.ErrNotFound)
	}
	return res.Dest[0], nil
}
