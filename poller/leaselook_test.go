package poller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// TestLeaseLookBatches: the accounts of one node waiting for leases other
// nodes hold cost one LookLeases call per look for all of them and no
// acquire; a look wakes exactly the waiters whose lease was released or
// lapsed, takes a lease released by a clean stop within half a lease
// period, and shows a new holder in the account's status.
func TestLeaseLookBatches(t *testing.T) {
	const (
		ttl = 30 * time.Second
		n   = 100
	)
	h := newHarness(t, nil)
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	k := h.p.leases
	ctx := context.Background()
	type waiter struct {
		free    <-chan struct{}
		unwatch func()
	}
	ws := make([]waiter, n)
	for i := range ws {
		acct := fmt.Sprint("acct", i)
		other, ok, err := db.node("b").AcquireLease(ctx, LeaseName(acct), ttl)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		ws[i].free, ws[i].unwatch = k.watch(acct, other)
		defer ws[i].unwatch()
	}
	isFree := func(i int) bool {
		select {
		case <-ws[i].free:
			return true
		default:
			return false
		}
	}
	before := db.acquires
	// The keeper re-arms its look timer as the watches arrive: wait for
	// it to settle at the first look's time (the waiters' leases have
	// ttl left: the look comes at ttl/2 plus the jitter, here ttl/40).
	var first time.Duration
	waitFor(t, h, fmt.Sprintf("the look timer at %v", ttl/2+ttl/40), func() bool {
		p := h.clock.pending()
		if len(p) != 1 {
			return false
		}
		first = p[0].Sub(h.clock.Now())
		return first == ttl/2+ttl/40
	})

	// b renews all, releases acct3 (a clean stop) and c takes acct7 over.
	h.clock.Advance(ttl / 3)
	var mine []store.Lease
	for i := range n {
		mine = append(mine, db.lease(LeaseName(fmt.Sprint("acct", i))))
	}
	if _, err := db.node("b").RenewLeases(ctx, mine, ttl); err != nil {
		t.Fatal(err)
	}
	if err := db.node("b").ReleaseLeases(ctx, []store.Lease{mine[3]}); err != nil {
		t.Fatal(err)
	}
	db.takeOver(LeaseName("acct7"), "c", ttl)
	released := h.clock.Now()

	var at time.Time
	waitFor(t, h, "the look timer", func() bool {
		p := h.clock.pending()
		if len(p) != 1 {
			return false
		}
		at = p[0]
		return true
	})
	h.clock.Advance(at.Sub(h.clock.Now()))
	waitFor(t, h, "the look", func() bool { db.mu.Lock(); defer db.mu.Unlock(); return db.looks == 1 })
	waitFor(t, h, "acct3's waiter woken", func() bool { return isFree(3) })
	if took := h.clock.Now().Sub(released); took > ttl/2 {
		t.Errorf("released lease found free %v after its release, more than half a lease period", took)
	}
	db.mu.Lock()
	looked, acquires := db.looked, db.acquires-before
	db.mu.Unlock()
	if looked != n || acquires != 0 {
		t.Errorf("one look asked for %d names with %d acquires, want %d names and none", looked, acquires, n)
	}
	for i := range n {
		if i != 3 && isFree(i) {
			t.Errorf("waiter of acct%d woken while its lease runs", i)
		}
	}
	h.p.mu.Lock()
	holder := h.p.stateLocked("acct7").status.LeaseHolder
	h.p.mu.Unlock()
	if holder != "c" {
		t.Errorf("status of acct7 after c took it over: holder %q, want c", holder)
	}
	if got := h.watchedCount(); got != n-1 {
		t.Errorf("%d leases watched after the look, want %d", got, n-1)
	}

	// Nobody renews any more: the next look after they lapse wakes
	// every waiter, within two lease periods of the last renewal.
	for h.watchedCount() > 0 {
		if h.clock.Now().Sub(released) > 2*ttl {
			t.Fatalf("%d leases still watched %v after the last renewal", h.watchedCount(), h.clock.Now().Sub(released))
		}
		waitFor(t, h, "the look timer", func() bool { return len(h.clock.pending()) == 1 })
		looks := h.looks()
		h.clock.Advance(h.clock.pending()[0].Sub(h.clock.Now()))
		waitFor(t, h, "the look", func() bool { return h.looks() > looks })
	}
	for i := range n {
		if !isFree(i) {
			t.Errorf("waiter of acct%d not woken after its lease lapsed", i)
		}
	}
	waitFor(t, h, "the look loop to end with nothing watched", func() bool { k.mu.Lock(); defer k.mu.Unlock(); return !k.looking })
}

// TestLeaseUnwatchEndsLooks: once no worker waits for a lease any more (the
// node stops, the account is removed), the keeper's look loop ends at once,
// without waiting for its timer, and looks no more.
func TestLeaseUnwatchEndsLooks(t *testing.T) {
	const ttl = 30 * time.Second
	h := newHarness(t, nil)
	db := newFakeLeaseDB(h.clock.Now)
	withLeases(h, db, "a", ttl)
	k := h.p.leases
	other, ok, err := db.node("b").AcquireLease(context.Background(), LeaseName("acct"), ttl)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	_, unwatch := k.watch("acct", other)
	waitFor(t, h, "the look timer", func() bool { return len(h.clock.pending()) == 1 })
	unwatch()
	unwatch() // idempotent
	waitFor(t, h, "the look loop to end", func() bool { k.mu.Lock(); defer k.mu.Unlock(); return !k.looking })
	h.clock.Advance(ttl)
	if got := h.looks(); got != 0 {
		t.Errorf("%d looks after the only watch ended", got)
	}
}
