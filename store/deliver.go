package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

type turnKey struct{}

// WithCommitTurn returns a context that makes Deliver (and Append) call
// turn once the batch's bytes are durable and before its transaction
// begins; the
// transaction waits until turn returns, and does not happen if turn fails
// (Deliver then returns its error and stores nothing). Callers running
// several Delivers at once use it to commit them in their own order while
// the byte writes overlap.
func WithCommitTurn(ctx context.Context, turn func(context.Context) error) context.Context {
	return context.WithValue(ctx, turnKey{}, turn)
}

// Deliver stores every delivery and its ledger row in one durable
// transaction (one fsync for the batch) and returns one Delivered per
// Delivery, in order. A missing Folder ("" means INBOX) is created. If any
// Delivery names an unknown user the whole batch fails with ErrNotFound and
// nothing is stored.
//
// The ledger key (Account, UIDL, Digest) guards against duplicates: a
// delivery whose key is already in the ledger with a stored message is not
// stored again and reports the existing message; one whose message has since
// been expunged locally is not stored again either and reports a zero
// Delivered. A key previously recorded as skipped is stored now and the
// ledger row updated.
//
// The bytes are written (and made durable) first, then the transaction
// runs. Concurrent Delivers write their bytes in parallel; a caller that
// needs their transactions in a given order (local UIDs follow it) puts a
// turn in ctx with WithCommitTurn.
func (s *Store) Deliver(ctx context.Context, ds []Delivery) ([]Delivered, error) {
	if err := s.writable("deliver"); err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, nil
	}
	type prepared struct {
		folder string
		raw    []byte
		date   time.Time
	}
	preps := make([]prepared, len(ds))
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
		preps[i] = prepared{folder: canon, date: date}
	}
	// Messages are stored unindexed (see index.go): parsing waits for the
	// indexer. The bytes are durable in a pack before the transaction that
	// refers to them begins. (A message the ledger already knows is
	// written too: rare, and its record is dead space that compaction
	// reclaims.)
	recs := make([]blobRec, len(ds))
	for i, d := range ds {
		preps[i].raw = normalizeCRLF(d.Raw)
		recs[i] = rawRecord(preps[i].raw)
	}
	out := make([]Delivered, len(ds))
	err := s.writeRecords(ctx, "deliver", recs, func(w *writeTx, locs []recordLoc) error {
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
	})
	if err != nil {
		return nil, err
	}
	s.indexer.poke()
	return out, nil
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
