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

// testLookLeases: one LookLeases call tells, for every name asked and in
// its order, who holds the lease, with which token and how long it has
// left by the database's clock; a lease released, lapsed or never taken
// comes back with no holder or no time left, and looking takes nothing.
func testLookLeases(t *testing.T, e *env) {
	ctx := context.Background()
	a, b := e.open(t, "a"), e.open(t, "b")
	held, ok, err := a.AcquireLease(ctx, "account:held", time.Hour)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	rel, ok, err := a.AcquireLease(ctx, "account:released", time.Hour)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := a.ReleaseLeases(ctx, []store.Lease{rel}); err != nil {
		t.Fatal(err)
	}
	const short = 100 * time.Millisecond
	lapsing, ok, err := a.AcquireLease(ctx, "account:lapsing", short)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	names := []string{"account:never", "account:held", "account:released", "account:lapsing"}
	got, err := b.LookLeases(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names) {
		t.Fatalf("looked at %d leases, got %d", len(names), len(got))
	}
	for i, l := range got {
		if l.Name != names[i] {
			t.Errorf("lease %d is %q, want %q (the order asked)", i, l.Name, names[i])
		}
	}
	if l := got[0]; l.Holder != "" || l.Left != 0 || l.Token != 0 || !l.Expires.IsZero() {
		t.Errorf("never taken: %+v", l)
	}
	if l := got[1]; l.Holder != "a" || l.Token != held.Token || l.Left <= 50*time.Minute || l.Left > time.Hour ||
		!l.Expires.Equal(held.Expires) {
		t.Errorf("held: %+v, want a's lease %+v with about an hour left", l, held)
	}
	if l := got[2]; l.Holder != "" || l.Left != 0 {
		t.Errorf("released: %+v", l)
	}
	if l := got[3]; l.Holder != "a" || l.Left > short {
		t.Errorf("lapsing: %+v, want a's with at most %v left", l, short)
	}
	// Once the short lease lapses by the database's clock, a look says so
	// (Left 0) while the row still names its last holder.
	for {
		ls, err := b.LookLeases(ctx, []string{"account:lapsing"})
		if err != nil {
			t.Fatal(err)
		}
		if ls[0].Left == 0 {
			if ls[0].Holder != "a" || ls[0].Token != lapsing.Token {
				t.Errorf("lapsed: %+v", ls[0])
			}
			break
		}
		time.Sleep(ls[0].Left + time.Millisecond) // its expiry is the event
	}
	// Looking took nothing: b acquires the free ones, not a's.
	if _, ok, err := b.AcquireLease(ctx, "account:held", time.Hour); err != nil || ok {
		t.Errorf("b took a's running lease after a look: %v %v", ok, err)
	}
	for _, n := range []string{"account:never", "account:released", "account:lapsing"} {
		if l, ok, err := b.AcquireLease(ctx, n, time.Hour); err != nil || !ok || l.Holder != "b" {
			t.Errorf("b cannot take %s after a look: %+v %v %v", n, l, ok, err)
		}
	}
	if got, err := b.LookLeases(ctx, nil); err != nil || got != nil {
		t.Errorf("looking at no lease: %v %v", got, err)
	}
}

// BenchmarkWaitingLeases5k compares what a node waiting for the leases of
// 5,000 accounts another node holds costs per look: one LookLeases call
// for all of them ("look"), against one AcquireLease per account, refused
// ("acquire-each", what each waiting worker did before).
func BenchmarkWaitingLeases5k(b *testing.B) {
	e := benchEnv(b)
	a := benchOpen(b, e, "a")
	w := benchOpen(b, e, "b")
	ctx := context.Background()
	const n = 5000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("account:user%d", i)
		if _, ok, err := a.AcquireLease(ctx, names[i], time.Hour); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	b.Run("look", func(b *testing.B) {
		for b.Loop() {
			ls, err := w.LookLeases(ctx, names)
			if err != nil || len(ls) != n || ls[n-1].Holder != "a" {
				b.Fatalf("looked at %d: %v", len(ls), err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "statements/s")
	})
	b.Run("acquire-each", func(b *testing.B) {
		for b.Loop() {
			for _, name := range names {
				if _, ok, err := w.AcquireLease(ctx, name, time.Hour); err != nil || ok {
					b.Fatal(ok, err)
				}
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "statements/s")
	})
}
