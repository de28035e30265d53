package imapfront

import (
	"context"
	"fmt"
	"runtime/debug"
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
	// The arenas come from the server's pool and all go back to it once
	// the loader has stopped: those free, those in pieces never written,
	// the one being written, and one the loader held when it stopped.
	free := make(chan *bodyArena, fetchArenas)
	for range fetchArenas {
		free <- s.srv.arenas.get()
	}
	var writing *bodyArena
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pieces)
		l := fetchLoader{s: s, ctx: ctx, v: v, options: options, needBody: needBody, markSeen: markSeen, pieces: pieces, free: free}
		defer func() {
			s.srv.arenas.put(l.held)
			if p := recover(); p != nil {
				s.srv.countPanic()
				s.log.Error("panic in imap session", "op", "FETCH", "panic", p, "stack", string(debug.Stack()))
				select {
				case pieces <- fetchPiece{err: errInternal}:
				case <-ctx.Done():
				}
			}
		}()
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
		for p := range pieces {
			s.srv.arenas.put(p.arena)
		}
		wg.Wait()
		s.srv.arenas.put(writing)
		for len(free) > 0 {
			s.srv.arenas.put(<-free)
		}
		s.fault("fetch-end")
	}()
	var damaged []store.UID
	for p := range pieces {
		writing = p.arena
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
		writing = nil
	}
	if len(damaged) > 0 {
		return errDamaged(damaged)
	}
	return nil
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
