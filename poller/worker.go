package poller

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// worker polls one account on its schedule until its context is canceled.
type worker struct {
	p      *Poller
	name   string
	wake   chan struct{} // 1 slot: an early-poll request changed
	cancel context.CancelFunc

	// acct is the account's configuration, swapped by a reload that
	// changes only its Secret.
	acct atomic.Pointer[Account]

	mu sync.Mutex
	// forceAt and hintAt are the earliest pending early-poll requests of
	// an operator (PollNow, PollAll) and of an IMAP client (Hint); zero:
	// none. A poll that starts consumes both.
	forceAt, hintAt time.Time
	// hold is true while the worker backs off after a refused login (a
	// permanent error): hints are dropped then, so IMAP clients
	// refreshing the mailbox cannot make popbridge retry a wrong password
	// sooner than the backoff allows. Operator requests still poll.
	hold bool
	// early is set by wait when the poll it lets start was asked for
	// (PollNow, PollAll, Hint): someone waits for it, so its connection
	// slot comes before those of scheduled polls.
	early bool
}

// startWorkerLocked starts a worker for a under the Run context. p.mu held,
// p.running true.
func (p *Poller) startWorkerLocked(a Account) {
	ctx, cancel := context.WithCancel(p.runCtx)
	w := &worker{p: p, name: a.Name, wake: make(chan struct{}, 1), cancel: cancel}
	w.acct.Store(&a)
	p.workers[a.Name] = w
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		w.run(ctx)
	}()
}

// account returns the worker's current account configuration.
func (w *worker) account() Account { return *w.acct.Load() }

// setAccount swaps in a configuration that differs only in its Secret.
func (w *worker) setAccount(a Account) { w.acct.Store(&a) }

// request asks for an early poll at (or soon after) at, without blocking.
// force marks an operator's request, honoured even while hints are held
// after a refused login. It reports whether the request was taken: a hint
// during such a backoff is dropped.
func (w *worker) request(at time.Time, force bool) bool {
	w.mu.Lock()
	switch {
	case force:
		if w.forceAt.IsZero() || at.Before(w.forceAt) {
			w.forceAt = at
		}
	case w.hold:
		w.mu.Unlock()
		return false
	default:
		if w.hintAt.IsZero() || at.Before(w.hintAt) {
			w.hintAt = at
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// setHold records whether the last poll's login was refused.
func (w *worker) setHold(hold bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hold = hold
	if hold {
		w.hintAt = time.Time{}
	}
}

// run is the worker loop: wait for the next poll time (or an earlier
// request), never earlier than the server's LOGIN-DELAY allows, poll, and
// schedule the next poll: the interval with jitter after a success,
// exponential backoff with jitter after a failure (holding hints after a
// refused login).
func (w *worker) run(ctx context.Context) {
	p := w.p
	st := p.accountState(w.name)
	failures := 0
	lastErr := ""
	next := p.now().Add(time.Duration(float64(p.startSpread(w.account().interval())) * p.rand()))
	defer p.setNextPoll(w.name, time.Time{})
	for {
		if !w.wait(ctx, st, next) {
			return
		}
		a := w.account()
		pctx := ctx
		w.mu.Lock()
		if w.early {
			pctx = withUrgent(ctx)
		}
		w.mu.Unlock()
		res, err := p.pass(pctx, a, nil)
		if ctx.Err() != nil {
			return
		}
		if p.afterPoll != nil {
			p.afterPoll(a, res, err)
		}
		w.setHold(err != nil && isPermanent(err))
		now := p.now()
		if err != nil {
			failures++
			d := backoffDelay(failures, a.interval(), isPermanent(err), p.rand())
			next = now.Add(d)
			// Rate-limited: a dead upstream logs at the first failure,
			// when the error changes, and then at powers of two.
			lvl := slog.LevelDebug
			if msg := err.Error(); msg != lastErr || failures&(failures-1) == 0 {
				lvl, lastErr = slog.LevelWarn, msg
			}
			p.log.Log(ctx, lvl, "poll failed", "account", a.Name, "err", err, "failures", failures, "retry_in", d.Round(time.Second))
		} else {
			if failures > 0 {
				p.log.Info("poll succeeded after failures", "account", a.Name, "failures", failures)
			}
			failures, lastErr = 0, ""
			next = now.Add(jitterInterval(a.interval(), p.rand()))
		}
	}
}

// wait blocks until next or an earlier request (see request), and then
// until the server's LOGIN-DELAY has passed since the last login. It
// returns false when ctx is done.
func (w *worker) wait(ctx context.Context, st *acctState, next time.Time) bool {
	p := w.p
	for {
		w.mu.Lock()
		at := next
		if !w.forceAt.IsZero() && w.forceAt.Before(at) {
			at = w.forceAt
		}
		if !w.hintAt.IsZero() && w.hintAt.Before(at) {
			at = w.hintAt
		}
		w.mu.Unlock()
		p.mu.Lock()
		if st.loginDelay > 0 && !st.lastLogin.IsZero() {
			if allowed := st.lastLogin.Add(st.loginDelay); allowed.After(at) {
				at = allowed
			}
		}
		st.status.NextPoll = at
		p.mu.Unlock()
		now := p.now()
		if !at.After(now) {
			w.mu.Lock()
			w.early = (!w.forceAt.IsZero() && !w.forceAt.After(now)) || (!w.hintAt.IsZero() && !w.hintAt.After(now))
			w.forceAt, w.hintAt = time.Time{}, time.Time{}
			w.mu.Unlock()
			return ctx.Err() == nil
		}
		t := p.timer(at.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C():
		case <-w.wake:
			t.Stop()
		}
	}
}

// waitLoginDelay blocks a pass until the server's LOGIN-DELAY allows a new
// login. It returns ctx's error if ctx ends first.
func (p *Poller) waitLoginDelay(ctx context.Context, st *acctState) error {
	for {
		p.mu.Lock()
		var allowed time.Time
		if st.loginDelay > 0 && !st.lastLogin.IsZero() {
			allowed = st.lastLogin.Add(st.loginDelay)
		}
		p.mu.Unlock()
		now := p.now()
		if !allowed.After(now) {
			return nil
		}
		t := p.timer(allowed.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}
