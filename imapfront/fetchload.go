package imapfront

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/store"
)

// Bounds on the bodies one store.Bodies call reads: at most bodyChunk
// messages, and no more once bodyChunkBytes of response data have been
// collected (a single larger message is still read alone). Each of a
// FETCH's two arenas is up to bodyChunkBytes: at 16 MiB they were 32 MiB
// of the 63 MB a serve's heap held after its first body FETCH, all faulted
// in again after each idle pause; with chunks cut by the messages' sizes
// (chunkLen), 8 MiB costs no more store work.
const (
	bodyChunk      = 1024
	bodyChunkBytes = 8 << 20
)

// fetchLoader is the loading side of fetchPipelined. It only reads the
// session's immutable fields (store, user, logger) and the view's mailbox
// id, which do not change while a command runs.
type fetchLoader struct {
	s        *session
	ctx      context.Context
	v        *view
	options  *imap.FetchOptions
	needBody bool
	markSeen bool
	pieces   chan<- fetchPiece
	free     <-chan *bodyArena
	// held is the arena taken from free and not yet sent in a piece:
	// fetchPipelined gives it back to the server's pool when the loader
	// stops.
	held *bodyArena
}

// send hands a piece to the writer; false when the FETCH is being
// abandoned (or p is an error): the loader must stop.
func (l *fetchLoader) send(p fetchPiece) bool {
	select {
	case l.pieces <- p:
		return p.err == nil
	case <-l.ctx.Done():
		return false
	}
}

// fail reports a store error, unless the FETCH is being abandoned (the
// error is then the cancellation's, not worth a log line).
func (l *fetchLoader) fail(err error) bool {
	if l.ctx.Err() != nil {
		return false
	}
	return l.send(fetchPiece{err: l.s.storeErr("FETCH", targetMailbox, err)})
}

// batch loads one batch of targets (at most fetchBatch) and sends its
// responses; false when the loader must stop.
func (l *fetchLoader) batch(batch []target) bool {
	s, v := l.s, l.v
	s.fault("fetch-load")
	st := s.srv.opts.Store
	var (
		metas []store.MessageMeta
		err   error
	)
	_, bodiesBrief := st.(BriefMetaStore)
	bl, brief := st.(BriefLister)
	brief = brief && l.needBody && bytesOnly(l.options)
	switch {
	case brief && bodiesBrief && !l.markSeen && headerOnly(l.options):
		// Nothing to know before the bytes are read: the metadata
		// comes with them (loadBodies, BodiesBrief).
		return l.bodies(batch, nil, nil, brief)
	case brief:
		// Sizes (to cut the chunks) and flags, nothing decoded.
		metas, err = bl.MetaBrief(l.ctx, s.user.id, v.mbox.id, targetUIDs(batch))
	default:
		metas, err = st.Meta(l.ctx, s.user.id, v.mbox.id, targetUIDs(batch))
	}
	if err != nil {
		return l.fail(err)
	}
	byUID := make(map[store.UID]*store.MessageMeta, len(metas))
	for i := range metas {
		byUID[metas[i].UID] = &metas[i]
	}
	seenChanged := map[store.UID]bool{}
	if l.markSeen {
		var unseen []store.UID
		for _, t := range batch {
			if m := byUID[t.uid]; m != nil && !slices.Contains(m.Flags, store.FlagSeen) {
				unseen = append(unseen, t.uid)
			}
		}
		if len(unseen) > 0 {
			octx := store.WithOrigin(l.ctx, &opOrigin{view: v})
			entries, err := st.UpdateFlags(octx, s.user.id, v.mbox.id, unseen, store.FlagsAdd, []string{store.FlagSeen})
			if err != nil {
				return l.fail(err)
			}
			for _, e := range entries {
				if m := byUID[e.UID]; m != nil {
					m.Flags = e.Flags
					seenChanged[e.UID] = true
				}
			}
		}
	}
	if !l.needBody {
		out := make([]fetched, 0, len(batch))
		for _, t := range batch {
			if m := byUID[t.uid]; m != nil { // else expunged meanwhile
				out = append(out, fetched{t: t, meta: m, flags: m.Flags, damaged: m.Damaged && needsData(l.options)})
			}
		}
		return l.send(fetchPiece{out: out, seen: seenChanged})
	}
	var present []target
	for _, t := range batch {
		if byUID[t.uid] != nil {
			present = append(present, t)
		}
	}
	return l.bodies(present, byUID, seenChanged, brief)
}

// bodies loads the responses of present, which need message bytes, a
// chunk at a time, and sends them; false when the loader must stop.
// byUID nil: the metadata is read with the bytes (BriefMetaStore).
func (l *fetchLoader) bodies(present []target, byUID map[store.UID]*store.MessageMeta, seenChanged map[store.UID]bool, brief bool) bool {
	s, v := l.s, l.v
	for len(present) > 0 {
		var arena *bodyArena
		select {
		case arena = <-l.free:
		case <-l.ctx.Done():
			return false
		}
		l.held = arena
		chunk := present[:chunkLen(present, byUID, l.options)]
		// More to load after this chunk: the arena is made full-size
		// at once. Sized to this chunk's bytes, each of the two was
		// made again a little larger for the next (chunks are cut by
		// size to just under bodyChunkBytes): 30 MB allocated, and
		// faulted in, on a serve's first FETCH of a large mailbox
		// instead of 16.
		if len(chunk) < len(present) {
			arena.reset(bodyChunkBytes)
		}
		// The chunk's bytes are copied out of the store's read
		// transaction; they are written to the socket after it ended.
		done, out, err := s.loadBodies(l.ctx, v, chunk, byUID, l.options, arena, brief)
		if err != nil {
			if l.ctx.Err() != nil {
				return false
			}
			return l.send(fetchPiece{err: err})
		}
		present = present[done:]
		if err := l.unseeDamaged(out, seenChanged); err != nil {
			return l.fail(err)
		}
		if !l.send(fetchPiece{out: out, seen: seenChanged, arena: arena}) {
			return false // not sent: still held
		}
		l.held = nil
	}
	return true
}

// chunkLen returns how many of present one store call reads: at most
// bodyChunk, and, when their metadata is known (byUID not nil), no more
// than fill bodyChunkBytes by their sizes (at least one). Asked for more,
// a store reads ahead past the message that fills the arena (pgstore
// reads 16 messages ahead, a statement of 32 at a time), only for them to
// be read again by the next call.
func chunkLen(present []target, byUID map[store.UID]*store.MessageMeta, options *imap.FetchOptions) int {
	n := min(len(present), bodyChunk)
	sections := int64(len(options.BodySection) + len(options.BinarySection))
	if byUID == nil || sections == 0 {
		return n
	}
	var sum int64
	for i, t := range present[:n] {
		sum += byUID[t.uid].Size * sections
		if sum > bodyChunkBytes && i > 0 {
			return i
		}
	}
	return n
}

// unseeDamaged takes back the \Seen this FETCH set on messages whose
// bytes turned out to be unreadable: the user never saw them.
func (l *fetchLoader) unseeDamaged(out []fetched, seenChanged map[store.UID]bool) error {
	var uids []store.UID
	for _, f := range out {
		if f.damaged && seenChanged[f.t.uid] {
			uids = append(uids, f.t.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	s, v := l.s, l.v
	octx := store.WithOrigin(l.ctx, &opOrigin{view: v})
	_, err := s.srv.opts.Store.UpdateFlags(octx, s.user.id, v.mbox.id, uids, store.FlagsRemove, []string{store.FlagSeen})
	return err
}

// briefSectionGuess is the size a header section is guessed at when the
// arena of a chunk is sized before the messages' sizes are known.
const briefSectionGuess = 1 << 10

// errChunkFull stops a store.Bodies call once a chunk holds bodyChunkBytes.
var errChunkFull = errors.New("imapfront: fetch chunk full")

// bodyArena holds the section bytes of one chunk of FETCH responses. It is
// reused from chunk to chunk of one FETCH command (a chunk is written out
// before the next is loaded), so copying bodies out of the store costs no
// allocation per message and no garbage.
type bodyArena struct {
	buf []byte
	// got and secs are a chunk's responses and their section slices
	// (loadBodies), kept with the bytes for the same reason: made for
	// every chunk, they were 15 % of a body FETCH's garbage.
	got  []fetched
	secs [][]byte
	// bufs counts the buffers made for buf (the tests' view of growth).
	bufs int
}

// responses returns n empty responses and the room for nsec sections of
// each, reused from the arena's previous chunk.
func (a *bodyArena) responses(n, nsec int) ([]fetched, [][]byte) {
	if cap(a.got) < n {
		a.got = make([]fetched, n)
	} else {
		a.got = a.got[:n]
		clear(a.got)
	}
	if cap(a.secs) < n*nsec {
		a.secs = make([][]byte, n*nsec)
	} else {
		a.secs = a.secs[:n*nsec]
		clear(a.secs)
	}
	return a.got, a.secs
}

// reset empties the arena for a chunk that needs up to want bytes (at
// most bodyChunkBytes are kept ready; the rest are allocated as needed).
func (a *bodyArena) reset(want int64) {
	want = min(want, bodyChunkBytes)
	if c := int64(cap(a.buf)); c < want {
		// Grow by at least half, so chunks of varying size do not
		// each allocate (and fault in) a fresh arena.
		a.buf = make([]byte, 0, min(max(want, c+c/2), bodyChunkBytes))
		a.bufs++
	}
	a.buf = a.buf[:0]
}

// room reports whether n more bytes fit the arena, growing it (by at least
// half, up to bodyChunkBytes) when they do not; the bytes copied before stay
// where they are, referenced by their sections. False: the arena is at its
// full size and n bytes do not fit what is left of it.
func (a *bodyArena) room(n int) bool {
	if cap(a.buf)-len(a.buf) >= n {
		return true
	}
	if cap(a.buf) >= bodyChunkBytes {
		return false
	}
	c := cap(a.buf)
	a.buf = make([]byte, 0, min(max(n, c+c/2), bodyChunkBytes))
	a.bufs++
	return cap(a.buf) >= n
}

// copy returns a copy of b, in the arena when it fits.
func (a *bodyArena) copy(b []byte) []byte {
	n := len(a.buf)
	if cap(a.buf)-n < len(b) {
		return bytes.Clone(b)
	}
	a.buf = append(a.buf, b...)
	return a.buf[n : n+len(b) : n+len(b)]
}

// loadBodies computes the FETCH responses of the first messages of chunk
// (ascending by UID, all with metadata in byUID, or byUID nil: the metadata
// is read with the bytes, BriefMetaStore.BodiesBrief) from one store call,
// copying every section out of the store's buffers into arena (which it
// resets), or having the store read the bytes into arena when it can and
// the sections are slices of them (BodiesIntoStore, rawSections: nothing
// is copied). It returns how many targets of chunk it consumed, and their
// responses in chunk order, without those expunged meanwhile.
//
// brief says the metadata has no structure (BriefLister.MetaBrief, for a
// bytesOnly FETCH): the sections are found in the bytes.
func (s *session) loadBodies(ctx context.Context, v *view, chunk []target, byUID map[store.UID]*store.MessageMeta, options *imap.FetchOptions, arena *bodyArena, brief bool) (int, []fetched, error) {
	byChunkUID := newChunkIndex(chunk)
	var want int64
	sections := int64(len(options.BodySection) + len(options.BinarySection))
	for _, t := range chunk {
		if byUID != nil {
			want += byUID[t.uid].Size * sections
		} else {
			want += briefSectionGuess * sections
		}
	}
	arena.reset(want)
	var hs *headerSections
	if brief {
		hs = newHeaderSections(options.BodySection)
	}
	// into: the store reads the bytes into the arena (fetchinto.go) and
	// the sections are slices of them, copied nowhere.
	var into *arenaCarver
	bi, ok := s.srv.opts.Store.(BodiesIntoStore)
	if ok && byUID != nil && hs != nil && rawSections(options) {
		into = newArenaCarver(arena)
	}
	// rawIsHeader: the store hands only each message's header
	// (BodiesBrief with store.BriefHeader), not its whole bytes.
	rawIsHeader := false
	// No allocation per message: the responses and their section slices
	// come with the arena, the metadata (BodiesBrief's is only valid
	// during its call) is one allocation per chunk. A response with meta
	// nil is absent.
	nsec := len(options.BodySection)
	got, secs := arena.responses(len(chunk), nsec)
	var metas []store.MessageMeta
	var (
		size    int
		last    = -1
		sectErr error
	)
	visit := func(i int, m *store.MessageMeta, raw []byte, damaged error) error {
		if size >= bodyChunkBytes {
			return errChunkFull
		}
		// A section that does not fit what is left of a full-size arena
		// ends the chunk before this message (which starts the next
		// one), unless the chunk holds no bytes before it: copied to a
		// buffer of its own instead, it was 40 % of a body FETCH's
		// garbage.
		before := size
		fits := func(b []byte) bool { return arena.room(len(b)) || before == 0 }
		f := &got[i]
		*f = fetched{t: chunk[i], meta: m, flags: m.Flags, bodies: secs[i*nsec : i*nsec : (i+1)*nsec]}
		if damaged != nil || m.Damaged {
			// Answered for itself only (the store logged and
			// counted it): by the tagged NO.
			f.damaged = true
			last = i
			return nil
		}
		if into != nil {
			if len(raw) > 0 && !into.holds(raw) {
				// Read into the store's own buffer: what is left
				// of the arena did not hold it.
				if before > 0 {
					*f = fetched{}
					return errChunkFull
				}
				raw = bytes.Clone(raw) // alone, larger than an arena
			}
			for i, sec := range options.BodySection {
				b := partial(hs.section(raw, i, false), sec.Partial)
				size += len(b)
				f.bodies = append(f.bodies, b)
			}
			last = i
			return nil
		}
		for i, sec := range options.BodySection {
			var b []byte
			if hs != nil {
				b = hs.section(raw, i, rawIsHeader)
			} else {
				b = bodySection(raw, m.Structure, sec)
			}
			b = partial(b, sec.Partial)
			if !fits(b) {
				*f = fetched{}
				return errChunkFull
			}
			b = arena.copy(b)
			size += len(b)
			f.bodies = append(f.bodies, b)
		}
		for _, sec := range options.BinarySection {
			b, err := binarySection(raw, m.Structure, sec.Part)
			if err != nil {
				sectErr = err
				return err
			}
			b = partial(b, sec.Partial)
			if !fits(b) {
				*f = fetched{}
				return errChunkFull
			}
			b = arena.copy(b)
			size += len(b)
			f.binaries = append(f.binaries, b)
		}
		for _, sec := range options.BinarySectionSize {
			n, err := binarySize(raw, m.Structure, sec.Part)
			if err != nil {
				sectErr = err
				return err
			}
			f.binSizes = append(f.binSizes, clampUint32(n))
		}
		last = i
		return nil
	}
	var err error
	if bs, ok := s.srv.opts.Store.(BriefMetaStore); ok && byUID == nil {
		// Only what the response writes: every column is a conversion
		// per message (writeFetchItems reads no ids or modseqs here).
		// The loader takes this path for headerOnly FETCHes only:
		// the store reads (and checks) just each message's header.
		want := store.BriefHeader
		if options.InternalDate {
			want |= store.BriefInternalDate
		}
		metas = make([]store.MessageMeta, len(chunk))
		rawIsHeader = true
		err = bs.BodiesBrief(ctx, s.user.id, v.mbox.id, targetUIDs(chunk), want, func(m *store.MessageMeta, raw []byte, damaged error) error {
			i, ok := byChunkUID.find(m.UID)
			if !ok {
				return nil
			}
			metas[i] = *m
			return visit(i, &metas[i], raw, damaged)
		})
	} else {
		fn := func(uid store.UID, raw []byte, damaged error) error {
			i, ok := byChunkUID.find(uid)
			if !ok {
				return nil
			}
			return visit(i, byUID[uid], raw, damaged)
		}
		if into != nil {
			err = bi.BodiesInto(ctx, s.user.id, v.mbox.id, targetUIDs(chunk), into.carve, fn)
		} else {
			err = s.srv.opts.Store.Bodies(ctx, s.user.id, v.mbox.id, targetUIDs(chunk), fn)
		}
	}
	done := len(chunk)
	switch {
	case sectErr != nil:
		return 0, nil, sectErr
	case errors.Is(err, errChunkFull):
		done = last + 1
	case errors.Is(err, store.ErrNotFound):
		return len(chunk), nil, nil // the mailbox is gone: nothing to answer
	case err != nil && ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case err != nil:
		return 0, nil, s.storeErr("FETCH", targetMailbox, err)
	}
	out := got[:0]
	for _, f := range got[:done] {
		if f.meta != nil {
			out = append(out, f)
		}
	}
	return done, out, nil
}

// chunkIndex finds the targets of a chunk by UID as the store hands them
// back, ascending (some possibly missing: expunged meanwhile): a cursor
// walks the chunk when it is ascending by UID, as resolve makes it for
// sequence and UID sets (a map per chunk cost 2 % of a header sync); a
// map serves any other order.
type chunkIndex struct {
	chunk []target
	next  int
	byUID map[store.UID]int // nil while the chunk is ascending
}

func newChunkIndex(chunk []target) *chunkIndex {
	x := &chunkIndex{chunk: chunk}
	if !slices.IsSortedFunc(chunk, func(a, b target) int { return cmp.Compare(a.uid, b.uid) }) {
		x.byUID = make(map[store.UID]int, len(chunk))
		for i, t := range chunk {
			x.byUID[t.uid] = i
		}
	}
	return x
}

// find returns the index in the chunk of uid, which is above every UID
// found before when the chunk is ascending.
func (x *chunkIndex) find(uid store.UID) (int, bool) {
	if x.byUID != nil {
		i, ok := x.byUID[uid]
		return i, ok
	}
	for x.next < len(x.chunk) && x.chunk[x.next].uid < uid {
		x.next++
	}
	if x.next < len(x.chunk) && x.chunk[x.next].uid == uid {
		x.next++
		return x.next - 1, true
	}
	return 0, false
}
