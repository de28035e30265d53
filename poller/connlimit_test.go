package poller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// acquireAsync starts an acquire and returns a channel that yields its
// release func once granted.
func acquireAsync(ctx context.Context, l *connLimiter, host string) <-chan func() {
	ch := make(chan func(), 1)
	go func() {
		rel, err := l.acquire(ctx, host, nil)
		if err == nil {
			ch <- rel
		}
		close(ch)
	}()
	return ch
}

// waitQueued waits until n acquires are queued.
func waitQueued(t *testing.T, l *connLimiter, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, w := l.stats(); w == n {
			return
		}
		if time.Now().After(deadline) {
			_, w := l.stats()
			t.Fatalf("%d waiting, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func granted(ch <-chan func()) bool {
	select {
	case rel := <-ch:
		return rel != nil
	default:
		return false
	}
}

func TestConnLimiter(t *testing.T) {
	ctx := context.Background()
	l := newConnLimiter(3, 2)
	a1, _ := l.acquire(ctx, "a", nil)
	a2, _ := l.acquire(ctx, "a", nil)
	// Host a is full: a third session to a waits, one to b does not.
	a3 := acquireAsync(ctx, l, "a")
	waitQueued(t, l, 1)
	b1, err := l.acquire(ctx, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if open, _ := l.stats(); open != 3 {
		t.Fatalf("open = %d, want 3", open)
	}
	// Now the total is full: b waits too, behind a.
	b2 := acquireAsync(ctx, l, "b")
	waitQueued(t, l, 2)
	// Freeing a slot of b: the total has room, host a has not, so the
	// waiter for b (behind the one for a) gets it.
	b1()
	b1() // idempotent
	rel := <-b2
	if rel == nil || granted(a3) {
		t.Fatal("slot went to the wrong waiter")
	}
	// Freeing a slot of a: the waiter for a gets it.
	a1()
	if r := <-a3; r == nil {
		t.Fatal("waiter for a not granted")
	} else {
		defer r()
	}
	if open, w := l.stats(); open != 3 || w != 0 {
		t.Fatalf("open %d waiting %d, want 3 and 0", open, w)
	}
	// A canceled wait leaves the queue and takes nothing.
	cctx, cancel := context.WithCancel(ctx)
	var waits []bool
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		_, err := l.acquire(cctx, "c", func(w bool) { mu.Lock(); waits = append(waits, w); mu.Unlock() })
		done <- err
	}()
	waitQueued(t, l, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled acquire: %v", err)
	}
	mu.Lock()
	if fmt.Sprint(waits) != "[true false]" {
		t.Errorf("waiting callbacks %v, want [true false]", waits)
	}
	mu.Unlock()
	if open, w := l.stats(); open != 3 || w != 0 {
		t.Fatalf("after cancel: open %d waiting %d, want 3 and 0", open, w)
	}
	// Raising the caps lets waiters in at once; lowering closes nothing.
	c1 := acquireAsync(ctx, l, "c")
	waitQueued(t, l, 1)
	l.setLimits(4, 2)
	if r := <-c1; r == nil {
		t.Fatal("raised cap did not grant the waiter")
	} else {
		defer r()
	}
	l.setLimits(1, 1)
	if open, _ := l.stats(); open != 4 {
		t.Fatalf("open = %d after lowering the cap, want 4 (nothing closed)", open)
	}
	a2()
	rel()
	// Still 2 open (a3, c1) with a cap of 1: a new session waits.
	d := acquireAsync(ctx, l, "d")
	waitQueued(t, l, 1)
	l.setLimits(0, 0) // no caps
	if r := <-d; r == nil {
		t.Fatal("no cap: waiter not granted")
	} else {
		r()
	}
}

// TestWaitingStatus: a poll that waits for a connection slot says so in
// its account's status and in ConnectionStats, and goes ahead when the
// slot frees.
func TestWaitingStatus(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(1)
	h.p.SetConnectionLimits(1, 1)
	// Another session (a check, say) holds the only slot.
	release, err := h.p.acquireSlot(context.Background(), h.acct)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := h.poll(); done <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for !h.p.Status()[0].Waiting {
		if time.Now().After(deadline) {
			t.Fatal("the waiting poll is not shown in the status")
		}
		time.Sleep(time.Millisecond)
	}
	if st := h.p.Status()[0]; st.State() != StateWaiting {
		t.Errorf("state %q, want %q", st.State(), StateWaiting)
	}
	if open, waiting := h.p.ConnectionStats(); open != 1 || waiting != 1 {
		t.Errorf("ConnectionStats = %d open, %d waiting; want 1 and 1", open, waiting)
	}
	if n := h.srv.stat(&h.srv.dials); n != 0 {
		t.Fatalf("dialed %d times without a slot", n)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.checkStored(1)
	if st := h.p.Status()[0]; st.Waiting || st.State() != "idle" {
		t.Errorf("after the poll: %+v (%s)", st, st.State())
	}
	if open, waiting := h.p.ConnectionStats(); open != 0 || waiting != 0 {
		t.Errorf("after the poll ConnectionStats = %d, %d; want 0, 0 (slot given back at QUIT)", open, waiting)
	}
	// A failing dial gives its slot back too.
	h.srv.dialErr = errors.New("connection refused")
	if _, err := h.poll(); err == nil {
		t.Fatal("poll succeeded")
	}
	if open, _ := h.p.ConnectionStats(); open != 0 {
		t.Errorf("%d sessions still counted open after a failed dial", open)
	}
}

// manyAccountsCapTest runs accounts pollers at once (every first poll at the
// same instant: the stampede the caps must hold), account i configured as
// addrs[i%len(addrs)] (server, credentials), and waits until each account
// has polled once without error and stored mail. It returns the most polls
// seen waiting for a slot at once.
func manyAccountsCapTest(t *testing.T, accounts int, addrs []Account, maxConns, perHost int, timeout time.Duration) (maxWaiting int) {
	t.Helper()
	accts := make([]Account, accounts)
	for i := range accts {
		a := addrs[i%len(addrs)]
		a.Name = fmt.Sprintf("acct%04d", i)
		a.User = fmt.Sprintf("user%04d", i)
		a.LeaveOnServer = true
		a.PollInterval = time.Hour
		accts[i] = a
	}
	sink := newFakeSink(time.Now)
	p := New(Options{Sink: sink, Accounts: accts, MaxConnections: maxConns, MaxConnectionsPerHost: perHost})
	p.sessCfg.IOTimeout = 20 * time.Second
	p.rand = func() float64 { return 0 }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(timeout)
	sawWaiting := false
	for {
		polled, failed := 0, ""
		for _, st := range p.Status() {
			if !st.LastSuccess.IsZero() {
				polled++
			}
			if st.LastError != "" && failed == "" {
				failed = st.Account + ": " + st.LastError
			}
			sawWaiting = sawWaiting || st.State() == StateWaiting
		}
		_, waiting := p.ConnectionStats()
		maxWaiting = max(maxWaiting, waiting)
		if failed != "" {
			t.Fatalf("a poll failed: %s", failed)
		}
		if polled == accounts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accounts polled within %v", polled, accounts, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawWaiting {
		t.Error("no account was ever shown waiting for a connection slot")
	}
	for i := range accts {
		if n, _ := sink.stored(accts[i].Name); n == 0 {
			t.Fatalf("account %s stored nothing", accts[i].Name)
		}
	}
	return maxWaiting
}

// TestConnectionCapsManyAccounts: 1,000 accounts on two in-process POP3
// servers, all due at the same instant, with max_connections 15 and
// max_connections_per_host 10. Counted by the servers: never more than 10
// sessions on one server, never more than 15 on both; and the caps are
// reached (the test is not passed by polling one account at a time).
func TestConnectionCapsManyAccounts(t *testing.T) {
	const accounts, maxConns, perHost = 1000, 15, 10
	var both pop3mem.SessionCounter
	var addrs []Account
	var srvs []*pop3mem.Server
	for range 2 {
		srv := pop3mem.NewServer(pop3mem.WithSessionCounter(&both))
		t.Cleanup(srv.Close)
		srv.AddMessage([]byte(testMessage(1)))
		srv.AddMessage([]byte(testMessage(2)))
		srvs = append(srvs, srv)
		addrs = append(addrs, testAccount(srv))
	}
	start := time.Now()
	maxWaiting := manyAccountsCapTest(t, accounts, addrs, maxConns, perHost, time.Minute)
	t.Logf("%d accounts polled in %v; most sessions at once: %d and %d per server, %d together; most polls waiting: %d",
		accounts, time.Since(start).Round(time.Millisecond), srvs[0].MaxOpenSessions(), srvs[1].MaxOpenSessions(), both.Max(), maxWaiting)
	for i, srv := range srvs {
		if n := srv.MaxOpenSessions(); n > perHost {
			t.Errorf("server %d had %d sessions at once, cap %d", i, n, perHost)
		}
	}
	if n := both.Max(); n > maxConns {
		t.Errorf("%d sessions at once on both servers, cap %d", n, maxConns)
	}
	if n := both.Max(); n <= perHost {
		t.Errorf("at most %d sessions at once on both servers: the total cap (%d) was never reached", n, maxConns)
	}
	if maxWaiting < accounts/2 {
		t.Errorf("at most %d polls waited for a slot, want most of the %d due at once", maxWaiting, accounts)
	}
}

// TestConnLimiterUrgentFirst: with the cap reached, an urgent waiter gets
// the next free slot before background waiters that queued earlier, and
// urgent waiters keep their own order.
func TestConnLimiterUrgentFirst(t *testing.T) {
	l := newConnLimiter(1, 0)
	ctx := context.Background()
	hold, err := l.acquire(ctx, "h", nil)
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 4)
	queued := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, w := l.stats(); w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters never queued", n)
			}
			runtime.Gosched()
		}
	}
	start := func(name string, urgent bool) {
		go func() {
			rel, err := l.acquireUrgent(ctx, "h", urgent, nil)
			if err != nil {
				t.Error(err)
				return
			}
			order <- name
			rel()
		}()
	}
	start("background-1", false)
	queued(1)
	start("background-2", false)
	queued(2)
	start("urgent-1", true)
	queued(3)
	start("urgent-2", true)
	queued(4)
	hold()
	var got []string
	for range 4 {
		got = append(got, <-order)
	}
	if want := "urgent-1 urgent-2 background-1 background-2"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}
