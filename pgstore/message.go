package pgstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// entryRow is one mailbox_messages row.
type entryRow struct {
	uid    store.UID
	msg    store.MessageID
	flags  []string
	modseq uint64
}

func (e entryRow) entry() store.Entry {
	return store.Entry{UID: e.uid, Message: e.msg, Flags: e.flags, ModSeq: e.modseq}
}

// uidArray returns the UIDs of a set for "uid = ANY($n)", or nil for
// "all" (uids nil). ok is false for an explicit empty set.
func uidArray(uids []store.UID) (arr []int64, all, ok bool) {
	if uids == nil {
		return nil, true, true
	}
	arr = make([]int64, 0, len(uids))
	for _, u := range uids {
		if u != 0 {
			arr = append(arr, int64(u))
		}
	}
	return arr, false, len(arr) > 0
}

// selectEntries returns the mailbox's entries among uids (nil: all),
// ascending; with deletedOnly, only those flagged \Deleted.
func selectEntries(ctx context.Context, q querier, mb store.MailboxID, uids []store.UID, deletedOnly bool) ([]entryRow, error) {
	arr, all, ok := uidArray(uids)
	if !ok {
		return nil, nil
	}
	query := `SELECT uid, message_id, flags, modseq FROM mailbox_messages WHERE mailbox_id = $1`
	args := []any{mb}
	if !all {
		// Two forms, not "($2 OR uid = ANY ($3))": a generic plan of
		// that would read the whole mailbox for a few UIDs.
		query += ` AND uid = ANY ($2)`
		args = append(args, arr)
	}
	if deletedOnly {
		query += ` AND '\Deleted' = ANY (flags)`
	}
	rows, err := q.Query(ctx, query+` ORDER BY uid`, args...)
	if err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	// Entries with identical flags share one slice (a mailbox of 100,000
	// messages has a handful of distinct sets): callers treat Flags as
	// read-only and replace, never modify, it.
	shared := map[string][]string{}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entryRow, error) {
		var (
			e           entryRow
			uid, modseq int64
		)
		err := r.Scan(&uid, &e.msg, &e.flags, &modseq)
		e.uid, e.modseq = store.UID(uid), uint64(modseq)
		key := strings.Join(e.flags, "\x00")
		if f, ok := shared[key]; ok {
			e.flags = f
		} else {
			if e.flags == nil {
				e.flags = []string{}
			}
			shared[key] = e.flags
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	return out, nil
}

// saveCounters writes back UIDNEXT and HIGHESTMODSEQ of a locked mailbox.
func saveCounters(w *wtx, mb *store.Mailbox) error {
	if _, err := w.Exec(w.ctx, `UPDATE mailboxes SET uid_next = $1, highest_modseq = $2 WHERE id = $3`,
		int64(mb.UIDNext), int64(mb.HighestModSeq), mb.ID); err != nil {
		return fmt.Errorf("update mailbox counters: %w", err)
	}
	return nil
}

// addEntries appends entries for rows (message and flags taken from each
// row) to mb, which the transaction has locked, with new UIDs and one new
// modseq, and emits one ChangeAdd.
func addEntries(w *wtx, mb *store.Mailbox, rows []entryRow) ([]store.Entry, error) {
	first := uint64(mb.UIDNext)
	if first+uint64(len(rows)) > math.MaxUint32 {
		return nil, fmt.Errorf("mailbox %q: UIDs exhausted", mb.Name)
	}
	mb.UIDNext = store.UID(first + uint64(len(rows)))
	mb.HighestModSeq++
	uids := make([]int64, len(rows))
	msgs := make([]int64, len(rows))
	flags := make([]string, len(rows)) // each a text[] literal
	out := make([]store.Entry, len(rows))
	for i, r := range rows {
		uid := store.UID(first) + store.UID(i)
		uids[i], msgs[i], flags[i] = int64(uid), int64(r.msg), arrayLiteral(r.flags)
		r.uid, r.modseq = uid, mb.HighestModSeq
		if r.flags == nil {
			r.flags = []string{}
		}
		out[i] = r.entry()
	}
	if _, err := w.Exec(w.ctx, `INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, modseq)
		SELECT $1, u, m, f::text[], $5 FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS t(u, m, f)`,
		mb.ID, uids, msgs, flags, int64(mb.HighestModSeq)); err != nil {
		return nil, fmt.Errorf("insert entries: %w", err)
	}
	if err := saveCounters(w, mb); err != nil {
		return nil, err
	}
	w.emit(store.Change{Kind: store.ChangeAdd, User: mb.User, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq, Entries: out})
	return out, nil
}

// arrayLiteral renders flags as a PostgreSQL array literal. Flags are
// canonical (system flags and IMAP atoms: no space, quote, backslash but
// the system flags' leading one, braces or commas... atoms exclude
// '(){%*"\]' and controls), and every element is quoted with its
// backslashes and quotes escaped anyway.
func arrayLiteral(flags []string) string {
	b := []byte{'{'}
	for i, f := range flags {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for j := 0; j < len(f); j++ {
			if f[j] == '"' || f[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, f[j])
		}
		b = append(b, '"')
	}
	return string(append(b, '}'))
}

// expungeAll expunges every entry of mb (before the mailbox is deleted).
func expungeAll(w *wtx, mb *store.Mailbox) error {
	ents, err := selectEntries(w.ctx, w, mb.ID, nil, false)
	if err != nil || len(ents) == 0 {
		return err
	}
	return expungeEntries(w, mb, ents)
}

// expungeEntries removes ents from mb (locked), emits one ChangeExpunge and
// deletes the messages no entry refers to any more.
func expungeEntries(w *wtx, mb *store.Mailbox, ents []entryRow) error {
	uids := make([]store.UID, len(ents))
	arr := make([]int64, len(ents))
	msgs := make([]int64, 0, len(ents))
	for i, e := range ents {
		uids[i], arr[i] = e.uid, int64(e.uid)
		msgs = append(msgs, int64(e.msg))
	}
	if _, err := w.Exec(w.ctx, `DELETE FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY ($2)`, mb.ID, arr); err != nil {
		return fmt.Errorf("expunge entries: %w", err)
	}
	mb.HighestModSeq++
	if err := saveCounters(w, mb); err != nil {
		return err
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	// The ledger rows pointing at deleted messages are set to NULL by the
	// foreign key. A concurrent COPY of one of these messages from another
	// mailbox makes this fail on the foreign key; write then retries.
	if _, err := w.Exec(w.ctx, `DELETE FROM messages m WHERE m.id = ANY ($1)
		AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id)`, msgs); err != nil {
		return fmt.Errorf("delete messages: %w", err)
	}
	w.emit(store.Change{Kind: store.ChangeExpunge, User: mb.User, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq, UIDs: uids})
	return nil
}

// Snapshot returns the mailbox and all its entries, ascending by UID, read
// in one transaction. Entries with identical flags share their Flags
// slice: callers must not modify it.
func (s *Store) Snapshot(ctx context.Context, u store.UserID, id store.MailboxID) (store.Snapshot, error) {
	var snap store.Snapshot
	err := s.read(ctx, "snapshot", func(tx pgx.Tx) error {
		mb, err := mailboxByID(ctx, tx, u, id, false)
		if err != nil {
			return err
		}
		snap.Mailbox = mb
		ents, err := selectEntries(ctx, tx, id, nil, false)
		if err != nil {
			return err
		}
		snap.Entries = make([]store.Entry, len(ents))
		for i, e := range ents {
			snap.Entries[i] = e.entry()
		}
		return nil
	})
	if err != nil {
		return store.Snapshot{}, err
	}
	return snap, nil
}

// Append stores raw in the mailbox with flags and internal date (zero
// means now). Bare LF is normalised to CRLF; NUL and bare CR are kept. It
// returns the new entry and the mailbox's UIDVALIDITY.
func (s *Store) Append(ctx context.Context, u store.UserID, id store.MailboxID, raw []byte, flags []string, date time.Time) (store.Entry, uint32, error) {
	pm := s.parse(raw)
	if date.IsZero() {
		date = s.now()
	}
	fl := store.CanonicalFlags(flags)
	var (
		ent  store.Entry
		uidv uint32
	)
	err := s.write(ctx, "append", func(w *wtx) error {
		mb, err := selectableByID(w.ctx, w, u, id, true)
		if err != nil {
			return err
		}
		msg, err := insertMessage(w, &pm, date)
		if err != nil {
			return err
		}
		ents, err := addEntries(w, &mb, []entryRow{{msg: msg, flags: fl}})
		if err != nil {
			return err
		}
		ent, uidv = ents[0], mb.UIDValidity
		return nil
	})
	return ent, uidv, err
}

// parse normalises and parses raw, logging a parser panic (a bug).
func (s *Store) parse(raw []byte) store.ParsedMessage {
	pm := store.ParseMessage(raw)
	if pm.Panicked != nil {
		s.log.Error("message parser panicked; stored as text/plain", "panic", fmt.Sprint(pm.Panicked), "size", len(raw))
	}
	return pm
}

// UpdateFlags applies op with flags to the entries of uids (nil or empty:
// none) and returns every existing targeted entry with its resulting
// flags, ascending. Only entries whose flags changed get the new modseq and
// appear in the ChangeFlags. Flags are normalised as store.CanonicalFlags
// says.
func (s *Store) UpdateFlags(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID, op store.FlagOp, flags []string) ([]store.Entry, error) {
	if op != store.FlagsAdd && op != store.FlagsRemove && op != store.FlagsReplace {
		return nil, fmt.Errorf("update flags: unknown operation %d", op)
	}
	if uids == nil {
		uids = []store.UID{}
	}
	var out []store.Entry
	err := s.write(ctx, "update flags", func(w *wtx) error {
		mb, err := selectableByID(w.ctx, w, u, id, true)
		if err != nil {
			return err
		}
		ents, err := selectEntries(w.ctx, w, id, uids, false)
		if err != nil {
			return err
		}
		out = make([]store.Entry, 0, len(ents))
		var (
			changed []store.Entry
			cuids   []int64
			cflags  []string
		)
		modseq := mb.HighestModSeq + 1
		for _, e := range ents {
			nf := store.ApplyFlags(e.flags, op, flags)
			if !slices.Equal(nf, e.flags) {
				e.flags, e.modseq = nf, modseq
				changed = append(changed, e.entry())
				cuids = append(cuids, int64(e.uid))
				cflags = append(cflags, arrayLiteral(nf))
			}
			out = append(out, e.entry())
		}
		if len(changed) == 0 {
			return nil
		}
		if _, err := w.Exec(w.ctx, `UPDATE mailbox_messages mm SET flags = t.f::text[], modseq = $4
			FROM unnest($2::bigint[], $3::text[]) AS t(u, f) WHERE mm.mailbox_id = $1 AND mm.uid = t.u`,
			id, cuids, cflags, int64(modseq)); err != nil {
			return fmt.Errorf("update flags: %w", err)
		}
		mb.HighestModSeq = modseq
		if err := saveCounters(w, &mb); err != nil {
			return err
		}
		w.emit(store.Change{Kind: store.ChangeFlags, User: u, Mailbox: id, MailboxName: mb.Name, ModSeq: modseq, Entries: changed})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
