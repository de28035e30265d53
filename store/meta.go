package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
)

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

// MetaBrief is Meta without the envelope and structure (both nil), read
// with one query and nothing decoded: for a FETCH that needs only flags,
// dates, sizes and the top-level header (HeaderLen finds it in the bytes).
// Damaged is not known from metadata alone here: the bytes, read with
// Bodies, tell (a message that cannot be read is reported damaged there).
func (s *Store) MetaBrief(ctx context.Context, u UserID, id MailboxID, uids []UID) ([]MessageMeta, error) {
	var out []MessageMeta
	err := s.read(ctx, "message meta", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		f := newUIDFilter(uids)
		if f.none {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT mm.uid, mm.message_id, mm.flags, mm.keywords, mm.modseq, m.size, m.internal_date
			FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
			WHERE mm.mailbox_id = ?`+f.clause+` ORDER BY mm.uid`, append([]any{id}, f.args...)...)
		if err != nil {
			return fmt.Errorf("query meta: %w", err)
		}
		defer rows.Close()
		out = make([]MessageMeta, 0, f.size())
		fi := flagInterner{}
		var (
			uid, modseq, bits, size int64
			msg                     MessageID
			kw                      string
			date                    sql.RawBytes
		)
		for rows.Next() {
			if err := rows.Scan(&uid, &msg, &bits, &kw, &modseq, &size, &date); err != nil {
				return fmt.Errorf("scan meta: %w", err)
			}
			if !f.keep(UID(uid)) {
				continue
			}
			t, err := parseTime(string(date))
			if err != nil {
				return fmt.Errorf("uid %d: %w", uid, err)
			}
			out = append(out, MessageMeta{Entry: Entry{UID: UID(uid), Message: msg, Flags: fi.get(bits, kw), ModSeq: uint64(modseq)}, InternalDate: t, Size: size})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query meta: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
