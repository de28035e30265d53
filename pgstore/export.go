package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// Export: the same methods, with the same types, as the SQLite store's
// (store/export.go), for moving a whole store between backends (package
// storecopy). Leases and the change feed are not exported: they belong to
// the nodes running on this database, not to the mail.

// exportBatch is how many rows an export reads per query of a stream.
const exportBatch = 1000

// idTables are the tables whose ids store.LastIDs records, in
// lastIDPtrs' order.
var idTables = []string{"users", "mailboxes", "messages", "pop_ledger"}

// lastIDPtrs returns pointers to the fields of l, in idTables' order.
func lastIDPtrs(l *store.LastIDs) []*int64 {
	return []*int64{(*int64)(&l.User), (*int64)(&l.Mailbox), (*int64)(&l.Message), &l.LedgerRow}
}

// ExportMeta reads every user, mailbox, subscription, provider user and
// account status, and the UIDVALIDITY counter, in one snapshot.
func (s *Store) ExportMeta(ctx context.Context) (store.ExportMeta, error) {
	var m store.ExportMeta
	err := s.read(ctx, "export meta", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, created FROM users ORDER BY id`)
		if err != nil {
			return err
		}
		if m.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) {
			var u store.User
			err := r.Scan(&u.ID, &u.Name, &u.Created)
			u.Created = u.Created.UTC()
			return u, err
		}); err != nil {
			return err
		}
		if rows, err = tx.Query(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m ORDER BY m.id`); err != nil {
			return err
		}
		if m.Mailboxes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Mailbox, error) { return scanMailbox(r) }); err != nil {
			return err
		}
		if rows, err = tx.Query(ctx, `SELECT user_id, name FROM subscriptions ORDER BY user_id, name`); err != nil {
			return err
		}
		if m.Subscriptions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SubscribedName, error) {
			var sub store.SubscribedName
			err := r.Scan(&sub.User, &sub.Name)
			return sub, err
		}); err != nil {
			return err
		}
		var uidv int64
		if err := tx.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'uidvalidity'`).Scan(&uidv); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		m.UIDValidity = uint32(uidv)
		for i, p := range lastIDPtrs(&m.LastIDs) {
			if err := tx.QueryRow(ctx, `SELECT GREATEST(coalesce(pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass), 0),
				coalesce((SELECT max(id) FROM `+idTables[i]+`), 0))`, idTables[i]).Scan(p); err != nil {
				return fmt.Errorf("read the last id of %s: %w", idTables[i], err)
			}
		}
		if rows, err = tx.Query(ctx, `SELECT name, credential, state, created, last_login, state_changed FROM provider_users ORDER BY name`); err != nil {
			return err
		}
		if m.ProviderUsers, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ProviderUser, error) {
			u, err := scanProviderUser(r)
			u.Created = u.Created.UTC()
			return u, err
		}); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return store.ExportMeta{}, err
	}
	if m.AccountStatuses, err = s.AccountStatuses(ctx); err != nil {
		return store.ExportMeta{}, fmt.Errorf("export meta: %w", err)
	}
	return m, nil
}

// ExportMessages calls fn with every stored message, ascending by ID, one
// row at a time as the server sends it (exportBatch rows per query), so
// memory does not grow with the store. A message whose bytes are missing
// or not as long as its recorded size is passed with Err set (wrapping
// store.ErrCorrupt). Data the server itself reports damaged (SQLSTATE
// class XX) fails the export: `popbridge verify` finds the message. An
// error of fn ends the export and is returned wrapped.
func (s *Store) ExportMessages(ctx context.Context, fn func(store.ExportedMessage) error) error {
	var after store.MessageID
	for {
		n := 0
		err := s.read(ctx, "export messages", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT m.id, m.internal_date, m.internal_zone, m.size, `+joinedBytesSQL+`
				FROM messages m WHERE m.id > $1 ORDER BY m.id LIMIT $2`, after, exportBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			var data []byte
			for rows.Next() {
				var (
					m    store.ExportedMessage
					date time.Time
					zone int32
				)
				data = data[:0]
				if err := rows.Scan(&m.ID, &date, &zone, &m.Size, &data); err != nil {
					return err
				}
				m.InternalDate = date.In(time.FixedZone("", int(zone)))
				switch {
				case data == nil:
					m.Err = fmt.Errorf("message %d: no bytes stored: %w", m.ID, store.ErrCorrupt)
				case int64(len(data)) != m.Size:
					m.Err = fmt.Errorf("message %d: %d bytes stored, size %d recorded: %w", m.ID, len(data), m.Size, store.ErrCorrupt)
				default:
					m.Raw = data
				}
				if m.Err != nil {
					s.damaged.Add(1)
				}
				n++
				after = m.ID
				if err := fn(m); err != nil {
					return err
				}
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// ExportEntries calls fn with every mailbox entry, ascending by mailbox ID
// and UID. Entry.Flags holds system flags and keywords, canonical and
// sorted.
func (s *Store) ExportEntries(ctx context.Context, fn func(store.ExportedEntry) error) error {
	var (
		afterMB  store.MailboxID
		afterUID int64
	)
	for {
		var batch []store.ExportedEntry
		err := s.read(ctx, "export entries", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT mailbox_id, uid, message_id, flags, modseq FROM mailbox_messages
				WHERE (mailbox_id, uid) > ($1, $2) ORDER BY mailbox_id, uid LIMIT $3`, afterMB, afterUID, exportBatch)
			if err != nil {
				return err
			}
			batch, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ExportedEntry, error) {
				var (
					e           store.ExportedEntry
					uid, modseq int64
				)
				err := r.Scan(&e.Mailbox, &uid, &e.Message, &e.Flags, &modseq)
				if e.Flags == nil {
					e.Flags = []string{}
				}
				e.UID, e.ModSeq = store.UID(uid), uint64(modseq)
				return e, err
			})
			return err
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
		last := batch[len(batch)-1]
		afterMB, afterUID = last.Mailbox, int64(last.UID)
	}
}

// ExportLedger calls fn with every row of the POP ledger of every account,
// tombstones and skipped rows included, ascending by row ID.
func (s *Store) ExportLedger(ctx context.Context, fn func(store.LedgerRow) error) error {
	var after int64
	for {
		var batch []store.LedgerRow
		err := s.read(ctx, "export ledger", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id, account, uidl, digest, size, stored_at, message_id, skipped, delete_pending, deleted_at, last_seen
				FROM pop_ledger WHERE id > $1 ORDER BY id LIMIT $2`, after, exportBatch)
			if err != nil {
				return err
			}
			batch, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LedgerRow, error) {
				var e store.LedgerRow
				return e, scanLedgerEntry(r, &e.LedgerEntry, &e.ID)
			})
			return err
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
		after = batch[len(batch)-1].ID
	}
}
