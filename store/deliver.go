package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Staged is a batch of deliveries whose message bytes are durable but not
// yet visible. Both backends return one from Stage.
type Staged interface {
	// Commit runs the batch's one transaction (messages + ledger rows, all
	// or nothing) and returns one Delivered per Delivery, in order. Called
	// at most once.
	Commit(ctx context.Context) ([]Delivered, error)
	// Release gives up a batch that will not be committed (frees its bytes
	// for compaction); a no-op after Commit. Always safe to defer.
	Release()
}

// ErrStagedDone is returned by Staged.Commit called a second time, or after
// Release.
var ErrStagedDone = errors.New("store: staged batch already committed or released")

// Deliver stores every delivery and its ledger row in one durable
// transaction (one fsync for the batch) and returns one Delivered per
// Delivery, in order: it is Stage followed by Commit.
func (s *Store) Deliver(ctx context.Context, ds []Delivery) ([]Delivered, error) {
	st, err := s.Stage(ctx, ds)
	if err != nil {
		return nil, err
	}
	defer st.Release()
	return st.Commit(ctx)
}

// Stage writes the bytes of every delivery and makes them durable, without
// making anything visible: the returned Staged's Commit does that, in one
// transaction. Callers running several batches at once stage them in
// parallel (the byte writes and fsyncs overlap) and commit them in the
// order they choose (local UIDs follow it). Until it is committed or
// released, a batch's pack is never compacted; a batch that is never
// committed (Release, a crash) leaves only dead pack bytes that compaction
// reclaims.
//
// At Commit a missing Folder ("" means INBOX) is created. If any Delivery
// names an unknown user the whole batch fails with ErrNotFound and nothing
// is stored.
//
// The ledger key (Account, UIDL, Digest) guards against duplicates: a
// delivery whose key is already in the ledger with a stored message is not
// stored again and reports the existing message; one whose message has since
// been expunged locally is not stored again either and reports a zero
// Delivered. A key previously recorded as skipped is stored now and the
// ledger row updated. The ledger is read in the Commit's transaction, so
// two batches staged at once with the same key store it once.
func (s *Store) Stage(ctx context.Context, ds []Delivery) (Staged, error) {
	if err := s.writable("deliver"); err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return &stagedBatch{s: s}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	b := &stagedBatch{s: s, ds: ds, preps: make([]prepared, len(ds))}
	now := s.now()
	for i, d := range ds {
		folder := d.Folder
		if folder == "" {
			folder = Inbox
		}
		canon, err := ValidateMailboxName(folder)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		date := d.InternalDate
		if date.IsZero() {
			date = now
		}
		b.preps[i] = prepared{folder: canon, date: date}
	}
	// Messages are stored unindexed (see index.go): parsing waits for the
	// indexer. The bytes are durable in a pack before the transaction that
	// refers to them begins. (A message the ledger already knows is
	// written too: rare, and its record is dead space that compaction
	// reclaims.)
	recs := make([]blobRec, len(ds))
	for i, d := range ds {
		b.preps[i].raw = normalizeCRLF(d.Raw)
		recs[i] = rawRecord(b.preps[i].raw)
	}
	locs, done, err := s.blobs.put(recs)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", s.classify(err))
	}
	b.locs, b.done = locs, done
	return b, nil
}

// prepared is one staged delivery: its canonical folder, its normalised
// bytes and its INTERNALDATE.
type prepared struct {
	folder string
	raw    []byte
	date   time.Time
}

// stagedBatch is the SQLite store's Staged: the deliveries, their records'
// locations in the packs, and done, which lets compaction see the pack
// again.
type stagedBatch struct {
	s     *Store
	ds    []Delivery
	preps []prepared
	locs  []recordLoc

	mu     sync.Mutex
	done   func() // nil for an empty batch
	closed bool   // committed (or tried) or released
}

// finish marks the batch closed and releases its pack; it reports whether
// the batch was still open.
func (b *stagedBatch) finish() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.closed = true
	return true
}

// Release implements Staged.
func (b *stagedBatch) Release() {
	if b.finish() && b.done != nil {
		b.done()
	}
}

// Commit implements Staged.
func (b *stagedBatch) Commit(ctx context.Context) ([]Delivered, error) {
	if !b.finish() {
		return nil, fmt.Errorf("deliver: %w", ErrStagedDone)
	}
	if b.done == nil {
		return nil, nil
	}
	// The pack is released whether the transaction commits or not: a
	// failed batch's bytes are dead space from now on.
	defer b.done()
	s := b.s
	out := make([]Delivered, len(b.ds))
	err := s.commitRecords(ctx, "deliver", b.locs, func(w *writeTx, locs []recordLoc) error {
		return s.deliverTx(w, b.ds, b.preps, locs, out)
	})
	if err != nil {
		return nil, err
	}
	s.indexer.Poke()
	return out, nil
}

// deliverTx is the transaction of a Commit: it fills out.
func (s *Store) deliverTx(w *writeTx, ds []Delivery, preps []prepared, locs []recordLoc, out []Delivered) error {
	now := s.now()
	users := map[string]UserID{}
	type mbKey struct {
		u    UserID
		name string
	}
	mboxes := map[mbKey]*Mailbox{}
	for i, d := range ds {
		uid, ok := users[d.User]
		if !ok {
			u, err := userByName(w.ctx, w, d.User)
			if err != nil {
				return err
			}
			uid, users[d.User] = u.ID, u.ID
		}
		var (
			rowID   int64
			msgID   sql.NullInt64
			skipped string
		)
		lookup, err := w.stmt(`SELECT id, message_id, skipped FROM pop_ledger WHERE account = ? AND uidl = ? AND digest = ?`)
		if err != nil {
			return err
		}
		err = lookup.QueryRowContext(w.ctx, d.Account, d.UIDL, d.Digest).Scan(&rowID, &msgID, &skipped)
		known := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("query ledger: %w", err)
		}
		if known && msgID.Valid {
			dl, err := existingDelivered(w, uid, MessageID(msgID.Int64), preps[i].folder)
			if err != nil {
				return err
			}
			out[i] = dl
			continue
		}
		if known && skipped == "" {
			continue // stored before and expunged locally since
		}
		key := mbKey{uid, preps[i].folder}
		mb := mboxes[key]
		if mb == nil {
			m, err := mailboxByName(w.ctx, w, uid, preps[i].folder)
			if err != nil || m.NoSelect {
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if m, err = s.createMailbox(w, uid, preps[i].folder, ""); err != nil {
					return err
				}
			}
			mb = &m
			mboxes[key] = mb
		}
		msg, err := insertMessage(w, locs[i], int64(len(preps[i].raw)), preps[i].date, nil, recordLoc{})
		if err != nil {
			return err
		}
		ents, err := addEntries(w, mb, []entryRow{{msg: msg}})
		if err != nil {
			return err
		}
		if known {
			_, err = w.ExecContext(w.ctx, `UPDATE pop_ledger SET message_id = ?, skipped = '', size = ?, stored_at = ? WHERE id = ?`,
				msg, len(d.Raw), nullTime(now), rowID)
		} else {
			var ins *sql.Stmt
			if ins, err = w.stmt(`INSERT INTO pop_ledger (account, uidl, digest, size, stored_at, message_id, last_seen)
				VALUES (?, ?, ?, ?, ?, ?, ?)`); err == nil {
				_, err = ins.ExecContext(w.ctx, d.Account, d.UIDL, d.Digest, len(d.Raw), nullTime(now), msg, nullTime(now))
			}
		}
		if err != nil {
			return fmt.Errorf("write ledger: %w", err)
		}
		out[i] = Delivered{Mailbox: mb.ID, UID: ents[0].UID, Message: msg}
	}
	return nil
}

// existingDelivered finds an entry of msg in the user's mailboxes,
// preferring folder.
func existingDelivered(w *writeTx, u UserID, msg MessageID, folder string) (Delivered, error) {
	var (
		dl  Delivered
		uid int64
	)
	err := w.QueryRowContext(w.ctx, `SELECT mm.mailbox_id, mm.uid FROM mailbox_messages mm JOIN mailboxes m ON m.id = mm.mailbox_id
		WHERE mm.message_id = ? AND m.user_id = ? ORDER BY CASE WHEN m.name = ? THEN 0 ELSE 1 END, mm.mailbox_id, mm.uid LIMIT 1`,
		msg, u, folder).Scan(&dl.Mailbox, &uid)
	if errors.Is(err, sql.ErrNoRows) {
		// The message lives on only in another user's mailbox (the
		// account was reassigned): report it as not stored.
		return Delivered{}, nil
	}
	if err != nil {
		return Delivered{}, fmt.Errorf("find delivered entry: %w", err)
	}
	dl.UID, dl.Message = UID(uid), msg
	return dl, nil
}
