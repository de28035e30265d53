package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Export and import: moving a whole store to another backend (package
// storecopy, `popbridge store-copy`). The Export* methods read everything
// that matters to IMAP clients and to the poller, the bytes as a stream;
// the Import* methods write it into an empty store with the same ids,
// UIDs, modseqs and times, so that clients and the POP ledger see the same
// store. Both backends (this one and package pgstore) offer the same
// methods with these types.

// ErrNotEmpty is wrapped by the error of [Store.ImportMeta] when the store
// already holds users, mailboxes, messages, ledger rows, account statuses
// or provider users: an import only ever fills an empty store.
var ErrNotEmpty = errors.New("store: destination store is not empty")

// ExportMeta is the part of a store an export moves in one piece: every
// row but the messages, their entries and the ledger, which are streamed.
type ExportMeta struct {
	// Users, ascending by ID.
	Users []User
	// Mailboxes of every user, \Noselect placeholders included, ascending
	// by ID. Mailbox.Subscribed is informative: Subscriptions is what an
	// import writes.
	Mailboxes []Mailbox
	// Subscriptions holds every subscribed name, also names with no
	// mailbox (a subscription outlives its mailbox).
	Subscriptions []SubscribedName
	// UIDValidity is the last UIDVALIDITY the store issued: a mailbox the
	// importing store creates later gets a greater one.
	UIDValidity uint32
	// ProviderUsers, ascending by name. Credentials are the sealed bytes
	// as stored, valid only with the key that sealed them.
	ProviderUsers []ProviderUser
	// AccountStatuses, ascending by account, with their anomaly counters.
	AccountStatuses []AccountStatus
	// LastIDs are the highest ids the store ever issued, also of rows
	// deleted since: the importing store issues none of them again.
	LastIDs LastIDs
}

// LastIDs are the highest ids a store has issued, per kind of row (0:
// none).
type LastIDs struct {
	User      UserID
	Mailbox   MailboxID
	Message   MessageID
	LedgerRow int64
}

// idTables are the tables whose ids LastIDs records, in its field order.
var idTables = []string{"users", "mailboxes", "messages", "pop_ledger"}

// ptrs returns pointers to the fields of l, in idTables' order.
func (l *LastIDs) ptrs() []*int64 {
	return []*int64{(*int64)(&l.User), (*int64)(&l.Mailbox), (*int64)(&l.Message), &l.LedgerRow}
}

// SubscribedName is one subscribed mailbox name of a user.
type SubscribedName struct {
	User UserID
	Name string
}

// ExportedMessage is one stored message as an export reads it.
type ExportedMessage struct {
	ID MessageID
	// InternalDate with its zone offset.
	InternalDate time.Time
	// Size is the stored size (RFC822.SIZE).
	Size int64
	// Raw is the stored bytes; in a callback of ExportMessages it is valid
	// only until the callback returns. Nil when Err is set.
	Raw []byte
	// Err is set, wrapping ErrCorrupt, when the bytes could not be read
	// (their checksum fails, their pack is missing or short).
	Err error
}

// ExportedEntry is one message of one mailbox as an export reads it.
type ExportedEntry struct {
	Mailbox MailboxID
	Entry
}

// LedgerRow is one row of the POP ledger with its row id (rows are
// recorded in id order).
type LedgerRow struct {
	ID int64
	LedgerEntry
}

// exportBatch is how many rows an export reads per query of a stream.
const exportBatch = 1000

// ExportMeta reads every user, mailbox, subscription, provider user and
// account status, and the UIDVALIDITY counter, in one snapshot.
func (s *Store) ExportMeta(ctx context.Context) (ExportMeta, error) {
	var m ExportMeta
	err := s.read(ctx, "export meta", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, name, created FROM users ORDER BY id`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				u       User
				created string
			)
			if err := rows.Scan(&u.ID, &u.Name, &created); err != nil {
				rows.Close()
				return err
			}
			if u.Created, err = parseTime(created); err != nil {
				rows.Close()
				return err
			}
			m.Users = append(m.Users, u)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		if rows, err = tx.QueryContext(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m ORDER BY m.id`); err != nil {
			return err
		}
		for rows.Next() {
			mb, err := scanMailbox(rows)
			if err != nil {
				rows.Close()
				return err
			}
			m.Mailboxes = append(m.Mailboxes, mb)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		if rows, err = tx.QueryContext(ctx, `SELECT user_id, name FROM subscriptions ORDER BY user_id, name`); err != nil {
			return err
		}
		for rows.Next() {
			var sub SubscribedName
			if err := rows.Scan(&sub.User, &sub.Name); err != nil {
				rows.Close()
				return err
			}
			m.Subscriptions = append(m.Subscriptions, sub)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		var uidv int64
		if err := tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'uidvalidity'`).Scan(&uidv); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		m.UIDValidity = uint32(uidv)
		// AUTOINCREMENT keeps the highest id issued in sqlite_sequence.
		for i, p := range m.LastIDs.ptrs() {
			if err := tx.QueryRowContext(ctx, `SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0),
				coalesce((SELECT max(id) FROM `+idTables[i]+`), 0))`, idTables[i]).Scan(p); err != nil {
				return fmt.Errorf("read the last id of %s: %w", idTables[i], err)
			}
		}
		if rows, err = tx.QueryContext(ctx, `SELECT name, credential, state, created, last_login, state_changed FROM provider_users ORDER BY name`); err != nil {
			return err
		}
		for rows.Next() {
			u, err := scanProviderUser(rows)
			if err != nil {
				rows.Close()
				return err
			}
			m.ProviderUsers = append(m.ProviderUsers, u)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return ExportMeta{}, err
	}
	if m.AccountStatuses, err = s.AccountStatuses(ctx); err != nil {
		return ExportMeta{}, fmt.Errorf("export meta: %w", err)
	}
	return m, nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	return errors.Join(err, rows.Close())
}

// ExportMessages calls fn with every stored message, ascending by ID,
// reading exportBatch rows per read transaction: the bytes are read one
// message at a time, so memory does not grow with the store. A message
// whose bytes can't be read is passed with Err set (and counted as a
// damaged read), not returned as an error. An error of fn ends the export
// and is returned as is.
func (s *Store) ExportMessages(ctx context.Context, fn func(ExportedMessage) error) error {
	var after MessageID
	for {
		var (
			ids   []MessageID
			dates []string
			locs  []blobLoc
			pack  []bool
		)
		r := s.blobs.begin()
		err := s.read(ctx, "export messages", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, internal_date, pack IS NOT NULL, `+strings.Replace(locColumns(""), "pack,", "coalesce(pack, 0),", 1)+
				` FROM messages WHERE id > ? ORDER BY id LIMIT ?`, after, exportBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					id     MessageID
					date   string
					packed bool
					l      blobLoc
				)
				if err := scanLoc(rows, &l, &id, &date, &packed); err != nil {
					return err
				}
				ids, dates, locs, pack = append(ids, id), append(dates, date), append(locs, l), append(pack, packed)
			}
			return rows.Err()
		})
		if err != nil {
			r.end()
			return err
		}
		if len(ids) == 0 {
			r.end()
			return nil
		}
		r.readAhead()
		err = func() error {
			defer r.end()
			for i, id := range ids {
				m := ExportedMessage{ID: id, Size: locs[i].size}
				if m.InternalDate, err = parseTime(dates[i]); err != nil {
					return fmt.Errorf("export message %d: %w", id, err)
				}
				if pack[i] {
					m.Raw, m.Err = r.body(locs[i])
				} else {
					m.Raw, m.Err = s.legacyBody(ctx, id)
				}
				if m.Err != nil {
					if !isCorruptRead(m.Err) {
						return fmt.Errorf("export message %d: %w", id, m.Err)
					}
					m.Raw, m.Err = nil, fmt.Errorf("message %d: %w", id, m.Err)
					s.damage.messages.Add(1)
				}
				if err := fn(m); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
		after = ids[len(ids)-1]
	}
}

// legacyBody reads the bytes of a message still held in message_data (a
// store written by an older program and opened read-only since).
func (s *Store) legacyBody(ctx context.Context, id MessageID) ([]byte, error) {
	var raw []byte
	err := s.read(ctx, "export message", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT data FROM message_data WHERE message_id = ?`, id).Scan(&raw)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no bytes in a pack or in the database: %w", ErrCorrupt)
		}
		return err
	})
	return raw, err
}

// ExportEntries calls fn with every mailbox entry, ascending by mailbox ID
// and UID. Entry.Flags holds system flags and keywords, canonical and
// sorted; it may be shared between entries and must not be modified.
func (s *Store) ExportEntries(ctx context.Context, fn func(ExportedEntry) error) error {
	var (
		afterMB  MailboxID
		afterUID UID
	)
	fi := flagInterner{}
	for {
		var batch []ExportedEntry
		err := s.read(ctx, "export entries", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT mailbox_id, uid, message_id, flags, keywords, modseq FROM mailbox_messages
				WHERE (mailbox_id, uid) > (?, ?) ORDER BY mailbox_id, uid LIMIT ?`, afterMB, int64(afterUID), exportBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					e           ExportedEntry
					uid, modseq int64
					bits        int64
					kw          string
				)
				if err := rows.Scan(&e.Mailbox, &uid, &e.Message, &bits, &kw, &modseq); err != nil {
					return err
				}
				e.UID, e.ModSeq, e.Flags = UID(uid), uint64(modseq), fi.get(bits, kw)
				batch = append(batch, e)
			}
			return rows.Err()
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
		afterMB, afterUID = last.Mailbox, last.UID
	}
}

// ExportLedger calls fn with every row of the POP ledger of every account,
// tombstones and skipped rows included, ascending by row ID.
func (s *Store) ExportLedger(ctx context.Context, fn func(LedgerRow) error) error {
	var after int64
	for {
		var batch []LedgerRow
		err := s.read(ctx, "export ledger", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, account, uidl, digest, size, stored_at, message_id, skipped, delete_pending, deleted_at, last_seen
				FROM pop_ledger WHERE id > ? ORDER BY id LIMIT ?`, after, exportBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var e LedgerRow
				if err := scanLedgerEntry(rows, &e.LedgerEntry, &e.ID); err != nil {
					return err
				}
				batch = append(batch, e)
			}
			return rows.Err()
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
