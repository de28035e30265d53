package poller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// ---- fake clock ----

// fakeClock is a manual clock: timers fire when Advance passes their
// deadline. created is signalled whenever a timer is made, so tests can
// wait for a worker to go to sleep instead of sleeping themselves.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	made    int
	created chan struct{}
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	fired bool
	stop  bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), created: make(chan struct{}, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) timer {
	c.mu.Lock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired = true
		t.ch <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	c.made++
	c.mu.Unlock()
	select {
	case c.created <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.fired && !t.stop
	t.stop = true
	return was
}

// Advance moves the clock and fires due timers.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stop:
		case !t.at.After(c.now):
			t.fired = true
			t.ch <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// pending returns the deadlines of the active timers.
func (c *fakeClock) pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.timers {
		if !t.stop && !t.fired {
			out = append(out, t.at)
		}
	}
	return out
}

// madeCount returns how many timers were made so far.
func (c *fakeClock) madeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made
}

// waitTimer waits until more than after timers have been made and exactly
// one is active, and returns its deadline: the worker has gone to sleep
// again.
func (c *fakeClock) waitTimer(t *testing.T, after int) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if p := c.pending(); len(p) == 1 && c.madeCount() > after {
			return p[0]
		}
		select {
		case <-c.created:
		case <-deadline:
			t.Fatalf("timed out waiting for the worker to sleep; timers: %v", c.pending())
		}
	}
}

// ---- fake POP3 server and session ----

type fakeMsg struct {
	uidl    string
	raw     []byte
	sizeLie int64
}

// fakeServer is an in-memory maildrop with failure switches. Each dial
// opens a session over a snapshot, as a POP3 server locks the maildrop.
type fakeServer struct {
	mu       sync.Mutex
	msgs     []*fakeMsg
	noUIDL   bool
	caps     capabilities
	dialErr  error
	shuffle  bool   // reorder message numbers at every dial
	failQuit int    // next N QUITs fail without applying DELEs
	lostQuit int    // next N QUITs apply DELEs but report failure
	cutAfter int    // if > 0, the connection drops after N messages retrieved (once)
	failDele int    // next N Delete calls fail (connection cut)
	poison   string // RETR of this UIDL always breaks the connection
	// retrBlock, if set, is received from before each RETR (tests hold
	// retrieval mid-way).
	retrBlock chan struct{}
	// beforeDele is called with the UIDLs about to be deleted.
	beforeDele func(uidls []string)

	dials, lists, tops, retrs, deles, quits, aborts int
}

func (s *fakeServer) add(uidl, raw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, &fakeMsg{uidl: uidl, raw: []byte(raw)})
}

func (s *fakeServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func (s *fakeServer) stat(f *int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *f
}

func (s *fakeServer) dial(ctx context.Context, a Account) (popSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dials++
	if s.dialErr != nil {
		return nil, s.dialErr
	}
	if s.shuffle {
		rand.Shuffle(len(s.msgs), func(i, j int) { s.msgs[i], s.msgs[j] = s.msgs[j], s.msgs[i] })
	}
	return &fakeSession{srv: s, snap: slices.Clone(s.msgs), del: map[int]bool{}}, nil
}

type fakeSession struct {
	srv  *fakeServer
	snap []*fakeMsg
	del  map[int]bool
	done bool
}

func (f *fakeSession) Caps() capabilities {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	return f.srv.caps
}

func (f *fakeSession) List(ctx context.Context) ([]listItem, error) {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	f.srv.lists++
	out := make([]listItem, len(f.snap))
	for i, m := range f.snap {
		out[i] = listItem{Num: i + 1, Size: int64(len(m.raw)) + m.sizeLie}
		if !f.srv.noUIDL {
			out[i].UIDL = m.uidl
		}
	}
	return out, nil
}

func headerOf(raw []byte) []byte {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+4]
	}
	return raw
}

func (f *fakeSession) HeaderDigests(ctx context.Context, nums []int) (map[int]string, error) {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	out := map[int]string{}
	for _, n := range nums {
		f.srv.tops++
		sum := sha256.Sum256(headerOf(f.snap[n-1].raw))
		out[n] = hex.EncodeToString(sum[:])
	}
	return out, nil
}

var errCut = errors.New("fake: connection reset")

func (f *fakeSession) Retrieve(ctx context.Context, items []listItem, maxSize int64, fn func(it listItem, raw []byte) error) error {
	for _, it := range items {
		f.srv.mu.Lock()
		block := f.srv.retrBlock
		f.srv.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil && block == nil {
			return err
		}
		f.srv.mu.Lock()
		if f.srv.cutAfter > 0 && f.srv.retrs >= f.srv.cutAfter {
			f.srv.cutAfter = 0
			f.srv.mu.Unlock()
			return errCut
		}
		if f.srv.poison != "" && f.snap[it.Num-1].uidl == f.srv.poison {
			f.srv.mu.Unlock()
			return errCut
		}
		f.srv.retrs++
		raw := slices.Clone(f.snap[it.Num-1].raw)
		f.srv.mu.Unlock()
		if err := fn(it, raw); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSession) Delete(ctx context.Context, nums []int) error {
	f.srv.mu.Lock()
	hook := f.srv.beforeDele
	var uidls []string
	for _, n := range nums {
		uidls = append(uidls, f.snap[n-1].uidl)
	}
	f.srv.mu.Unlock()
	if hook != nil {
		hook(uidls)
	}
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	if f.srv.failDele > 0 {
		f.srv.failDele--
		return errCut
	}
	for _, n := range nums {
		f.srv.deles++
		f.del[n] = true
	}
	return nil
}

func (f *fakeSession) Quit(ctx context.Context) error {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	f.srv.quits++
	f.done = true
	if f.srv.failQuit > 0 {
		f.srv.failQuit--
		return &AccountError{Op: "quit", Reply: "-ERR can't update maildrop", Temporary: true, Err: errors.New("quit failed")}
	}
	f.apply()
	if f.srv.lostQuit > 0 {
		f.srv.lostQuit--
		return errCut
	}
	return nil
}

// apply removes the deleted messages from the maildrop.
func (f *fakeSession) apply() {
	gone := map[*fakeMsg]bool{}
	for n := range f.del {
		gone[f.snap[n-1]] = true
	}
	f.srv.msgs = slices.DeleteFunc(f.srv.msgs, func(m *fakeMsg) bool { return gone[m] })
}

func (f *fakeSession) Abort() {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	if !f.done {
		f.srv.aborts++
	}
	f.done = true
}

// ---- fake sink ----

type storedMsg struct {
	account, uidl, digest, user, folder string
	raw                                 []byte
}

// fakeSink mirrors the store's ledger semantics in memory. A staged batch's
// Commit refuses a (account, uidl, digest) already in the ledger, as the
// store's UNIQUE constraint does, so a duplicate delivery fails the test
// loudly. deliverErr fails every Commit.
type fakeSink struct {
	mu         sync.Mutex
	now        func() time.Time
	rows       []store.LedgerEntry
	msgs       []storedMsg
	batches    []int
	deliverErr error
	ledgerRead int
	prunes     int // PruneLedger calls
	statuses   map[string]store.AccountStatus
	writes     int
}

func newFakeSink(now func() time.Time) *fakeSink {
	return &fakeSink{now: now, statuses: map[string]store.AccountStatus{}}
}

func (s *fakeSink) find(account, uidl, digest string) int {
	for i, r := range s.rows {
		if r.Account == account && r.UIDL == uidl && r.Digest == digest {
			return i
		}
	}
	return -1
}

// fakeStaged is a fakeSink batch: Commit delivers it.
type fakeStaged struct {
	s    *fakeSink
	ds   []store.Delivery
	done bool
}

func (f *fakeStaged) Commit(ctx context.Context) ([]store.Delivered, error) {
	if f.done {
		return nil, store.ErrStagedDone
	}
	f.done = true
	return f.s.deliver(f.ds)
}

func (f *fakeStaged) Release() { f.done = true }

func (s *fakeSink) Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error) {
	return &fakeStaged{s: s, ds: ds}, nil
}

func (s *fakeSink) deliver(ds []store.Delivery) ([]store.Delivered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliverErr != nil {
		return nil, s.deliverErr
	}
	for i, d := range ds {
		if s.find(d.Account, d.UIDL, d.Digest) >= 0 {
			return nil, fmt.Errorf("fake store: UNIQUE constraint: %s %s", d.UIDL, d.Digest)
		}
		for _, e := range ds[:i] {
			if e.Account == d.Account && e.UIDL == d.UIDL && e.Digest == d.Digest {
				return nil, fmt.Errorf("fake store: UNIQUE constraint in batch: %s", d.UIDL)
			}
		}
	}
	s.writes++
	s.batches = append(s.batches, len(ds))
	out := make([]store.Delivered, len(ds))
	now := s.now()
	for i, d := range ds {
		s.msgs = append(s.msgs, storedMsg{d.Account, d.UIDL, d.Digest, d.User, d.Folder, slices.Clone(d.Raw)})
		s.rows = append(s.rows, store.LedgerEntry{Account: d.Account, UIDL: d.UIDL, Digest: d.Digest,
			Size: int64(len(d.Raw)), StoredAt: now, Message: store.MessageID(len(s.msgs)), LastSeen: now})
		out[i] = store.Delivered{Mailbox: 1, UID: store.UID(len(s.msgs)), Message: store.MessageID(len(s.msgs))}
	}
	return out, nil
}

// LedgerKeys returns the account's rows in recording order (the store
// sorts them by UIDL; makePlan must not depend on the order).
func (s *fakeSink) LedgerKeys(ctx context.Context, account string, q store.LedgerKeyQuery) ([]store.LedgerKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ledgerRead++
	var out []store.LedgerKey
	for _, r := range s.rows {
		if r.Account == account {
			out = append(out, keyOf(r, q))
		}
	}
	return out, nil
}

// keyOf reduces a ledger row to its key the way the store does.
func keyOf(e store.LedgerEntry, q store.LedgerKeyQuery) store.LedgerKey {
	return store.LedgerKey{
		UIDL: e.UIDL, Digest: e.Digest, Size: e.Size, StoredAt: e.StoredAt, Skipped: e.Skipped,
		Expunged: e.Expunged, DeletePending: e.DeletePending, Deleted: !e.DeletedAt.IsZero(),
		Stale:    e.LastSeen.IsZero() || (!q.SeenBefore.IsZero() && !e.LastSeen.After(q.SeenBefore)),
		Prunable: !q.PruneBefore.IsZero() && prunableRow(e, q.PruneBefore),
	}
}

// prunableRow is the store's PruneLedger condition.
func prunableRow(e store.LedgerEntry, before time.Time) bool {
	seen := e.LastSeen
	if seen.IsZero() {
		seen = e.StoredAt
	}
	return !e.DeletePending && seen.Before(before) && (e.DeletedAt.IsZero() || e.DeletedAt.Before(before))
}

func (s *fakeSink) RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(account, uidl, digest) >= 0 {
		return fmt.Errorf("fake store: UNIQUE constraint (skipped): %s", uidl)
	}
	s.writes++
	now := s.now()
	s.rows = append(s.rows, store.LedgerEntry{Account: account, UIDL: uidl, Digest: digest, Size: size,
		StoredAt: now, Skipped: reason, Expunged: true, LastSeen: now})
	return nil
}

func (s *fakeSink) update(account string, uidls []string, fn func(*store.LedgerEntry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	set := map[string]bool{}
	for _, u := range uidls {
		set[u] = true
	}
	for i := range s.rows {
		if s.rows[i].Account == account && set[s.rows[i].UIDL] {
			fn(&s.rows[i])
		}
	}
}

func (s *fakeSink) MarkDeletePending(ctx context.Context, account string, uidls []string) error {
	s.update(account, uidls, func(e *store.LedgerEntry) { e.DeletePending = true })
	return nil
}

func (s *fakeSink) MarkDeleted(ctx context.Context, account string, uidls []string) error {
	now := s.now()
	s.update(account, uidls, func(e *store.LedgerEntry) { e.DeletePending = false; e.DeletedAt = now })
	return nil
}

func (s *fakeSink) updateRefs(account string, refs []store.LedgerRef, fn func(*store.LedgerEntry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	for _, r := range refs {
		if i := s.find(account, r.UIDL, r.Digest); i >= 0 {
			fn(&s.rows[i])
		}
	}
}

func (s *fakeSink) MarkGone(ctx context.Context, account string, refs []store.LedgerRef) error {
	s.updateRefs(account, refs, func(e *store.LedgerEntry) {
		e.DeletePending = false
		if e.DeletedAt.IsZero() {
			e.DeletedAt = e.LastSeen
			if e.DeletedAt.IsZero() {
				e.DeletedAt = e.StoredAt
			}
		}
	})
	return nil
}

func (s *fakeSink) MarkListed(ctx context.Context, account string, refs []store.LedgerRef, at time.Time) error {
	s.updateRefs(account, refs, func(e *store.LedgerEntry) {
		e.DeletedAt = time.Time{}
		e.LastSeen = at
	})
	return nil
}

func (s *fakeSink) ClearDeletePending(ctx context.Context, account string, uidls []string) error {
	s.update(account, uidls, func(e *store.LedgerEntry) { e.DeletePending = false })
	return nil
}

func (s *fakeSink) TouchLedger(ctx context.Context, account string, uidls []string, at time.Time) error {
	s.update(account, uidls, func(e *store.LedgerEntry) { e.LastSeen = at })
	return nil
}

func (s *fakeSink) PruneLedger(ctx context.Context, account string, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.rows)
	s.writes++
	s.prunes++
	s.rows = slices.DeleteFunc(s.rows, func(e store.LedgerEntry) bool {
		return e.Account == account && prunableRow(e, before)
	})
	return n - len(s.rows), nil
}

func (s *fakeSink) SetAccountStatuses(ctx context.Context, sts []store.AccountStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range sts {
		s.statuses[st.Account] = st
	}
	return nil
}

func (s *fakeSink) AccountStatuses(ctx context.Context) ([]store.AccountStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.AccountStatus
	for _, st := range s.statuses {
		out = append(out, st)
	}
	return out, nil
}

// expunge marks the local copy of uidl expunged.
func (s *fakeSink) expunge(account, uidl string) {
	s.update(account, []string{uidl}, func(e *store.LedgerEntry) { e.Expunged = true; e.Message = 0 })
}

// stored returns how many messages are stored for account and whether any
// content digest is stored twice.
func (s *fakeSink) stored(account string) (n int, dup string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range s.msgs {
		if m.account != account {
			continue
		}
		n++
		if seen[m.digest] {
			dup = m.uidl
		}
		seen[m.digest] = true
	}
	return n, dup
}

func (s *fakeSink) row(account, uidl string) (store.LedgerEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		if r.Account == account && r.UIDL == uidl {
			return r, true
		}
	}
	return store.LedgerEntry{}, false
}

// ---- harness ----

type harness struct {
	t     *testing.T
	clock *fakeClock
	srv   *fakeServer
	sink  *fakeSink
	p     *Poller
	acct  Account
}

func testMessage(i int) string {
	return fmt.Sprintf("Received: from x by y; Mon, 5 Jan 2026 10:%02d:00 +0000\r\nMessage-ID: <m%d@test>\r\nSubject: message %d\r\n\r\nbody of message %d\r\n", i%60, i, i, i)
}

func newHarness(t *testing.T, mod func(*Account)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), srv: &fakeServer{}}
	h.sink = newFakeSink(h.clock.Now)
	h.acct = Account{Name: "work", User: "alice", Folder: "INBOX", LeaveOnServer: true, PollInterval: 5 * time.Minute}
	if mod != nil {
		mod(&h.acct)
	}
	h.p = New(Options{Sink: h.sink, Accounts: []Account{h.acct}, Now: h.clock.Now})
	h.p.connect = h.srv.dial
	h.p.dial = h.p.limited(h.srv.dial)
	h.p.timer = h.clock.NewTimer
	h.p.rand = func() float64 { return 0.5 }
	return h
}

func (h *harness) fill(n int) {
	for i := 1; i <= n; i++ {
		h.srv.add(fmt.Sprintf("uid-%d", i), testMessage(i))
	}
}

func (h *harness) poll() (Result, error) {
	h.t.Helper()
	return h.p.PollOnce(context.Background(), h.acct.Name, nil)
}

func (h *harness) mustPoll() Result {
	h.t.Helper()
	r, err := h.poll()
	if err != nil {
		h.t.Fatalf("poll: %v", err)
	}
	return r
}

// checkStored fails unless exactly want messages are stored without
// duplicate content.
func (h *harness) checkStored(want int) {
	h.t.Helper()
	n, dup := h.sink.stored(h.acct.Name)
	if dup != "" {
		h.t.Errorf("content of %s stored twice", dup)
	}
	if n != want {
		h.t.Errorf("stored %d messages, want %d", n, want)
	}
}

// testCapsLoginDelay returns capabilities announcing LOGIN-DELAY d.
func testCapsLoginDelay(d time.Duration) capabilities {
	return capabilities{UIDL: true, LoginDelay: d, HasLoginDelay: true}
}
