package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testLeaseBatch renews and releases many leases in one call each: the
// leases still held come back renewed, the lost ones (taken over after
// lapsing, released) do not, and a lease held elsewhere tells how long it
// has left by the database's clock.
func testLeaseBatch(t *testing.T, e *env) {
	ctx := context.Background()
	a, b := e.open(t, "a"), e.open(t, "b")
	var held []store.Lease
	for i := range 50 {
		l, ok, err := a.AcquireLease(ctx, fmt.Sprintf("account:u%d", i), time.Hour)
		if err != nil || !ok {
			t.Fatalf("acquire %d: %v %v", i, ok, err)
		}
		held = append(held, l)
	}
	const short = 200 * time.Millisecond
	lapsing, ok, err := a.AcquireLease(ctx, "account:lapsing", short)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if other, ok, err := b.AcquireLease(ctx, "account:u0", time.Hour); err != nil || ok || other.Holder != "a" ||
		other.Left <= 50*time.Minute || other.Left > time.Hour {
		t.Errorf("b acquires a's lease: %+v %v %v; want refused with about an hour left", other, ok, err)
	}
	// u1 released, u2 released and then taken by b.
	if err := a.ReleaseLeases(ctx, held[1:3]); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.AcquireLease(ctx, "account:u2", time.Hour); err != nil || !ok {
		t.Fatalf("b takes a released lease: %v %v", ok, err)
	}
	// The lapsing lease expires (by the database's clock) and b takes it.
	for {
		l, ok, err := b.AcquireLease(ctx, "account:lapsing", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if l.Left > short {
			t.Fatalf("lapsing lease has %v left, more than its ttl %v", l.Left, short)
		}
		time.Sleep(l.Left + time.Millisecond) // its expiry is the event
	}

	renewed, err := a.RenewLeases(ctx, append(held, lapsing), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.Lease{}
	for _, l := range renewed {
		got[l.Name] = l
	}
	if len(got) != 48 {
		t.Errorf("renewed %d leases, want 48 (50 held, 2 released, 1 taken over)", len(got))
	}
	for _, lost := range []string{"account:u1", "account:u2", "account:lapsing"} {
		if _, ok := got[lost]; ok {
			t.Errorf("lost lease %s renewed", lost)
		}
	}
	for _, l := range held[3:] {
		r, ok := got[l.Name]
		if !ok || r.Token != l.Token || r.Holder != "a" || !r.Expires.After(l.Expires) || r.Left != 2*time.Hour {
			t.Errorf("renewal of %s: %+v (was %+v)", l.Name, r, l)
		}
	}
	if _, err := a.RenewLeases(ctx, held, 0); err == nil {
		t.Error("zero ttl accepted")
	}

	// A batch release frees every lease a still holds, and only those.
	if err := a.ReleaseLeases(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseLeases(ctx, held); err != nil {
		t.Errorf("releasing lost leases: %v", err)
	}
	if l, ok, err := b.AcquireLease(ctx, "account:u49", time.Hour); err != nil || !ok || l.Token != held[49].Token+1 {
		t.Errorf("b after a's batch release: %+v %v %v", l, ok, err)
	}
	if l, ok, err := a.AcquireLease(ctx, "account:u2", time.Hour); err != nil || ok || l.Holder != "b" {
		t.Errorf("a's release freed b's lease: %+v %v %v", l, ok, err)
	}
	if again, err := a.RenewLeases(ctx, renewed, time.Hour); err != nil || len(again) != 0 {
		t.Errorf("renewing released leases: %d renewed, %v", len(again), err)
	}
}

// BenchmarkRenewLeases10k renews the leases of 10,000 accounts held by
// one node (provider mode) in one call, as the poller's lease keeper does
// every ttl/3.
func BenchmarkRenewLeases10k(b *testing.B) {
	e := benchEnv(b)
	s := benchOpen(b, e, "a")
	ctx := context.Background()
	ls := make([]store.Lease, 10000)
	start := time.Now()
	for i := range ls {
		l, ok, err := s.AcquireLease(ctx, fmt.Sprintf("account:user%d", i), time.Hour)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		ls[i] = l
	}
	// For comparison: one statement per lease, as RenewLease would cost.
	b.Logf("10,000 single-lease statements (AcquireLease) took %v", time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for b.Loop() {
		got, err := s.RenewLeases(ctx, ls, time.Hour)
		if err != nil || len(got) != len(ls) {
			b.Fatalf("renewed %d of %d: %v", len(got), len(ls), err)
		}
	}
}
