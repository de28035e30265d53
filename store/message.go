package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// parse normalises and parses raw, logging a parser panic (a bug, contained
// by parseMessage).
func (s *Store) parse(raw []byte) parsedMessage {
	return s.parseStoredForm(normalizeCRLF(raw))
}

// parseStoredForm is parse for bytes already in their stored form (CRLF
// line ends), as read back from a pack: it does not scan them again.
func (s *Store) parseStoredForm(raw []byte) parsedMessage {
	pm := parseMessage(raw)
	if pm.panicked != nil {
		s.log.Error("message parser panicked; stored as text/plain", "panic", fmt.Sprint(pm.panicked), "size", len(raw))
	}
	pm.textFrom, pm.textDerived = derivableFrom(&pm)
	return pm
}

// entryRow is one mailbox_messages row.
type entryRow struct {
	uid    UID
	msg    MessageID
	bits   int64
	kw     string
	modseq uint64
}

func (e entryRow) entry() Entry {
	return Entry{UID: e.uid, Message: e.msg, Flags: decodeFlagSet(e.bits, e.kw).list(), ModSeq: e.modseq}
}

// uidFilter restricts a query to a UID set, so every batch is one query:
// a BETWEEN range when the set is dense (filtered in Go unless it is
// exactly contiguous), a UID IN list for small sparse sets, else the
// BETWEEN range of the whole set filtered in Go.
type uidFilter struct {
	clause string
	args   []any
	sorted []UID // nil when the clause is exact
	none   bool  // the set is empty: nothing matches
}

func newUIDFilter(uids []UID) uidFilter {
	if uids == nil {
		return uidFilter{}
	}
	s := slices.Clone(uids)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) > 0 && s[0] == 0 {
		s = s[1:]
	}
	if len(s) == 0 {
		return uidFilter{none: true}
	}
	lo, hi := s[0], s[len(s)-1]
	span := uint64(hi-lo) + 1
	if span == uint64(len(s)) {
		return uidFilter{clause: " AND mm.uid BETWEEN ? AND ?", args: []any{int64(lo), int64(hi)}}
	}
	if len(s) <= sqlMaxVars && span > 2*uint64(len(s)) {
		args := make([]any, len(s))
		for i, u := range s {
			args[i] = int64(u)
		}
		return uidFilter{clause: " AND mm.uid IN (?" + strings.Repeat(", ?", len(s)-1) + ")", args: args}
	}
	return uidFilter{
		clause: " AND mm.uid BETWEEN ? AND ?",
		args:   []any{int64(lo), int64(hi)},
		sorted: s,
	}
}

// size returns the number of UIDs of an explicit set, 0 if unknown.
func (f uidFilter) size() int {
	if f.sorted != nil {
		return len(f.sorted)
	}
	if len(f.args) == 2 && strings.Contains(f.clause, "BETWEEN") {
		return int(f.args[1].(int64)-f.args[0].(int64)) + 1
	}
	return len(f.args)
}

func (f uidFilter) keep(u UID) bool {
	if f.sorted == nil {
		return true
	}
	_, ok := slices.BinarySearch(f.sorted, u)
	return ok
}

// selectEntries returns the mailbox's entries among uids (nil: all),
// ascending; with deletedOnly, only those flagged \Deleted.
func selectEntries(ctx context.Context, q execer, mb MailboxID, uids []UID, deletedOnly bool) ([]entryRow, error) {
	f := newUIDFilter(uids)
	if f.none {
		return nil, nil
	}
	query := `SELECT mm.uid, mm.message_id, mm.flags, mm.keywords, mm.modseq FROM mailbox_messages mm WHERE mm.mailbox_id = ?` + f.clause
	if deletedOnly {
		query += fmt.Sprintf(" AND mm.flags & %d != 0", bitDeleted)
	}
	query += " ORDER BY mm.uid"
	rows, err := q.QueryContext(ctx, query, append([]any{mb}, f.args...)...)
	if err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	defer rows.Close()
	var out []entryRow
	for rows.Next() {
		var (
			e      entryRow
			uid    int64
			modseq int64
		)
		if err := rows.Scan(&uid, &e.msg, &e.bits, &e.kw, &modseq); err != nil {
			return nil, fmt.Errorf("scan entry: %w", err)
		}
		e.uid, e.modseq = UID(uid), uint64(modseq)
		if f.keep(e.uid) {
			out = append(out, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	return out, nil
}

// saveMailboxCounters writes back UIDNEXT and HIGHESTMODSEQ.
func saveMailboxCounters(w *writeTx, mb *Mailbox) error {
	st, err := w.stmt(`UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(w.ctx, int64(mb.UIDNext), int64(mb.HighestModSeq), mb.ID); err != nil {
		return fmt.Errorf("update mailbox counters: %w", err)
	}
	return nil
}

// allocUIDs reserves n UIDs of mb and returns the first.
func allocUIDs(mb *Mailbox, n int) (UID, error) {
	first := uint64(mb.UIDNext)
	if first+uint64(n) > math.MaxUint32 {
		return 0, fmt.Errorf("mailbox %q: UIDs exhausted", mb.Name)
	}
	mb.UIDNext = UID(first + uint64(n))
	return UID(first), nil
}

// addEntries appends entries for rows (message and flags taken from each
// row) to mb with new UIDs and one new modseq, and emits one ChangeAdd.
func addEntries(w *writeTx, mb *Mailbox, rows []entryRow) ([]Entry, error) {
	first, err := allocUIDs(mb, len(rows))
	if err != nil {
		return nil, err
	}
	mb.HighestModSeq++
	stmt, err := w.stmt(`INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, keywords, modseq) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(rows))
	for i, r := range rows {
		uid := first + UID(i)
		if _, err := stmt.ExecContext(w.ctx, mb.ID, int64(uid), r.msg, r.bits, r.kw, int64(mb.HighestModSeq)); err != nil {
			return nil, fmt.Errorf("insert entry: %w", err)
		}
		r.uid, r.modseq = uid, mb.HighestModSeq
		out[i] = r.entry()
	}
	if err := saveMailboxCounters(w, mb); err != nil {
		return nil, err
	}
	w.emit(Change{Kind: ChangeAdd, User: mb.User, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq, Entries: out})
	return out, nil
}

// copyEntries adds copies of ents (same message, same flags) to dst.
func (s *Store) copyEntries(w *writeTx, dst *Mailbox, ents []entryRow) ([]Entry, error) {
	return addEntries(w, dst, ents)
}

// expungeEntries removes ents from mb, emits one ChangeExpunge and deletes
// messages no mailbox refers to any more.
func (s *Store) expungeEntries(w *writeTx, mb *Mailbox, ents []entryRow) error {
	del, err := w.PrepareContext(w.ctx, `DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?`)
	if err != nil {
		return fmt.Errorf("prepare expunge: %w", err)
	}
	defer del.Close()
	uids := make([]UID, len(ents))
	msgs := make([]MessageID, 0, len(ents))
	for i, e := range ents {
		if _, err := del.ExecContext(w.ctx, mb.ID, int64(e.uid)); err != nil {
			return fmt.Errorf("expunge entry: %w", err)
		}
		uids[i] = e.uid
		msgs = append(msgs, e.msg)
	}
	mb.HighestModSeq++
	if err := saveMailboxCounters(w, mb); err != nil {
		return err
	}
	if err := deleteOrphans(w, msgs); err != nil {
		return err
	}
	w.emit(Change{Kind: ChangeExpunge, User: mb.User, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq, UIDs: uids})
	return nil
}

// deleteOrphans deletes those of msgs that no mailbox entry refers to; the
// ledger rows pointing at them are set to NULL by the foreign key.
func deleteOrphans(w *writeTx, msgs []MessageID) error {
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	stmt, err := w.PrepareContext(w.ctx, `DELETE FROM messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = ?)`)
	if err != nil {
		return fmt.Errorf("prepare delete message: %w", err)
	}
	defer stmt.Close()
	for _, m := range msgs {
		res, err := stmt.ExecContext(w.ctx, m, m)
		if err != nil {
			return fmt.Errorf("delete message: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			w.deletedMsgs = append(w.deletedMsgs, m)
		}
	}
	return nil
}

// Snapshot returns the mailbox and all its entries, ascending by UID, read
// in one transaction. Entries with identical flags share their Flags slice:
// callers must not modify it.
func (s *Store) Snapshot(ctx context.Context, u UserID, id MailboxID) (Snapshot, error) {
	var snap Snapshot
	err := s.read(ctx, "snapshot", func(tx *sql.Tx) error {
		mb, err := mailboxByID(ctx, tx, u, id)
		if err != nil {
			return err
		}
		snap.Mailbox = mb
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM mailbox_messages WHERE mailbox_id = ?`, id).Scan(&n); err != nil {
			return fmt.Errorf("count entries: %w", err)
		}
		snap.Entries = make([]Entry, 0, n)
		rows, err := tx.QueryContext(ctx, `SELECT uid, message_id, flags, keywords, modseq FROM mailbox_messages WHERE mailbox_id = ? ORDER BY uid`, id)
		if err != nil {
			return fmt.Errorf("query entries: %w", err)
		}
		defer rows.Close()
		fi := flagInterner{}
		var (
			uid, modseq, bits int64
			msg               MessageID
			kw                string
		)
		for rows.Next() {
			if err := rows.Scan(&uid, &msg, &bits, &kw, &modseq); err != nil {
				return fmt.Errorf("scan entry: %w", err)
			}
			snap.Entries = append(snap.Entries, Entry{UID: UID(uid), Message: msg, Flags: fi.get(bits, kw), ModSeq: uint64(modseq)})
		}
		return rows.Err()
	})
	if err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}

// Body returns the raw bytes of the message uid as stored (CRLF line ends),
// or ErrNotFound.
func (s *Store) Body(ctx context.Context, u UserID, id MailboxID, uid UID) ([]byte, error) {
	r := s.blobs.begin()
	defer r.end()
	var (
		msg MessageID
		loc blobLoc
	)
	err := s.read(ctx, "message body", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		err := scanLoc(tx.QueryRowContext(ctx, `SELECT m.id, `+locColumns("m.")+` FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
			WHERE mm.mailbox_id = ? AND mm.uid = ?`, id, int64(uid)), &loc, &msg)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("uid %d: %w", uid, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// r's buffer is this call's own: no copy needed.
	data, err := r.body(loc)
	if err != nil {
		return nil, fmt.Errorf("message body: uid %d (message %d): %w", uid, msg, err)
	}
	return data, nil
}

// Append stores raw in the mailbox with flags and internal date (zero means
// now). Bare LF is normalised to CRLF; NUL and bare CR are kept. It returns
// the new entry and the mailbox's UIDVALIDITY.
func (s *Store) Append(ctx context.Context, u UserID, id MailboxID, raw []byte, flags []string, date time.Time) (Entry, uint32, error) {
	if err := s.writable("append"); err != nil {
		return Entry{}, 0, err
	}
	pm := s.parse(raw)
	if date.IsZero() {
		date = s.now()
	}
	fs := parseFlags(flags)
	// An uploaded message is indexed at once: its bytes and its texts are
	// two records of one pack write.
	var (
		ent  Entry
		uidv uint32
	)
	err := s.writeRecords(ctx, "append", []blobRec{rawRecord(pm.raw), textRecord(&pm)}, func(w *writeTx, locs []recordLoc) error {
		mb, err := selectableByID(w.ctx, w, u, id)
		if err != nil {
			return err
		}
		msg, err := insertMessage(w, locs[0], int64(len(pm.raw)), date, &pm, locs[1])
		if err != nil {
			return err
		}
		ents, err := addEntries(w, &mb, []entryRow{{msg: msg, bits: fs.bits, kw: fs.keywordText()}})
		if err != nil {
			return err
		}
		ent, uidv = ents[0], mb.UIDValidity
		return nil
	})
	return ent, uidv, err
}

// UpdateFlags applies op with flags to the entries of uids (nil or empty:
// none) and returns every existing targeted entry with its resulting flags,
// ascending. Only entries whose flags changed get the new modseq and appear
// in the ChangeFlags. System flags are matched case-insensitively, keywords
// deduplicated case-insensitively; \Recent, unknown system flags and
// keywords that are not IMAP atoms are ignored.
func (s *Store) UpdateFlags(ctx context.Context, u UserID, id MailboxID, uids []UID, op FlagOp, flags []string) ([]Entry, error) {
	if err := s.writable("update flags"); err != nil {
		return nil, err
	}
	if op != FlagsAdd && op != FlagsRemove && op != FlagsReplace {
		return nil, fmt.Errorf("update flags: unknown operation %d", op)
	}
	arg := parseFlags(flags)
	if uids == nil {
		uids = []UID{}
	}
	var out []Entry
	err := s.write(ctx, "update flags", func(w *writeTx) error {
		mb, err := selectableByID(w.ctx, w, u, id)
		if err != nil {
			return err
		}
		ents, err := selectEntries(w.ctx, w, id, uids, false)
		if err != nil {
			return err
		}
		out = make([]Entry, 0, len(ents))
		var changed []Entry
		var stmt *sql.Stmt
		modseq := mb.HighestModSeq + 1
		for _, e := range ents {
			cur := decodeFlagSet(e.bits, e.kw)
			nfs := cur.apply(op, arg)
			if !nfs.equal(cur) {
				if stmt == nil {
					stmt, err = w.PrepareContext(w.ctx, `UPDATE mailbox_messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`)
					if err != nil {
						return fmt.Errorf("prepare flag update: %w", err)
					}
					defer stmt.Close()
				}
				e.bits, e.kw, e.modseq = nfs.bits, nfs.keywordText(), modseq
				if _, err := stmt.ExecContext(w.ctx, e.bits, e.kw, int64(modseq), id, int64(e.uid)); err != nil {
					return fmt.Errorf("update flags: %w", err)
				}
				changed = append(changed, e.entry())
				out = append(out, changed[len(changed)-1])
				continue
			}
			out = append(out, e.entry())
		}
		if len(changed) > 0 {
			mb.HighestModSeq = modseq
			if err := saveMailboxCounters(w, &mb); err != nil {
				return err
			}
			w.emit(Change{Kind: ChangeFlags, User: u, Mailbox: id, MailboxName: mb.Name, ModSeq: modseq, Entries: changed})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Copy copies the entries of uids (nil or empty: none) from src to dst
// (which may be src): the message bytes are shared and the flags copied.
func (s *Store) Copy(ctx context.Context, u UserID, src MailboxID, uids []UID, dst MailboxID) (CopyResult, error) {
	return s.copyMove(ctx, "copy", u, src, uids, dst, false)
}

// Move moves the entries of uids from src to dst in one transaction: they
// are added to dst (ChangeAdd) and expunged from src (ChangeExpunge).
func (s *Store) Move(ctx context.Context, u UserID, src MailboxID, uids []UID, dst MailboxID) (CopyResult, error) {
	return s.copyMove(ctx, "move", u, src, uids, dst, true)
}

func (s *Store) copyMove(ctx context.Context, op string, u UserID, src MailboxID, uids []UID, dst MailboxID, move bool) (CopyResult, error) {
	if uids == nil {
		uids = []UID{}
	}
	var res CopyResult
	err := s.write(ctx, op, func(w *writeTx) error {
		smb, err := selectableByID(w.ctx, w, u, src)
		if err != nil {
			return err
		}
		dmb := &smb
		if dst != src {
			d, err := selectableByID(w.ctx, w, u, dst)
			if err != nil {
				return err
			}
			dmb = &d
		}
		res.UIDValidity = dmb.UIDValidity
		ents, err := selectEntries(w.ctx, w, src, uids, false)
		if err != nil || len(ents) == 0 {
			return err
		}
		added, err := s.copyEntries(w, dmb, ents)
		if err != nil {
			return err
		}
		res.Source = make([]UID, len(ents))
		res.Dest = make([]UID, len(ents))
		for i := range ents {
			res.Source[i], res.Dest[i] = ents[i].uid, added[i].UID
		}
		if move {
			if err := s.expungeEntries(w, &smb, ents); err != nil {
				return err
			}
			if dst == src {
				announceExpungeFirst(w)
			}
		}
		return nil
	})
	if err != nil {
		return CopyResult{}, err
	}
	return res, nil
}

// announceExpungeFirst reorders the last two changes of w, the ChangeAdd
// and the ChangeExpunge of a MOVE within one mailbox, so that sessions
// report the EXPUNGE before the EXISTS, as RFC 6851 section 4.3's example
// and Dovecot do. The modseqs are exchanged too: changes must stay in
// ascending modseq order, and both belong to the same transaction, so no
// reader can see the state between them.
func announceExpungeFirst(w *writeTx) {
	n := len(w.changes)
	if n < 2 || w.changes[n-2].Kind != ChangeAdd || w.changes[n-1].Kind != ChangeExpunge {
		return
	}
	add, exp := w.changes[n-2], w.changes[n-1]
	add.ModSeq, exp.ModSeq = exp.ModSeq, add.ModSeq
	w.changes[n-2], w.changes[n-1] = exp, add
}

// Expunge removes the entries of uids (nil: all) that carry \Deleted and
// returns their UIDs, ascending.
func (s *Store) Expunge(ctx context.Context, u UserID, id MailboxID, uids []UID) ([]UID, error) {
	var out []UID
	err := s.write(ctx, "expunge", func(w *writeTx) error {
		mb, err := selectableByID(w.ctx, w, u, id)
		if err != nil {
			return err
		}
		ents, err := selectEntries(w.ctx, w, id, uids, true)
		if err != nil || len(ents) == 0 {
			return err
		}
		if err := s.expungeEntries(w, &mb, ents); err != nil {
			return err
		}
		out = make([]UID, len(ents))
		for i, e := range ents {
			out[i] = e.uid
		}
		return nil
	})
	return out, err
}
