package poller

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// refusedLogin is the error a server's -ERR to PASS becomes: permanent.
var refusedLogin = &AccountError{Account: "work", Op: "login", Reply: "-ERR [AUTH] Authentication failed.", Err: errors.New("auth")}

// TestHintsDuringAuthBackoff: with a wrong password and an IMAP client
// refreshing the account's folder every 5 s for an hour, popbridge logs in
// exactly as often as the backoff after a refused login allows (8 times
// with poll_interval 5m), not at every hint (which used to mean every 15 s,
// 240 logins an hour). An operator's PollNow still logs in at once, and
// once a login succeeds hints work again.
func TestHintsDuringAuthBackoff(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.dialErr = refusedLogin
	want := hintsForAnHour(t, h, func() int { return h.srv.stat(&h.srv.dials) })
	if st := h.p.Status()[0]; st.LastError == "" {
		t.Errorf("status shows no error: %+v", st)
	}

	// The operator may retry at once (SIGUSR1, popbridge poll).
	made := h.clock.madeCount()
	h.p.PollNow("work")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != want+1 {
		t.Fatalf("dials = %d after PollNow, want %d", got, want+1)
	}

	// The password is fixed: the next operator poll succeeds and hints
	// work again.
	h.srv.mu.Lock()
	h.srv.dialErr = nil
	h.srv.mu.Unlock()
	made = h.clock.madeCount()
	h.p.PollNow("work")
	h.clock.waitTimer(t, made)
	h.clock.Advance(hintEvery)
	made = h.clock.madeCount()
	h.p.Hint("alice", "INBOX")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != want+3 {
		t.Fatalf("dials = %d after a hint once the login works, want %d", got, want+3)
	}
}

// TestHintAfterTemporaryFailure: a server that is down (not a refused
// login) still gets an early poll from a hint.
func TestHintAfterTemporaryFailure(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.dialErr = errors.New("connection refused")
	runPoller(t, h)
	step(t, h, h.clock.waitTimer(t, 0))
	made := h.clock.madeCount()
	h.p.Hint("alice", "INBOX")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != 2 {
		t.Fatalf("dials = %d, want 2: a hint after a temporary failure polls", got)
	}
}

func TestStartSpread(t *testing.T) {
	for _, tt := range []struct {
		accounts int
		interval time.Duration
		want     time.Duration
	}{
		{1, 5 * time.Minute, maxStartDelay},
		{1, 3 * time.Second, 3 * time.Second},
		{100, 5 * time.Minute, maxStartDelay},
		{1000, 5 * time.Minute, 50 * time.Second},
		{1000, 20 * time.Second, 20 * time.Second},
	} {
		accts := make([]Account, tt.accounts)
		for i := range accts {
			accts[i] = Account{Name: fmt.Sprint("a", i)}
		}
		p := New(Options{Accounts: accts})
		if got := p.startSpread(tt.interval); got != tt.want {
			t.Errorf("%d accounts every %v: first polls spread over %v, want %v", tt.accounts, tt.interval, got, tt.want)
		}
	}
}

// TestPollAllSpreads: SIGUSR1 with many accounts asks each for a poll at a
// random moment within 50 ms per account, not all at the same instant; the
// polls then all happen.
func TestPollAllSpreads(t *testing.T) {
	const n = 200
	h := newHarness(t, nil)
	accts := make([]Account, n)
	for i := range accts {
		accts[i] = h.acct
		accts[i].Name = fmt.Sprint("acct", i)
	}
	h.p.SetAccounts(accts)
	var (
		mu  sync.Mutex
		seq int
	)
	h.p.rand = func() float64 { // in (0,1): no request falls on "now"
		mu.Lock()
		defer mu.Unlock()
		seq++
		return float64(seq%97+1) / 98
	}
	runPoller(t, h)
	waitPending(t, h, n)
	// Let every first poll happen.
	h.clock.Advance(h.p.startSpread(h.acct.interval()))
	waitDials(t, h, n)
	waitPending(t, h, n)

	made := h.clock.madeCount()
	now := h.clock.Now()
	h.p.PollAll()
	spread := n * staggerStep
	var ats []time.Time
	deadline := time.Now().Add(10 * time.Second)
	for {
		ats = h.clock.pending()
		early := 0
		for _, at := range ats {
			if at.Before(now.Add(time.Minute)) {
				early++
			}
		}
		if early == n && h.clock.madeCount() >= made+n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d workers rescheduled after PollAll", early, n)
		}
		time.Sleep(time.Millisecond) // workers reschedule on their own goroutines
	}
	first, last := ats[0], ats[0]
	distinct := map[time.Time]bool{}
	for _, at := range ats {
		if at.Before(now) || at.After(now.Add(spread)) {
			t.Fatalf("poll at %v after PollAll, want within [0, %v]", at.Sub(now), spread)
		}
		first, last = minTime(first, at), maxTime(last, at)
		distinct[at] = true
	}
	if last.Sub(first) < spread/2 || len(distinct) < n/4 {
		t.Errorf("PollAll polls span %v over %d distinct instants, want them spread over about %v", last.Sub(first), len(distinct), spread)
	}
	h.clock.Advance(spread)
	waitDials(t, h, 2*n)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitPending waits until n timers are pending (every worker asleep).
func waitPending(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(h.clock.pending()) != n {
		select {
		case <-h.clock.created:
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatalf("%d timers pending, want %d", len(h.clock.pending()), n)
		}
	}
}

// waitDials waits until the fake server saw n logins.
func waitDials(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.stat(&h.srv.dials) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d logins, want %d", h.srv.stat(&h.srv.dials), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// hintsForAnHour runs h's poller (its login refused) for an hour of the
// fake clock with a hint every 5 s, fails unless logins() counts exactly
// the logins the backoff allows, and returns that count.
func hintsForAnHour(t *testing.T, h *harness, logins func() int) int {
	t.Helper()
	runPoller(t, h)
	start := h.clock.Now()
	at := h.clock.waitTimer(t, 0)

	// What the backoff allows in the hour: the first poll (start jitter),
	// then one login per backoff delay (rand is fixed at 0.5).
	want := 0
	for n, next := 1, at; next.Before(start.Add(time.Hour)); n++ {
		want++
		next = next.Add(backoffDelay(n, h.acct.interval(), true, 0.5))
	}
	wakeLen := func() int {
		h.p.mu.Lock()
		defer h.p.mu.Unlock()
		return len(h.p.workers[h.acct.Name].wake)
	}
	hints := 0
	for end := start.Add(time.Hour); h.clock.Now().Before(end); {
		if tick := h.clock.Now().Add(5 * time.Second); at.After(tick) {
			h.clock.Advance(5 * time.Second)
		} else {
			at = step(t, h, at) // a scheduled poll: it fails, the worker sleeps again
		}
		h.p.Hint(h.acct.User, "INBOX")
		hints++
		if n := wakeLen(); n != 0 && logins() > 0 {
			t.Fatalf("at %v: a hint woke a worker whose login was refused", h.clock.Now().Sub(start))
		}
	}
	got := logins()
	t.Logf("%d hints in an hour, %d logins (backoff allows %d)", hints, got, want)
	if got != want {
		t.Fatalf("%d logins in an hour of hints every 5 s, want %d (the backoff's)", got, want)
	}
	if want > 10 {
		t.Fatalf("the backoff allows %d logins an hour; the test expects a handful", want)
	}
	return want
}
