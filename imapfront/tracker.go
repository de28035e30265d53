package imapfront

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// This file is popbridge's own mailbox tracker (docs/imapserver-workarounds.md, "Mailbox tracker": imapserver's
// MailboxTracker leaks unannounced sequence numbers, races and resolves "*"
// against the wrong view). One mailboxState per selected mailbox is shared by
// every session of every connection of the user; each session has a view:
// the UIDs its client knows, in sequence order, plus a FIFO of updates it has
// not been told yet. The store's change feed appends to the FIFOs under
// mailboxState.mu; the session drains its FIFO in Poll and Idle, computing
// sequence numbers against its own view, and writes to the socket only after
// releasing the lock.

// updateKind says what a pending update reports.
type updateKind uint8

const (
	updAdd          updateKind = iota + 1 // a message was added (EXISTS)
	updExpunge                            // a message was expunged (EXPUNGE)
	updFlags                              // a message's flags changed (FETCH FLAGS)
	updMailboxFlags                       // the mailbox's flag list grew (FLAGS)
)

// update is one pending notification of a view.
type update struct {
	kind   updateKind
	uid    store.UID
	flags  []string // updFlags: the message's flags; updMailboxFlags: the mailbox's
	recent bool     // updAdd: the message is recent in this view (recent.go)
}

// opOrigin tags a session's own writes (store.WithOrigin), so the feed can
// skip echoing flag changes the session already reported in its reply.
type opOrigin struct {
	view   *view
	silent bool // STORE .SILENT: the client wants no FETCH for its own change
}

// stateEntry is one message of the shared server view.
type stateEntry struct {
	uid   store.UID
	flags []string
}

// mailboxState is the shared state of one mailbox that at least one session
// has selected. Fields after mu are guarded by it. Lock order: Server.usersMu,
// then userState.mu, then mailboxState.mu; no store method is ever called,
// and the feed never waited for, with one of them held.
type mailboxState struct {
	id    store.MailboxID
	ready chan struct{} // closed once loaded (or failed: loadErr)
	refs  int           // sessions holding it; guarded by userState.mu

	loadErr error // set before ready is closed

	mu     sync.Mutex
	loaded bool
	// stale is set when the feed dropped changes (Server.resync): a view
	// added afterwards starts overflowed.
	stale       bool
	backlog     []store.Change // changes seen while loading
	uidValidity uint32
	uidNext     store.UID
	modseq      uint64
	entries     []stateEntry // ascending by uid
	keywords    map[string]string
	views       map[*view]struct{}
}

func newMailboxState(id store.MailboxID) *mailboxState {
	return &mailboxState{
		id:       id,
		ready:    make(chan struct{}),
		keywords: make(map[string]string),
		views:    make(map[*view]struct{}),
	}
}

// load fills the state from a store snapshot and replays the changes the
// feed delivered meanwhile. Caller must have registered the state (so the
// feed buffers into backlog) before calling load.
func (m *mailboxState) load(ctx context.Context, st Store, u store.UserID) error {
	snap, err := st.Snapshot(ctx, u, m.id)
	if err != nil {
		return fmt.Errorf("snapshot mailbox: %w", err)
	}
	m.install(snap)
	return nil
}

// install makes snap the state and replays the backlog changes it does not
// contain yet.
func (m *mailboxState) install(snap store.Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.uidValidity = snap.Mailbox.UIDValidity
	m.uidNext = snap.Mailbox.UIDNext
	m.modseq = snap.Mailbox.HighestModSeq
	m.entries = make([]stateEntry, len(snap.Entries))
	for i, e := range snap.Entries {
		m.entries[i] = stateEntry{uid: e.UID, flags: e.Flags}
		m.noteKeywordsLocked(e.Flags)
	}
	m.loaded = true
	backlog := m.backlog
	m.backlog = nil
	for _, c := range backlog {
		m.applyLocked(c)
	}
}

// noteKeywordsLocked records the keywords of flags and reports whether one
// was new to the mailbox.
func (m *mailboxState) noteKeywordsLocked(flags []string) bool {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		k := strings.ToLower(f)
		if _, ok := m.keywords[k]; !ok {
			m.keywords[k] = f
			added = true
		}
	}
	return added
}

// systemFlags are the flags every mailbox supports.
var systemFlags = []string{store.FlagAnswered, store.FlagDeleted, store.FlagDraft, store.FlagFlagged, store.FlagSeen}

// flagListLocked returns the FLAGS list of the mailbox: system flags and
// every keyword in use, sorted.
func (m *mailboxState) flagListLocked() []string {
	out := slices.Clone(systemFlags)
	kws := make([]string, 0, len(m.keywords))
	for _, k := range m.keywords {
		kws = append(kws, k)
	}
	sort.Strings(kws)
	return append(out, kws...)
}

func (m *mailboxState) indexLocked(uid store.UID) (int, bool) {
	return sort.Find(len(m.entries), func(i int) int {
		switch {
		case uid < m.entries[i].uid:
			return -1
		case uid > m.entries[i].uid:
			return 1
		}
		return 0
	})
}

// applyLocked applies one committed change of the store to the shared view
// and queues it to every session's view. Changes already contained in the
// state (ModSeq not above the state's) are ignored. Must be called with m.mu
// held. For a ChangeAdd it reports whether a session claimed the new
// messages as recent (recent.go).
func (m *mailboxState) applyLocked(c store.Change) (claimed bool) {
	if !m.loaded {
		m.backlog = append(m.backlog, c)
		return false
	}
	if c.ModSeq != 0 && c.ModSeq <= m.modseq {
		return false
	}
	if c.ModSeq > m.modseq {
		m.modseq = c.ModSeq
	}
	origin, _ := c.Origin.(*opOrigin)
	switch c.Kind {
	case store.ChangeAdd:
		m.announceKeywordsLocked(c.Entries)
		claimer := m.claimerLocked()
		claimed = claimer != nil
		for _, e := range c.Entries {
			i, found := m.indexLocked(e.UID)
			if found {
				continue
			}
			m.entries = slices.Insert(m.entries, i, stateEntry{uid: e.UID, flags: e.Flags})
			if e.UID >= m.uidNext {
				m.uidNext = e.UID + 1
			}
			for v := range m.views {
				v.push(update{kind: updAdd, uid: e.UID, recent: v == claimer})
			}
		}
	case store.ChangeFlags:
		newKw := m.announceKeywordsLocked(c.Entries)
		for _, e := range c.Entries {
			i, found := m.indexLocked(e.UID)
			if !found {
				continue
			}
			m.entries[i].flags = e.Flags
			for v := range m.views {
				if origin != nil && origin.view == v {
					// The session reports its own change in its reply, except
					// when a new keyword must be announced by FLAGS first:
					// then the FETCH follows the FLAGS through the queue.
					if !newKw || origin.silent {
						continue
					}
					v.ownQueued[e.UID] = struct{}{}
				}
				v.push(update{kind: updFlags, uid: e.UID, flags: e.Flags})
			}
		}
	case store.ChangeExpunge:
		gone := make(map[store.UID]bool, len(c.UIDs))
		for _, uid := range c.UIDs {
			gone[uid] = true
		}
		// One pass over the entries, so a mass expunge stays linear
		// (sessions may be waiting for the feed).
		m.entries = slices.DeleteFunc(m.entries, func(e stateEntry) bool {
			if !gone[e.uid] {
				return false
			}
			delete(gone, e.uid)
			m.broadcastLocked(update{kind: updExpunge, uid: e.uid})
			return true
		})
	default:
		return false
	}
	for v := range m.views {
		v.wake()
	}
	return claimed
}

// announceKeywordsLocked notes the keywords of entries and, when one is
// new to the mailbox, queues the new FLAGS list to every view. It reports
// whether there was a new keyword. Must be called with m.mu held.
func (m *mailboxState) announceKeywordsLocked(entries []store.Entry) bool {
	newKw := false
	for _, e := range entries {
		newKw = m.noteKeywordsLocked(e.Flags) || newKw
	}
	if newKw {
		m.broadcastLocked(update{kind: updMailboxFlags, flags: m.flagListLocked()})
	}
	return newKw
}

func (m *mailboxState) broadcastLocked(u update) {
	for v := range m.views {
		v.push(u)
	}
}

// maxPending bounds the updates queued for one session. A session that
// falls this far behind (selected, but neither polling nor idling) is
// disconnected at its next command, so its client resynchronises, instead
// of holding an ever-growing queue.
const maxPending = 100_000

// push queues u. Must be called with mbox.mu held.
func (v *view) push(u update) {
	if v.overflow {
		return
	}
	if len(v.pending) >= maxPending {
		v.overflow = true
		v.pending = nil
		return
	}
	v.pending = append(v.pending, u)
}

// view is one session's view of a selected mailbox. uids, pending and
// ownQueued are guarded by mbox.mu; uids is only changed by the owning
// session's goroutine.
type view struct {
	mbox     *mailboxState
	name     string // mailbox name at SELECT time, for hints and logs
	readOnly bool
	notify   chan struct{} // capacity 1: "pending is not empty"
	seq      uint64        // order of SELECT: the oldest claims new mail

	// recent holds the UIDs of the view that are \Recent in this
	// session; only the owning session's goroutine uses it.
	recent map[store.UID]struct{}
	// known holds the keywords (lower case) the client was told about in
	// FLAGS; hidden the UIDs whose keywords a reply left out because the
	// client was not told yet (replyFlags). Owning session only.
	known  map[string]struct{}
	hidden []store.UID

	uids      []store.UID
	pending   []update
	ownQueued map[store.UID]struct{}
	overflow  bool // the queue overflowed: the session must reconnect
}

func (v *view) wake() {
	select {
	case v.notify <- struct{}{}:
	default:
	}
}

// seqOf returns the sequence number of uid in the client view, 0 if absent.
// Must be called by the owning session (uids is only written by it).
func (v *view) seqOf(uid store.UID) uint32 {
	i, found := slices.BinarySearch(v.uids, uid)
	if !found {
		return 0
	}
	return uint32(i) + 1
}

// outKind is one response Poll writes.
type outKind uint8

const (
	outExists outKind = iota + 1
	outExpunge
	outFetchFlags
	outMailboxFlags
	outRecent
)

type out struct {
	kind  outKind
	n     uint32 // EXISTS count or sequence number
	uid   store.UID
	flags []string
}

// drain takes the pending updates off the queue, applies them to the client
// view and returns the responses to write, in order. With allowExpunge false
// it stops before the first expunge (RFC 3501 section 7.4.1), leaving it and
// everything after it queued.
func (v *view) drain(allowExpunge bool) ([]out, error) {
	m := v.mbox
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.overflow {
		return nil, errQueueOverflow
	}
	var res []out
	added := false
	flushExists := func() {
		if added {
			res = append(res, out{kind: outExists, n: uint32(len(v.uids))})
			res = append(res, out{kind: outRecent, n: uint32(len(v.recent))})
			added = false
		}
	}
	done := 0
	for _, u := range v.pending {
		if u.kind == updExpunge && !allowExpunge {
			break
		}
		done++
		switch u.kind {
		case updAdd:
			i, found := slices.BinarySearch(v.uids, u.uid)
			if !found {
				v.uids = slices.Insert(v.uids, i, u.uid)
				added = true
				if u.recent {
					if v.recent == nil {
						v.recent = make(map[store.UID]struct{})
					}
					v.recent[u.uid] = struct{}{}
				}
			}
		case updExpunge:
			i, found := slices.BinarySearch(v.uids, u.uid)
			if !found {
				continue
			}
			flushExists()
			v.uids = slices.Delete(v.uids, i, i+1)
			delete(v.recent, u.uid)
			res = append(res, out{kind: outExpunge, n: uint32(i) + 1})
		case updFlags:
			delete(v.ownQueued, u.uid)
			i, found := slices.BinarySearch(v.uids, u.uid)
			if !found {
				continue
			}
			flushExists()
			res = append(res, out{kind: outFetchFlags, n: uint32(i) + 1, uid: u.uid, flags: v.withRecent(u.uid, u.flags)})
		case updMailboxFlags:
			flushExists()
			v.learnKeywords(u.flags)
			res = append(res, out{kind: outMailboxFlags, flags: u.flags})
		}
	}
	flushExists()
	v.pending = slices.Delete(v.pending, 0, done)
	if len(v.pending) == 0 && cap(v.pending) > 1024 {
		v.pending = nil
	}
	return res, nil
}

// errQueueOverflow ends a session whose update queue overflowed.
var errQueueOverflow = errors.New("imapfront: session fell too far behind its mailbox's updates")

// writeOut writes the responses drain returned. No lock is held.
func writeOut(w *imapserver.UpdateWriter, res []out, err error) error {
	if err != nil {
		return err
	}
	for _, o := range res {
		var err error
		switch o.kind {
		case outExists:
			err = w.WriteNumMessages(o.n)
		case outExpunge:
			err = w.WriteExpunge(o.n)
		case outFetchFlags:
			err = w.WriteMessageFlags(o.n, imap.UID(o.uid), toIMAPFlags(o.flags))
		case outMailboxFlags:
			err = w.WriteMailboxFlags(toIMAPFlags(o.flags))
		case outRecent:
			err = w.WriteNumRecent(o.n) // imapserver drops it for IMAP4rev2
		}
		if err != nil {
			return fmt.Errorf("write update: %w", err)
		}
	}
	return nil
}

// toIMAPFlags converts store flags to imap flags.
func toIMAPFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
