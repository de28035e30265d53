package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
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

// Meta returns what FETCH needs without reading bodies for the entries of
// uids (nil: all; ascending; absent UIDs are skipped): one query for the
// entries of the set, then, for the messages whose metadata is not cached,
// one query per batch of messages.
//
// The returned values share memory with the store's metadata cache and with
// each other: Envelope and Structure (and everything they point to) are
// shared by every caller that reads the same message, and entries with
// identical flags share their Flags slice. Callers must treat all of it as
// read-only.
func (s *Store) Meta(ctx context.Context, u UserID, id MailboxID, uids []UID) ([]MessageMeta, error) {
	var out []MessageMeta
	// Unindexed messages are parsed from their bytes (index.go).
	r := s.blobs.begin()
	defer r.end()
	err := s.read(ctx, "message meta", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		f := newUIDFilter(uids)
		if f.none {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT mm.uid, mm.message_id, mm.flags, mm.keywords, mm.modseq
			FROM mailbox_messages mm WHERE mm.mailbox_id = ?`+f.clause+` ORDER BY mm.uid`, append([]any{id}, f.args...)...)
		if err != nil {
			return fmt.Errorf("query meta: %w", err)
		}
		defer rows.Close()
		out = make([]MessageMeta, 0, f.size())
		var ids []MessageID
		if n := f.size(); n > 0 {
			ids = make([]MessageID, 0, n)
		}
		fi := flagInterner{}
		var (
			uid, modseq, bits int64
			msg               MessageID
			kw                string
		)
		for rows.Next() {
			if err := rows.Scan(&uid, &msg, &bits, &kw, &modseq); err != nil {
				return fmt.Errorf("scan meta: %w", err)
			}
			if !f.keep(UID(uid)) {
				continue
			}
			out = append(out, MessageMeta{Entry: Entry{UID: UID(uid), Message: msg, Flags: fi.get(bits, kw), ModSeq: uint64(modseq)}})
			ids = append(ids, msg)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query meta: %w", err)
		}
		rows.Close()
		infos := make([]*messageInfo, len(ids))
		if s.metaCache.lookup(ids, infos) < len(ids) {
			if err := s.loadInfos(ctx, tx, r, ids, infos); err != nil {
				return err
			}
		}
		for i := range out {
			m := infos[i]
			if m == nil {
				return fmt.Errorf("uid %d: message %d has no metadata row", out[i].UID, out[i].Message)
			}
			out[i].InternalDate, out[i].Size, out[i].Envelope, out[i].Structure = m.date, m.size, m.envelope, m.structure
			out[i].Damaged = m.damaged
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// infoMiss is a message whose metadata must be read: infos[idx] is ids[idx]'s.
type infoMiss struct {
	id  MessageID
	idx int
}

// loadInfos reads and decodes the metadata of every ids[i] whose infos[i]
// is nil, fills infos[i] and caches what it decoded. The distinct messages
// are read with one range scan when their ids are dense, else with one
// query per batch of sqlMaxVars ids. Rows are decoded in chunks, by
// parallel workers when there are many (decoding costs more than reading).
// Unindexed messages are parsed from their bytes, read through br, exactly
// as the indexer will (and cached the same way).
func (s *Store) loadInfos(ctx context.Context, tx *sql.Tx, br *blobReader, ids []MessageID, infos []*messageInfo) error {
	var misses []infoMiss
	for i, id := range ids {
		if infos[i] == nil {
			misses = append(misses, infoMiss{id, i})
		}
	}
	slices.SortFunc(misses, func(a, b infoMiss) int { return cmp.Compare(a.id, b.id) })
	distinct := make([]MessageID, 0, len(misses))
	for _, m := range misses {
		if len(distinct) == 0 || distinct[len(distinct)-1] != m.id {
			distinct = append(distinct, m.id)
		}
	}

	dec := newInfoDecoder(misses, infos, len(distinct))
	defer dec.stop()
	var unindexed []unindexedInfo
	j := 0 // next miss to match, misses being ascending by id like the rows
	scan := func(query string, args ...any) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("query message metadata: %w", err)
		}
		defer rows.Close()
		var (
			r       rawInfo
			env, st sql.RawBytes
			indexed bool
			loc     blobLoc
			crc     int64
		)
		for rows.Next() {
			if err := rows.Scan(&r.id, &r.size, &r.date, &env, &st, &indexed, &loc.pack, &loc.off, &crc); err != nil {
				return fmt.Errorf("scan message metadata: %w", err)
			}
			for j < len(misses) && misses[j].id < r.id {
				j++
			}
			if j == len(misses) || misses[j].id != r.id {
				continue // in the scanned range but not wanted
			}
			r.lo = j
			for j < len(misses) && misses[j].id == r.id {
				j++
			}
			r.hi = j
			if !indexed {
				loc.size, loc.bodyCRC = r.size, uint32(crc)
				unindexed = append(unindexed, unindexedInfo{rawInfo: r, loc: loc})
				continue
			}
			r.arena, r.split = joinBlobs(env, st), len(env)
			if err := dec.add(r); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query message metadata: %w", err)
		}
		return nil
	}
	const cols = `SELECT id, size, internal_date, envelope, structure, indexed, pack, pack_off, body_crc FROM messages WHERE id `
	if lo, hi := distinct[0], distinct[len(distinct)-1]; uint64(hi-lo) < 2*uint64(len(distinct)) {
		if err := scan(cols+`BETWEEN ? AND ? ORDER BY id`, lo, hi); err != nil {
			return err
		}
	} else {
		for start := 0; start < len(distinct); start += sqlMaxVars {
			batch := distinct[start:min(len(distinct), start+sqlMaxVars)]
			args := make([]any, len(batch))
			for i, id := range batch {
				args[i] = id
			}
			if err := scan(cols+`IN (?`+strings.Repeat(", ?", len(batch)-1)+`) ORDER BY id`, args...); err != nil {
				return err
			}
		}
	}
	newIDs, newInfos, err := dec.finish()
	if err != nil {
		return err
	}
	s.metaCache.add(newIDs, newInfos)
	return s.parseInfos(br, unindexed, misses, infos)
}

// unindexedInfo is a row of loadInfos for a message not yet indexed.
type unindexedInfo struct {
	rawInfo
	loc blobLoc
}

// parseChunk is how many unindexed messages parseInfos reads and parses at
// a time (their bytes are held in memory meanwhile).
const parseChunk = 256

// parseInfos computes the metadata of unindexed messages from their bytes,
// fills infos for their misses and caches it.
func (s *Store) parseInfos(br *blobReader, rows []unindexedInfo, misses []infoMiss, infos []*messageInfo) error {
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), parseChunk)]
		rows = rows[len(chunk):]
		raws := make([][]byte, len(chunk))
		damaged := make([]bool, len(chunk))
		for i, u := range chunk {
			raw, err := br.body(u.loc)
			if isCorruptRead(err) {
				// Its metadata can't be computed: the message is
				// answered as Damaged, and not cached.
				s.noteDamagedMessage("parse unindexed message", 0, 0, fmt.Errorf("message %d: %w", u.id, err))
				damaged[i] = true
				continue
			}
			if err != nil {
				return fmt.Errorf("message %d: %w", u.id, err)
			}
			raws[i] = slices.Clone(raw)
		}
		pms := s.parseAll(raws)
		ids := make([]MessageID, 0, len(chunk))
		got := make([]*messageInfo, 0, len(chunk))
		for i, u := range chunk {
			if damaged[i] {
				date, err := parseTime(u.date)
				if err != nil {
					return fmt.Errorf("message %d: %w", u.id, err)
				}
				info := &messageInfo{size: u.size, date: date, damaged: true}
				for _, m := range misses[u.lo:u.hi] {
					infos[m.idx] = info
				}
				continue
			}
			em, err := encodeMeta(&pms[i], u.size, u.date)
			if err != nil {
				return fmt.Errorf("message %d: %w", u.id, err)
			}
			ids, got = append(ids, u.id), append(got, em.info)
			for _, m := range misses[u.lo:u.hi] {
				infos[m.idx] = em.info
			}
		}
		s.metaCache.add(ids, got)
	}
	return nil
}

// rawInfo is one messages row as read, before decoding: arena holds the
// envelope blob (up to split) followed by the structure blob; the row is
// the metadata of misses[lo:hi].
type rawInfo struct {
	id     MessageID
	size   int64
	date   string
	arena  string
	split  int
	lo, hi int
}

// decodeChunk is how many rows a decoding worker takes at a time.
const decodeChunk = 128

// infoDecoder decodes rawInfo rows in chunks, inline or, for large loads
// on a multi-core machine, with worker goroutines that finish (or stop)
// before loadInfos returns. Each row writes only its own infos entries.
type infoDecoder struct {
	misses []infoMiss
	infos  []*messageInfo

	chunk []rawInfo
	work  chan []rawInfo // nil: decode inline
	wg    sync.WaitGroup

	mu       sync.Mutex
	err      error
	newIDs   []MessageID
	newInfos []*messageInfo
}

func newInfoDecoder(misses []infoMiss, infos []*messageInfo, rows int) *infoDecoder {
	d := &infoDecoder{
		misses:   misses,
		infos:    infos,
		newIDs:   make([]MessageID, 0, rows),
		newInfos: make([]*messageInfo, 0, rows),
	}
	if workers := min(runtime.GOMAXPROCS(0), rows/(2*decodeChunk)); workers > 1 {
		// The workers get the channel itself, not d.work, which stop
		// clears (possibly before a worker has started).
		work := make(chan []rawInfo, workers)
		d.work = work
		d.wg.Add(workers)
		for range workers {
			go func() {
				defer d.wg.Done()
				for c := range work {
					d.decode(c)
				}
			}()
		}
	}
	return d
}

// add queues r, decoding a full chunk (or handing it to a worker). It
// returns the first decoding error met so far.
func (d *infoDecoder) add(r rawInfo) error {
	if d.chunk == nil {
		d.chunk = make([]rawInfo, 0, decodeChunk)
	}
	d.chunk = append(d.chunk, r)
	if len(d.chunk) == decodeChunk {
		d.flush()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *infoDecoder) flush() {
	if len(d.chunk) == 0 {
		return
	}
	if d.work != nil {
		d.work <- d.chunk
	} else {
		d.decode(d.chunk)
	}
	d.chunk = nil
}

// decode decodes one chunk, filling infos.
func (d *infoDecoder) decode(c []rawInfo) {
	ids := make([]MessageID, 0, len(c))
	out := make([]*messageInfo, 0, len(c))
	var firstErr error
	for _, r := range c {
		info, err := decodeInfo(r.size, r.date, r.arena[:r.split], r.arena[r.split:])
		if err != nil {
			firstErr = fmt.Errorf("message %d: %w", r.id, err)
			break
		}
		for _, m := range d.misses[r.lo:r.hi] {
			d.infos[m.idx] = info
		}
		ids = append(ids, r.id)
		out = append(out, info)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if firstErr != nil && d.err == nil {
		d.err = firstErr
	}
	d.newIDs = append(d.newIDs, ids...)
	d.newInfos = append(d.newInfos, out...)
}

// stop ends the workers, if any, and waits for them. It is idempotent.
func (d *infoDecoder) stop() {
	if d.work != nil {
		close(d.work)
		d.work = nil
		d.wg.Wait()
	}
}

// finish decodes what is left, waits for the workers and returns what was
// decoded.
func (d *infoDecoder) finish() ([]MessageID, []*messageInfo, error) {
	d.flush()
	d.stop()
	return d.newIDs, d.newInfos, d.err
}

// joinBlobs copies a row's envelope and structure blobs into one string
// (one allocation), which every string decoded from them is a substring of.
func joinBlobs(env, st []byte) string {
	var sb strings.Builder
	sb.Grow(len(env) + len(st))
	sb.Write(env)
	sb.Write(st)
	return sb.String()
}

// decodeInfo decodes one messages row; the strings of the result are
// substrings of env and st.
func decodeInfo(size int64, date, env, st string) (*messageInfo, error) {
	t, err := parseTime(date)
	if err != nil {
		return nil, err
	}
	e, ecost, err := decodeEnvelope(env)
	if err != nil {
		return nil, err
	}
	p, pcost, err := decodeStructure(st)
	if err != nil {
		return nil, err
	}
	return &messageInfo{size: size, date: t, envelope: e, structure: p, cost: ecost + pcost + cacheEntryOverhead}, nil
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
