package poller

import (
	"context"
	"errors"
	"testing"
	"time"
)

// runPoller starts h.p.Run and returns a stop function that cancels it and
// waits for it to return.
func runPoller(t *testing.T, h *harness) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.p.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// step advances the clock to the worker's pending deadline and waits for
// it to sleep again, returning the new deadline.
func step(t *testing.T, h *harness, at time.Time) time.Time {
	t.Helper()
	made := h.clock.madeCount()
	h.clock.Advance(at.Sub(h.clock.Now()))
	return h.clock.waitTimer(t, made)
}

func TestWorkerScheduleWithJitter(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(1)
	start := h.clock.Now()
	runPoller(t, h)
	at := h.clock.waitTimer(t, 0)
	if want := start.Add(5 * time.Second); !at.Equal(want) {
		t.Fatalf("first poll at %v, want %v (start jitter)", at.Sub(start), want.Sub(start))
	}
	at = step(t, h, at)
	if got := h.srv.stat(&h.srv.dials); got != 1 {
		t.Fatalf("dials = %d", got)
	}
	if want := h.clock.Now().Add(5 * time.Minute); !at.Equal(want) {
		t.Errorf("next poll in %v, want 5m", at.Sub(h.clock.Now()))
	}
	if st := h.p.Status()[0]; !st.NextPoll.Equal(at) || st.Polling || st.Fetched != 1 {
		t.Errorf("status = %+v", st)
	}
	step(t, h, at)
	if got := h.srv.stat(&h.srv.dials); got != 2 {
		t.Fatalf("dials = %d after second interval", got)
	}
	h.checkStored(1)
}

func TestWorkerBackoff(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"temporary", errors.New("connection refused"), false},
		{"permanent", &AccountError{Account: "work", Op: "login", Reply: "-ERR [AUTH] bad password", Err: errors.New("auth")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.dialErr = tt.err
			runPoller(t, h)
			at := h.clock.waitTimer(t, 0)
			for n := 1; n <= 10; n++ {
				at = step(t, h, at)
				d := min(backoffBase<<(n-1), backoffMax)
				want := d * 3 / 4 // jitter 0.5 → 3/4 of d
				if tt.permanent {
					want = max(want, 5*time.Minute)
				}
				if got := at.Sub(h.clock.Now()); got != want {
					t.Fatalf("failure %d: retry in %v, want %v", n, got, want)
				}
				if got := at.Sub(h.clock.Now()); got > backoffMax {
					t.Fatalf("retry in %v exceeds the cap", got)
				}
			}
			if st := h.p.Status()[0]; st.LastError == "" || !st.LastSuccess.IsZero() {
				t.Errorf("status after failures = %+v", st)
			}
			// Success resets the backoff.
			h.srv.mu.Lock()
			h.srv.dialErr = nil
			h.srv.mu.Unlock()
			at = step(t, h, at)
			if got := at.Sub(h.clock.Now()); got != 5*time.Minute {
				t.Errorf("after success next poll in %v, want 5m", got)
			}
			h.srv.mu.Lock()
			h.srv.dialErr = tt.err
			h.srv.mu.Unlock()
			at = step(t, h, at)
			want := backoffBase * 3 / 4
			if tt.permanent {
				want = 5 * time.Minute
			}
			if got := at.Sub(h.clock.Now()); got != want {
				t.Errorf("first failure after success: retry in %v, want %v", got, want)
			}
			if st := h.p.Status()[0]; st.LastError != tt.err.Error() {
				t.Errorf("LastError = %q", st.LastError)
			}
		})
	}
}

func TestWorkerLoginDelayAndPollNow(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.PollInterval = time.Minute })
	h.srv.caps = testCapsLoginDelay(10 * time.Minute)
	runPoller(t, h)
	at := h.clock.waitTimer(t, 0)
	at = step(t, h, at)
	login := h.clock.Now()
	if want := login.Add(10 * time.Minute); !at.Equal(want) {
		t.Fatalf("next poll in %v, want the 10m LOGIN-DELAY", at.Sub(login))
	}
	// PollNow cannot beat LOGIN-DELAY.
	made := h.clock.madeCount()
	h.p.PollNow("work")
	if at2 := h.clock.waitTimer(t, made); !at2.Equal(at) {
		t.Fatalf("after PollNow next poll at %v, want %v", at2.Sub(login), at.Sub(login))
	}
	h.clock.Advance(9 * time.Minute)
	if got := h.srv.stat(&h.srv.dials); got != 1 {
		t.Fatalf("dials = %d within LOGIN-DELAY", got)
	}
	step(t, h, at)
	if got := h.srv.stat(&h.srv.dials); got != 2 {
		t.Fatalf("dials = %d after LOGIN-DELAY", got)
	}
}

func TestWorkerPollNowAndHint(t *testing.T) {
	h := newHarness(t, nil)
	runPoller(t, h)
	step(t, h, h.clock.waitTimer(t, 0))
	// PollNow polls without the clock moving.
	made := h.clock.madeCount()
	h.srv.add("u1", testMessage(1))
	h.p.PollNow("work")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != 2 {
		t.Fatalf("dials = %d after PollNow", got)
	}
	h.checkStored(1)

	wakeLen := func() int {
		h.p.mu.Lock()
		defer h.p.mu.Unlock()
		return len(h.p.workers["work"].wake)
	}
	h.p.Hint("bob", "INBOX")
	h.p.Hint("alice", "Archive")
	if n := wakeLen(); n != 0 {
		t.Fatalf("hint for another mailbox woke the worker")
	}
	made = h.clock.madeCount()
	h.p.Hint("alice", "inbox")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != 3 {
		t.Fatalf("dials = %d after Hint", got)
	}
	h.clock.Advance(10 * time.Second)
	h.p.Hint("alice", "INBOX")
	if n := wakeLen(); n != 0 {
		t.Fatalf("second hint within 15 s woke the worker")
	}
	h.clock.Advance(5 * time.Second)
	made = h.clock.madeCount()
	h.p.Hint("alice", "INBOX")
	h.clock.waitTimer(t, made)
	if got := h.srv.stat(&h.srv.dials); got != 4 {
		t.Fatalf("dials = %d after a hint 15 s later", got)
	}
}

func TestSetAccountsReload(t *testing.T) {
	h := newHarness(t, nil)
	runPoller(t, h)
	h.clock.waitTimer(t, 0)
	worker := func(name string) *worker {
		h.p.mu.Lock()
		defer h.p.mu.Unlock()
		return h.p.workers[name]
	}
	w1 := worker("work")
	same := h.acct
	same.Secret = func(context.Context) (string, error) { return "new", nil }
	h.p.SetAccounts([]Account{same})
	if worker("work") != w1 {
		t.Fatal("unchanged account restarted its worker")
	}
	if w1.account().Secret == nil {
		t.Error("new secret not taken")
	}
	changed := h.acct
	changed.PollInterval = time.Hour
	other := h.acct
	other.Name = "other"
	h.p.SetAccounts([]Account{changed, other})
	if w := worker("work"); w == nil || w == w1 {
		t.Fatal("changed account kept its worker")
	}
	if worker("other") == nil {
		t.Fatal("new account has no worker")
	}
	h.p.SetAccounts([]Account{other})
	if worker("work") != nil {
		t.Fatal("removed account still has a worker")
	}
	if st := h.p.Status(); len(st) != 1 || st[0].Account != "other" {
		t.Errorf("status = %+v", st)
	}
}

func TestRunStopsMidRetrieveCommitsAndAborts(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(5)
	block := make(chan struct{})
	h.srv.retrBlock = block
	stop := runPoller(t, h)
	at := h.clock.waitTimer(t, 0)
	h.clock.Advance(at.Sub(h.clock.Now()))
	block <- struct{}{}
	block <- struct{}{}
	stop()
	// Both messages the session handed over before the stop are committed
	// within the grace period; nothing after them is.
	h.checkStored(2)
	if got := h.srv.stat(&h.srv.quits); got != 0 {
		t.Errorf("QUIT sent during shutdown")
	}
	if got := h.srv.stat(&h.srv.aborts); got != 1 {
		t.Errorf("aborts = %d", got)
	}
	if h.srv.count() != 5 {
		t.Errorf("upstream = %d", h.srv.count())
	}
	if st := h.p.Status()[0]; st.LastError != "" {
		t.Errorf("shutdown recorded an error: %q", st.LastError)
	}
	// The next pass deletes what was committed and fetches the rest.
	h.srv.retrBlock = nil
	r := h.mustPoll()
	if r.Fetched != 3 || r.Deleted != 5 {
		t.Errorf("next pass = %+v", r)
	}
	h.checkStored(5)
}

func TestRunTwice(t *testing.T) {
	h := newHarness(t, nil)
	runPoller(t, h)
	h.clock.waitTimer(t, 0)
	if err := h.p.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestPollOnceWaitsForWorkerPass pins that a PollOnce during a worker's
// pass of the same account waits for it instead of fetching the same
// messages in parallel (the fake sink refuses a duplicate delivery).
func TestPollOnceWaitsForWorkerPass(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(3)
	block := make(chan struct{})
	h.srv.retrBlock = block
	runPoller(t, h)
	at := h.clock.waitTimer(t, 0)
	h.clock.Advance(at.Sub(h.clock.Now()))
	block <- struct{}{} // the worker is now inside its pass
	type result struct {
		r   Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := h.p.PollOnce(context.Background(), "work", nil)
		done <- result{r, err}
	}()
	block <- struct{}{}
	block <- struct{}{}
	close(block)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.r.Fetched != 0 {
		t.Errorf("PollOnce fetched %d messages the worker's pass was fetching", res.r.Fetched)
	}
	h.checkStored(3)
}
