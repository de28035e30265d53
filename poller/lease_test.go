package poller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// ---- fake lease database ----

// fakeLeaseDB keeps leases as pgstore does (same acquire, renew and
// release rules), judged by the test's clock. Several nodes share one.
type fakeLeaseDB struct {
	mu       sync.Mutex
	now      func() time.Time
	rows     map[string]*store.Lease
	err      error // every call fails with it
	renewals int   // RenewLeases calls that succeeded
	acquires int   // AcquireLease calls
	looks    int   // LookLeases calls that succeeded
	looked   int   // names they asked for
}

func newFakeLeaseDB(now func() time.Time) *fakeLeaseDB {
	return &fakeLeaseDB{now: now, rows: map[string]*store.Lease{}}
}

// node returns node's view of the database: its Leaser.
func (db *fakeLeaseDB) node(node string) *fakeLeaser { return &fakeLeaser{db: db, node: node} }

func (db *fakeLeaseDB) setErr(err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.err = err
}

// lease returns a copy of the lease row name.
func (db *fakeLeaseDB) lease(name string) store.Lease {
	db.mu.Lock()
	defer db.mu.Unlock()
	if l := db.rows[name]; l != nil {
		return *l
	}
	return store.Lease{}
}

func (db *fakeLeaseDB) renewCount() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.renewals
}

// takeOver gives lease name to node as if its holder had let it lapse.
func (db *fakeLeaseDB) takeOver(name, node string, ttl time.Duration) {
	db.mu.Lock()
	defer db.mu.Unlock()
	l := db.rows[name]
	l.Holder, l.Token, l.Expires = node, l.Token+1, db.now().Add(ttl)
}

type fakeLeaser struct {
	db   *fakeLeaseDB
	node string
}

func (f *fakeLeaser) AcquireLease(ctx context.Context, name string, ttl time.Duration) (store.Lease, bool, error) {
	db := f.db
	db.mu.Lock()
	defer db.mu.Unlock()
	db.acquires++
	if db.err != nil {
		return store.Lease{}, false, db.err
	}
	now := db.now()
	l := db.rows[name]
	switch {
	case l == nil:
		l = &store.Lease{Name: name, Holder: f.node, Token: 1}
		db.rows[name] = l
	case l.Holder == f.node:
	case l.Expires.After(now):
		out := *l
		out.Left = l.Expires.Sub(now)
		return out, false, nil
	default:
		l.Holder = f.node
		l.Token++
	}
	l.Expires = now.Add(ttl)
	out := *l
	out.Left = ttl
	return out, true, nil
}

func (f *fakeLeaser) RenewLeases(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]store.Lease, error) {
	db := f.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.err != nil {
		return nil, db.err
	}
	db.renewals++
	now := db.now()
	var out []store.Lease
	for _, want := range ls {
		l := db.rows[want.Name]
		if l == nil || l.Holder != f.node || l.Token != want.Token || !l.Expires.After(now) {
			continue
		}
		l.Expires = now.Add(ttl)
		r := *l
		r.Left = ttl
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeLeaser) ReleaseLeases(ctx context.Context, ls []store.Lease) error {
	db := f.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.err != nil {
		return db.err
	}
	for _, want := range ls {
		if l := db.rows[want.Name]; l != nil && l.Holder == f.node && l.Token == want.Token {
			l.Holder, l.Expires = "", db.now().Add(-time.Microsecond)
		}
	}
	return nil
}

func (f *fakeLeaser) LookLeases(ctx context.Context, names []string) ([]store.Lease, error) {
	db := f.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.err != nil {
		return nil, db.err
	}
	db.looks++
	db.looked += len(names)
	now := db.now()
	out := make([]store.Lease, len(names))
	for i, name := range names {
		out[i].Name = name
		if l := db.rows[name]; l != nil {
			out[i] = *l
			out[i].Left = max(l.Expires.Sub(now), 0)
		}
	}
	return out, nil
}

var _ Leaser = (*fakeLeaser)(nil)

// ---- helpers ----

// waitFor waits until cond holds: the worker and the keeper run on their
// own goroutines, driven by the fake clock.
func waitFor(t *testing.T, h *harness, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-h.clock.created:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// withLeases gives h's poller a lease keeper on db as node.
func withLeases(h *harness, db *fakeLeaseDB, node string, ttl time.Duration) {
	h.p.leases = newLeaseKeeper(h.p, db.node(node), ttl)
}

func (h *harness) status() Status { return h.p.Status()[0] }

// renewals returns how many renewals the keeper has finished.
func (h *harness) renewals() int {
	h.p.leases.mu.Lock()
	defer h.p.leases.mu.Unlock()
	return h.p.leases.renewed
}

// looks returns how many looks the keeper has finished (their outcome
// applied).
func (h *harness) looks() int {
	h.p.leases.mu.Lock()
	defer h.p.leases.mu.Unlock()
	return h.p.leases.looks
}

func (h *harness) watchedCount() int {
	h.p.leases.mu.Lock()
	defer h.p.leases.mu.Unlock()
	return len(h.p.leases.watched)
}

func (h *harness) heldCount() int {
	h.p.leases.mu.Lock()
	defer h.p.leases.mu.Unlock()
	return len(h.p.leases.held)
}

// ---- tests ----

// TestLeaseHeldElsewhereThenTakeover: a node does not poll an account whose
// lease another node holds; its worker waits without a timer of its own
// while the keeper looks at the lease (no acquire) when it could lapse; it
// takes the account over once the holder stops renewing (within two lease
// periods of its last renewal), keeps the lease renewed, and releases it
// when it stops.
func TestLeaseHeldElsewhereThenTakeover(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	h.fill(3)
	db := newFakeLeaseDB(h.clock.Now)
	name := LeaseName(h.acct.Name)
	if _, ok, _ := db.node("b").AcquireLease(context.Background(), name, ttl); !ok {
		t.Fatal("b could not take the lease")
	}
	acquires := func() int { db.mu.Lock(); defer db.mu.Unlock(); return db.acquires - 1 } // less b's
	// The keeper's looks, counted once their outcome is applied.
	looks := h.looks
	withLeases(h, db, "a", ttl)
	stop := runPoller(t, h)

	at := h.clock.waitTimer(t, 0)
	at = step(t, h, at) // first poll time: the lease is b's; the one timer left is the keeper's look
	if got := h.srv.stat(&h.srv.dials); got != 0 {
		t.Fatalf("polled %d times while node b holds the lease", got)
	}
	// The worker waits with no poll time of its own (it may set that a
	// moment after the keeper's timer is made).
	waitFor(t, h, "the worker to wait without a poll time", func() bool { return h.status().NextPoll.IsZero() })
	st := h.status()
	if st.LeaseHolder != "b" || st.LeaseHeld || st.State() != "polled by node b" {
		t.Errorf("status while b holds the lease: holder %q held %v state %q", st.LeaseHolder, st.LeaseHeld, st.State())
	}
	// b's lease has 25 s left: the keeper looks after half a lease
	// period (its cap), plus a little.
	if got, want := at.Sub(h.clock.Now()), ttl/2+ttl/40; got != want {
		t.Errorf("look in %v, want %v", got, want)
	}

	// b renews every ttl/3 (it is alive) for two minutes: the keeper
	// looks at the lease about twice a lease period and never tries to
	// acquire it.
	var lastRenewal time.Time
	renewB := func() {
		lastRenewal = h.clock.Now()
		if got, err := db.node("b").RenewLeases(context.Background(), []store.Lease{db.lease(name)}, ttl); err != nil || len(got) != 1 {
			t.Fatalf("b's renewal: %v %v", got, err)
		}
	}
	for end := h.clock.Now().Add(2 * time.Minute); h.clock.Now().Before(end); {
		nextRenewal := lastRenewal.Add(ttl / 3)
		if lastRenewal.IsZero() || !at.Before(nextRenewal) {
			h.clock.Advance(max(nextRenewal.Sub(h.clock.Now()), 0))
			renewB()
			continue
		}
		made := looks()
		at = step(t, h, at)
		waitFor(t, h, "the look", func() bool { return looks() > made })
	}
	if got := acquires(); got != 1 {
		t.Errorf("%d acquires while b renews, want 1 (the first poll's)", got)
	}
	if got := looks(); got < 6 || got > 9 {
		t.Errorf("%d looks in two minutes, want 6 to 9 (one per half lease period)", got)
	}
	if got := h.srv.stat(&h.srv.dials); got != 0 {
		t.Fatalf("polled while b renews its lease")
	}

	// b dies: no more renewals. a takes over at the first look after the
	// lease lapsed and polls at once.
	for {
		before := looks()
		h.clock.Advance(at.Sub(h.clock.Now()))
		waitFor(t, h, "the look", func() bool { return looks() > before })
		if h.watchedCount() == 0 {
			break // found free: the worker takes it
		}
		if h.clock.Now().Sub(lastRenewal) > 2*ttl {
			t.Fatalf("lease still watched %v after b's last renewal", h.clock.Now().Sub(lastRenewal))
		}
		prev := at
		waitFor(t, h, "the next look's timer", func() bool { p := h.clock.pending(); return len(p) == 1 && p[0].After(prev) })
		at = h.clock.pending()[0]
	}
	waitFor(t, h, "the takeover poll", func() bool { n, _ := h.sink.stored(h.acct.Name); return n == 3 })
	if took := h.clock.Now().Sub(lastRenewal); took > 2*ttl {
		t.Errorf("takeover %v after b's last renewal, more than two lease periods", took)
	}
	if l := db.lease(name); l.Holder != "a" || l.Token != 2 {
		t.Errorf("lease after takeover: %+v", l)
	}
	waitFor(t, h, "the status to show the lease held", func() bool { st := h.status(); return st.LeaseHeld && st.LeaseHolder == "a" })

	// The keeper renews the lease (one call for all) every ttl/3: a
	// keeps it for longer than its ttl.
	// (Two timers: the worker's next poll and the keeper's renewal.)
	waitFor(t, h, "the keeper's timer", func() bool { return len(h.clock.pending()) == 2 })
	base := db.renewCount() // b's renewal counts too
	for i := 1; i <= 4; i++ {
		h.clock.Advance(ttl / 3)
		waitFor(t, h, "a renewal", func() bool { return h.renewals() == i && len(h.clock.pending()) == 2 })
	}
	if got := db.renewCount() - base; got != 4 {
		t.Errorf("%d renewal calls for 4 periods, want 4", got)
	}
	if l := db.lease(name); l.Holder != "a" || !l.Expires.After(h.clock.Now().Add(ttl/2)) {
		t.Errorf("lease not kept renewed: %+v at %v", l, h.clock.Now())
	}
	if got := h.srv.stat(&h.srv.dials); got != 1 {
		t.Errorf("dials = %d, want 1 (next poll after the interval)", got)
	}

	// A clean stop releases the lease: b may take it at once.
	stop()
	if l := db.lease(name); l.Holder != "" {
		t.Errorf("lease after a's clean stop: %+v, want released", l)
	}
	if _, ok, err := db.node("b").AcquireLease(context.Background(), name, ttl); !ok || err != nil {
		t.Errorf("b cannot take the released lease: %v %v", ok, err)
	}
}

// TestLeaseLostMidPass: when the keeper finds the lease lost while a pass
// retrieves, the pass stops: nothing retrieved afterwards is committed,
// nothing is deleted upstream, the pass is not a failure, and the worker
// goes back to waiting for the lease.
func TestLeaseLostMidPass(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(6)
	block := make(chan struct{})
	h.srv.retrBlock = block
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	runPoller(t, h)

	at := h.clock.waitTimer(t, 0)
	h.clock.Advance(at.Sub(h.clock.Now()))
	for range 3 {
		block <- struct{}{} // let one RETR through
	}
	waitFor(t, h, "three messages committed", func() bool { n, _ := h.sink.stored(h.acct.Name); return n == 3 })
	waitFor(t, h, "the keeper's renewal timer", func() bool { return len(h.clock.pending()) == 1 })

	// Node b takes the lease over (a's renewals lapsed, say, on a slow
	// network); a's next renewal finds it lost.
	db.takeOver(LeaseName(h.acct.Name), "b", ttl)
	h.clock.Advance(ttl / 3)
	waitFor(t, h, "the lease given up", func() bool { return h.heldCount() == 0 })
	close(block) // the rest of the maildrop comes in, too late

	waitFor(t, h, "the worker back to waiting for the lease", func() bool {
		st := h.status()
		return st.LeaseHolder == "b" && !st.LeaseHeld && !st.Polling
	})
	if n, dup := h.sink.stored(h.acct.Name); n != 3 || dup != "" {
		t.Errorf("stored %d (duplicate %q) after the loss, want the 3 committed before it", n, dup)
	}
	if got := h.srv.stat(&h.srv.deles); got != 0 {
		t.Errorf("%d DELEs after the lease was lost", got)
	}
	if got := h.srv.count(); got != 6 {
		t.Errorf("%d messages left upstream, want all 6", got)
	}
	if st := h.status(); st.LastError != "" {
		t.Errorf("a lost lease recorded as a failed poll: %q", st.LastError)
	}
}

// TestLeaseRenewalFailureGivesUpBeforeLapse: while renewals fail (the
// database is unreachable), the keeper gives a lease up when the next
// renewal would come after its deadline, before it can lapse and another
// node take it, so two nodes never poll at once.
func TestLeaseRenewalFailureGivesUpBeforeLapse(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	k := h.p.leases
	start := h.clock.Now()
	lease, release, _, err := k.hold(context.Background(), h.acct.Name)
	if err != nil || lease == nil {
		t.Fatalf("hold: %v %v", lease, err)
	}
	defer release()
	waitFor(t, h, "the renewal timer", func() bool { return len(h.clock.pending()) == 1 })
	db.setErr(fmt.Errorf("postgres at db:5432: %w", store.ErrUnavailable))
	h.clock.Advance(ttl / 3)
	waitFor(t, h, "the failed renewal", func() bool { return h.renewals() == 1 && len(h.clock.pending()) == 1 })
	if lease.ctx.Err() != nil {
		t.Fatalf("lease given up after one failed renewal, %v before its deadline", ttl-ttl/3)
	}
	h.clock.Advance(ttl / 3)
	waitFor(t, h, "the lease given up", func() bool { return lease.ctx.Err() != nil })
	if !errors.Is(context.Cause(lease.ctx), errLeaseLost) {
		t.Errorf("cause %v, want errLeaseLost", context.Cause(lease.ctx))
	}
	if lapse := start.Add(ttl); !h.clock.Now().Before(lapse) {
		t.Errorf("lease given up at %v, not before it lapses at %v", h.clock.Now(), lapse)
	}
}

// TestPollOnceUnderLease: PollOnce polls under the account's lease and
// gives it back after; it refuses when another node holds it.
func TestPollOnceUnderLease(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	h.fill(2)
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	name := LeaseName(h.acct.Name)
	h.mustPoll()
	h.checkStored(2)
	h.p.leases.wait()
	if l := db.lease(name); l.Holder != "" || l.Token != 1 {
		t.Errorf("lease after PollOnce: %+v, want released", l)
	}
	if _, ok, _ := db.node("b").AcquireLease(context.Background(), name, ttl); !ok {
		t.Fatal("b could not take the lease")
	}
	dials := h.srv.stat(&h.srv.dials)
	if _, err := h.poll(); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("PollOnce with b holding the lease: err = %v, want ErrLeaseHeld", err)
	}
	if got := h.srv.stat(&h.srv.dials); got != dials {
		t.Errorf("PollOnce dialled while b holds the lease")
	}
}

// TestStoreUnavailablePausesPolls: a pass whose store cannot be reached
// stops without DELE and is retried soon (short capped backoff), without
// counting as a failed poll of the account; once the store is back the
// mail is stored and deleted, nothing lost.
func TestStoreUnavailablePausesPolls(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(2)
	down := fmt.Errorf("postgres at db:5432: %w: connection refused", store.ErrUnavailable)
	h.sink.mu.Lock()
	h.sink.deliverErr = down
	h.sink.mu.Unlock()
	runPoller(t, h)
	at := h.clock.waitTimer(t, 0)
	for n, want := range []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		at = step(t, h, at)
		if got := at.Sub(h.clock.Now()); got != want {
			t.Errorf("try %d: retry in %v, want %v", n+1, got, want)
		}
	}
	st := h.status()
	if !st.StoreUnavailable || st.State() != StateStoreUnavailable || st.LastError != "" || st.Polling {
		t.Errorf("status while the store is down: %+v (state %q)", st, st.State())
	}
	if got := h.srv.stat(&h.srv.deles); got != 0 || h.srv.count() != 2 {
		t.Errorf("%d DELEs, %d left upstream while the store is down", got, h.srv.count())
	}
	if got := storeBackoff(20, 0.999); got > storeBackoffMax {
		t.Errorf("store backoff %v over its cap", got)
	}

	h.sink.mu.Lock()
	h.sink.deliverErr = nil
	h.sink.mu.Unlock()
	at = step(t, h, at)
	h.checkStored(2)
	if got := h.srv.count(); got != 0 {
		t.Errorf("%d left upstream after the store came back", got)
	}
	if got := at.Sub(h.clock.Now()); got != 5*time.Minute {
		t.Errorf("next poll in %v after recovery, want the interval (no failure counted)", got)
	}
	if st := h.status(); st.StoreUnavailable || st.State() != "idle" {
		t.Errorf("status after recovery: %+v", st)
	}
}

// blockingLeaser is a Leaser whose renewals hang until unblocked, as over
// a network that dropped the database's packets.
type blockingLeaser struct {
	*fakeLeaser
	block chan struct{}
}

func (b *blockingLeaser) RenewLeases(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]store.Lease, error) {
	<-b.block
	return b.fakeLeaser.RenewLeases(ctx, ls, ttl)
}

// TestLeaseRenewalHangGivesUpBeforeLapse: a renewal that never answers
// does not keep the keeper from giving the lease up before it lapses.
func TestLeaseRenewalHangGivesUpBeforeLapse(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	db := newFakeLeaseDB(h.clock.Now)
	bl := &blockingLeaser{fakeLeaser: db.node("a"), block: make(chan struct{})}
	h.p.leases = newLeaseKeeper(h.p, bl, ttl)
	start := h.clock.Now()
	lease, release, _, err := h.p.leases.hold(context.Background(), h.acct.Name)
	if err != nil || lease == nil {
		t.Fatalf("hold: %v %v", lease, err)
	}
	defer release()
	waitFor(t, h, "the renewal timer", func() bool { return len(h.clock.pending()) == 1 })
	h.clock.Advance(ttl / 3) // the renewal starts, and hangs
	waitFor(t, h, "the next timer", func() bool { return h.clock.madeCount() == 2 && len(h.clock.pending()) == 1 })
	if lease.ctx.Err() != nil {
		t.Fatal("lease given up while its renewal had a whole period left")
	}
	h.clock.Advance(ttl / 3)
	waitFor(t, h, "the lease given up", func() bool { return lease.ctx.Err() != nil })
	if lapse := start.Add(ttl); !h.clock.Now().Before(lapse) {
		t.Errorf("lease given up at %v, not before it lapses at %v", h.clock.Now(), lapse)
	}
	close(bl.block) // the late answer changes nothing
	h.p.leases.wait()
	if h.heldCount() != 0 {
		t.Error("a lease given up is held again after the late renewal")
	}
}

// TestLeaseReleasedOnRemoval: removing an account (provider mode: a user
// whose polling stops) gives its lease back at once, so another node can
// take it; adding it again takes the lease again.
func TestLeaseReleasedOnRemoval(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	h.fill(1)
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	runPoller(t, h)
	name := LeaseName(h.acct.Name)
	at := h.clock.waitTimer(t, 0)
	h.clock.Advance(at.Sub(h.clock.Now()))
	waitFor(t, h, "the first poll", func() bool { n, _ := h.sink.stored(h.acct.Name); return n == 1 && !h.status().Polling })
	if l := db.lease(name); l.Holder != "a" {
		t.Fatalf("lease while polling: %+v", l)
	}
	if !h.p.RemoveAccount(h.acct.Name) {
		t.Fatal("account not removed")
	}
	waitFor(t, h, "the lease given back", func() bool { return db.lease(name).Holder == "" })
	if _, ok, err := db.node("b").AcquireLease(context.Background(), name, ttl); !ok || err != nil {
		t.Errorf("b cannot take the lease of the removed account: %v %v", ok, err)
	}
	h.p.AddAccount(h.acct)
	h.p.PollNow(h.acct.Name)
	waitFor(t, h, "the re-added account to find b's lease", func() bool { return h.status().LeaseHolder == "b" })
	if got := h.srv.stat(&h.srv.dials); got != 1 {
		t.Errorf("dials = %d, want 1 (b holds the lease now)", got)
	}
}
