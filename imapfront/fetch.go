package imapfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// fetchBatch is how many messages one store.Meta call loads.
const fetchBatch = 1024

// fetched is what one FETCH response carries, computed before the response
// is started, so that an error never leaves a response half written.
type fetched struct {
	t        target
	meta     *store.MessageMeta
	flags    []string
	bodies   [][]byte // per options.BodySection
	binaries [][]byte // per options.BinarySection
	binSizes []uint32 // per options.BinarySectionSize
	// damaged: the message's stored data could not be read; it gets no
	// response, and the FETCH ends with errDamaged naming it.
	damaged bool
}

// Fetch implements imapserver.Session. Messages of the client view that
// were expunged meanwhile are skipped. Non-peek body sections set \Seen
// (not in a read-only mailbox) and the response then carries FLAGS.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("FETCH", &err)
	v, err := s.requireSelected()
	if err != nil {
		return err
	}
	defer v.requeueHidden()
	if options.ModSeq || options.ChangedSince != 0 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "CONDSTORE is not supported"}
	}
	s.fault("fetch")
	s.conn.cork()
	defer s.uncork(&err)
	targets := v.resolve(numSet, s.searchRes)
	needBody := len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	markSeen := false
	if !v.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	if flagsOnly(options) {
		return s.fetchFlags(w, v, targets, options.Flags)
	}
	return s.fetchPipelined(w, v, targets, options, needBody, markSeen)
}

// flagsOnly reports whether options ask for nothing beyond UID and FLAGS,
// which the mailbox's shared state holds.
func flagsOnly(o *imap.FetchOptions) bool {
	return o.BodyStructure == nil && !o.Envelope && !o.InternalDate && !o.RFC822Size &&
		len(o.BodySection) == 0 && len(o.BinarySection) == 0 && len(o.BinarySectionSize) == 0
}

// flagsChunk is how many messages fetchFlags copies out of the mailbox
// state under one hold of its lock.
const flagsChunk = 1024

// fetchFlags answers a FETCH of UID and (withFlags) FLAGS only (the resync every
// client repeats, `UID FETCH 1:* (FLAGS)`) from the mailbox's shared state,
// which the feed keeps equal to the store's committed flags: no store read,
// no message metadata, and memory bounded by one chunk. Messages expunged
// meanwhile are skipped, as in the store's answer.
func (s *session) fetchFlags(w *imapserver.FetchWriter, v *view, targets []target, withFlags bool) error {
	type current struct {
		t     target
		flags []string
	}
	out := make([]current, 0, min(len(targets), flagsChunk))
	for len(targets) > 0 {
		chunk := targets[:min(len(targets), flagsChunk)]
		targets = targets[len(chunk):]
		out = out[:0]
		v.mbox.mu.Lock()
		// Both are ascending by UID: find the first, then walk.
		i, _ := v.mbox.indexLocked(chunk[0].uid)
		for _, t := range chunk {
			for i < len(v.mbox.entries) && v.mbox.entries[i].uid < t.uid {
				i++
			}
			if i < len(v.mbox.entries) && v.mbox.entries[i].uid == t.uid {
				// Flag slices are replaced, never modified: safe
				// to use after the lock is released.
				out = append(out, current{t: t, flags: v.mbox.entries[i].flags})
			}
		}
		v.mbox.mu.Unlock()
		for _, c := range out {
			resp := w.CreateMessage(c.t.seq)
			// Until closed, a panic leaves it to session.end to
			// release the response and drop the connection.
			s.openResp = resp
			resp.WriteUID(imap.UID(c.t.uid))
			s.fault("fetch-response")
			if withFlags {
				resp.WriteFlags(toIMAPFlags(v.replyFlags(c.t.uid, c.flags)))
			}
			s.openResp = nil
			if err := resp.Close(); err != nil {
				return wrapErr("write fetch response", err)
			}
		}
	}
	return nil
}

// fetchPiece is a run of FETCH responses ready to be written, or the error
// that ends the FETCH.
type fetchPiece struct {
	out   []fetched
	seen  map[store.UID]bool // messages whose \Seen this FETCH set
	arena *bodyArena         // holds out's section bytes; handed back once written
	err   error
}

// fetchArenas is how many body arenas one FETCH uses: one being written to
// the client while the next chunk is read into the other.
const fetchArenas = 2

// fetchPipelined answers a FETCH in two goroutines: a loader reads the
// metadata and bodies from the store, a chunk ahead, while the session's
// goroutine writes the previous chunk to the client, so that store reads
// and socket writes overlap. The loader is stopped and waited for before
// fetchPipelined returns, whatever happens.
func (s *session) fetchPipelined(w *imapserver.FetchWriter, v *view, targets []target, options *imap.FetchOptions, needBody, markSeen bool) error {
	ctx, cancel := context.WithCancel(s.ctx)
	pieces := make(chan fetchPiece, 1)
	free := make(chan *bodyArena, fetchArenas)
	for range fetchArenas {
		free <- new(bodyArena)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pieces)
		defer func() {
			if p := recover(); p != nil {
				s.srv.countPanic()
				s.log.Error("panic in imap session", "op", "FETCH", "panic", p, "stack", string(debug.Stack()))
				select {
				case pieces <- fetchPiece{err: errInternal}:
				case <-ctx.Done():
				}
			}
		}()
		l := fetchLoader{s: s, ctx: ctx, v: v, options: options, needBody: needBody, markSeen: markSeen, pieces: pieces, free: free}
		for len(targets) > 0 {
			n := min(len(targets), fetchBatch)
			if !l.batch(targets[:n]) {
				return
			}
			targets = targets[n:]
		}
	}()
	defer func() {
		cancel()
		for range pieces {
		}
		wg.Wait()
	}()
	var damaged []store.UID
	for p := range pieces {
		if p.err != nil {
			return p.err
		}
		for i := range p.out {
			if p.out[i].damaged {
				// No response at all: one without the items asked
				// for breaks clients (mbsync aborts the whole sync on
				// it), while a message missing from the answer and
				// named by the tagged NO is skipped by them.
				damaged = append(damaged, p.out[i].t.uid)
				continue
			}
			if err := s.writeFetch(w, &p.out[i], options, p.seen[p.out[i].t.uid]); err != nil {
				return err
			}
		}
		if p.arena != nil {
			free <- p.arena
		}
	}
	if len(damaged) > 0 {
		return errDamaged(damaged)
	}
	return nil
}

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
	bs, brief := st.(briefMetaStore)
	brief = brief && l.needBody && headerOnly(l.options)
	switch {
	case brief && !l.markSeen:
		// Nothing to know before the bytes are read: the metadata
		// comes with them (loadBodies, BodiesBrief).
		return l.bodies(batch, nil, nil, brief)
	case brief:
		metas, err = bs.MetaBrief(l.ctx, s.user.id, v.mbox.id, targetUIDs(batch))
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
// byUID nil: the metadata is read with the bytes (briefMetaStore).
func (l *fetchLoader) bodies(present []target, byUID map[store.UID]*store.MessageMeta, seenChanged map[store.UID]bool, brief bool) bool {
	s, v := l.s, l.v
	for len(present) > 0 {
		var arena *bodyArena
		select {
		case arena = <-l.free:
		case <-l.ctx.Done():
			return false
		}
		chunk := present[:min(len(present), bodyChunk)]
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
			return false
		}
	}
	return true
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

// Bounds on the bodies one store.Bodies call reads: at most bodyChunk
// messages, and no more once bodyChunkBytes of response data have been
// collected (a single larger message is still read alone).
const (
	bodyChunk      = 1024
	bodyChunkBytes = 16 << 20
)

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
}

// reset empties the arena for a chunk that needs up to want bytes (at
// most bodyChunkBytes are kept ready; the rest are allocated as needed).
func (a *bodyArena) reset(want int64) {
	want = min(want, bodyChunkBytes)
	if c := int64(cap(a.buf)); c < want {
		// Grow by at least half, so chunks of varying size do not
		// each allocate (and fault in) a fresh arena.
		a.buf = make([]byte, 0, min(max(want, c+c/2), bodyChunkBytes))
	}
	a.buf = a.buf[:0]
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
// is read with the bytes, briefMetaStore.BodiesBrief) from one store call,
// copying every section out of the store's buffers into arena (which it
// resets). It returns how many targets of chunk it consumed, and their
// responses in chunk order, without those expunged meanwhile.
//
// brief says the metadata has no structure (briefMetaStore.MetaBrief, for
// a headerOnly FETCH): the sections are found in the bytes.
func (s *session) loadBodies(ctx context.Context, v *view, chunk []target, byUID map[store.UID]*store.MessageMeta, options *imap.FetchOptions, arena *bodyArena, brief bool) (int, []fetched, error) {
	byChunkUID := make(map[store.UID]int, len(chunk))
	var want int64
	sections := int64(len(options.BodySection) + len(options.BinarySection))
	for i, t := range chunk {
		byChunkUID[t.uid] = i
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
	got := make([]*fetched, len(chunk))
	var (
		size    int
		last    = -1
		sectErr error
	)
	visit := func(i int, m *store.MessageMeta, raw []byte, damaged error) error {
		if size >= bodyChunkBytes {
			return errChunkFull
		}
		t := chunk[i]
		f := &fetched{t: t, meta: m, flags: m.Flags}
		if damaged != nil || m.Damaged {
			// Answered for itself only (the store logged and
			// counted it): by the tagged NO.
			f.damaged = true
			got[i] = f
			last = i
			return nil
		}
		for i, sec := range options.BodySection {
			var b []byte
			if hs != nil {
				b = hs.section(raw, i)
			} else {
				b = bodySection(raw, m.Structure, sec)
			}
			b = arena.copy(partial(b, sec.Partial))
			size += len(b)
			f.bodies = append(f.bodies, b)
		}
		for _, sec := range options.BinarySection {
			b, err := binarySection(raw, m.Structure, sec.Part)
			if err != nil {
				sectErr = err
				return err
			}
			b = arena.copy(partial(b, sec.Partial))
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
		got[i] = f
		last = i
		return nil
	}
	var err error
	if bs, ok := s.srv.opts.Store.(briefMetaStore); ok && byUID == nil {
		err = bs.BodiesBrief(ctx, s.user.id, v.mbox.id, targetUIDs(chunk), func(m *store.MessageMeta, raw []byte, damaged error) error {
			i, ok := byChunkUID[m.UID]
			if !ok {
				return nil
			}
			mc := *m
			return visit(i, &mc, raw, damaged)
		})
	} else {
		err = s.srv.opts.Store.Bodies(ctx, s.user.id, v.mbox.id, targetUIDs(chunk), func(uid store.UID, raw []byte, damaged error) error {
			i, ok := byChunkUID[uid]
			if !ok {
				return nil
			}
			return visit(i, byUID[uid], raw, damaged)
		})
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
	out := make([]fetched, 0, done)
	for _, f := range got[:done] {
		if f != nil {
			out = append(out, *f)
		}
	}
	return done, out, nil
}

// writeFetch writes one FETCH response.
func (s *session) writeFetch(w *imapserver.FetchWriter, f *fetched, options *imap.FetchOptions, withFlags bool) error {
	resp := w.CreateMessage(f.t.seq)
	s.openResp = resp
	panicking := true
	defer func() {
		// A response cut short by a write error cannot be finished: release
		// the connection's write lock and drop the connection. After a
		// panic, session.end does the same once it has logged the panic.
		if s.openResp != nil && !panicking {
			s.openResp = nil
			resp.Close()
			s.conn.Conn.Close()
		}
	}()
	err := s.writeFetchItems(resp, f, options, withFlags)
	panicking = false
	return err
}

// writeFetchItems writes the items of one FETCH response and closes it.
func (s *session) writeFetchItems(resp *imapserver.FetchResponseWriter, f *fetched, options *imap.FetchOptions, withFlags bool) error {
	resp.WriteUID(imap.UID(f.t.uid))
	s.fault("fetch-response")
	if options.Flags || withFlags {
		resp.WriteFlags(toIMAPFlags(s.view.replyFlags(f.t.uid, f.flags)))
	}
	if options.InternalDate {
		resp.WriteInternalDate(f.meta.InternalDate)
	}
	if options.RFC822Size {
		resp.WriteRFC822Size(f.meta.Size)
	}
	// A message not indexed and unreadable (meta.Damaged) has no envelope
	// or structure (it is not written: f.damaged; this is a guard).
	if !f.meta.Damaged && (options.Envelope || options.BodyStructure != nil) {
		c := s.srv.conv.get(f.meta)
		if options.Envelope {
			resp.WriteEnvelope(c.envelope)
		}
		if options.BodyStructure != nil {
			resp.WriteBodyStructure(c.bs)
		}
	}
	if f.damaged {
		s.openResp = nil
		if err := resp.Close(); err != nil {
			return fmt.Errorf("write fetch response: %w", err)
		}
		return nil
	}
	for i, sec := range options.BodySection {
		if err := writeLiteral(resp.WriteBodySection(sec, int64(len(f.bodies[i]))), f.bodies[i]); err != nil {
			return err
		}
	}
	for i, sec := range options.BinarySection {
		if err := writeLiteral(resp.WriteBinarySection(sec, int64(len(f.binaries[i]))), f.binaries[i]); err != nil {
			return err
		}
	}
	for i, sec := range options.BinarySectionSize {
		resp.WriteBinarySectionSize(sec, f.binSizes[i])
	}
	s.openResp = nil
	if err := resp.Close(); err != nil {
		return fmt.Errorf("write fetch response: %w", err)
	}
	return nil
}

// needsData reports whether options ask for anything computed from a
// message's bytes (which an unindexed damaged message lacks).
func needsData(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

func writeLiteral(wc interface {
	Write([]byte) (int, error)
	Close() error
}, b []byte) error {
	if _, err := wc.Write(b); err != nil {
		wc.Close()
		return fmt.Errorf("write fetch literal: %w", err)
	}
	if err := wc.Close(); err != nil {
		return fmt.Errorf("write fetch literal: %w", err)
	}
	return nil
}
