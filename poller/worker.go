package poller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbridge/popbridge/store"
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
//
// With leasing (Options.Leaser) the worker polls only while its node holds
// the account's lease: it takes the lease before its first poll and keeps
// it (the keeper renews it) until it stops, when it releases it. While
// another node holds it, the worker tries again when the lease would
// lapse; when the lease is lost, a pass in flight stops before any
// further commit or DELE. A store that cannot be reached
// (store.ErrUnavailable) pauses the polls with a short capped backoff,
// without counting as a failed poll.
func (w *worker) run(ctx context.Context) {
	p := w.p
	st := p.accountState(w.name)
	failures, unavailable := 0, 0
	lastErr := ""
	next := p.now().Add(time.Duration(float64(p.startSpread(w.account().interval())) * p.rand()))
	var (
		lease   *heldLease
		release func()
		// free is closed when the keeper's look finds the lease that
		// another node held free; unwatch ends that watch.
		free    <-chan struct{}
		unwatch = func() {}
	)
	defer func() {
		unwatch()
		if release != nil {
			release()
		}
		p.mu.Lock()
		if cur := p.workers[w.name]; cur == nil || cur == w {
			// Not replaced by a new worker (a changed configuration)
			// that may hold the lease already.
			st.status.LeaseHolder, st.status.LeaseHeld = "", false
		}
		p.mu.Unlock()
		p.setNextPoll(w.name, time.Time{})
	}()
	dropLease := func() {
		release()
		lease, release = nil, nil
		p.setLease(w.name, "", false)
	}
	for {
		early := free
		if lease != nil {
			early = lease.ctx.Done()
		}
		if !w.wait(ctx, st, next, early) {
			return
		}
		unwatch()
		free, unwatch = nil, func() {}
		if lease != nil && lease.ctx.Err() != nil {
			// Lost between polls: find out who holds it now.
			dropLease()
		}
		if p.leases != nil && lease == nil {
			h, rel, other, err := p.leases.hold(ctx, w.name)
			switch {
			case ctx.Err() != nil:
				if rel != nil {
					rel() // taken as the worker was stopped: give it back
				}
				return
			case err != nil:
				unavailable++
				next = p.now().Add(w.storeTrouble(ctx, err, unavailable))
				continue
			case h == nil:
				p.setLease(w.name, other.Holder, false)
				p.storeReachable(w.name)
				unavailable = 0
				// The keeper's looks (one call for every account
				// waiting so) say when it is free.
				p.logLease(w.name, "account lease held by another node", "holder", other.Holder, "left", other.Left)
				free, unwatch = p.leases.watch(w.name, other)
				next = never
				continue
			}
			lease, release = h, rel
			p.setLease(w.name, h.lease.Holder, true)
			p.storeReachable(w.name)
		}
		a := w.account()
		pctx := ctx
		w.mu.Lock()
		if w.early {
			pctx = withUrgent(ctx)
		}
		w.mu.Unlock()
		stopLease := func() {}
		if lease != nil {
			pctx, stopLease = leaseCtx(pctx, lease)
		}
		res, err := p.pass(pctx, a, nil)
		lostLease := leaseLost(pctx)
		stopLease()
		if ctx.Err() != nil {
			return
		}
		if lostLease {
			p.log.Warn("poll stopped: this node lost the account's lease", "account", a.Name)
			dropLease()
			next = p.now()
			continue
		}
		if p.afterPoll != nil {
			p.afterPoll(a, res, err)
		}
		if errors.Is(err, store.ErrUnavailable) {
			unavailable++
			next = p.now().Add(w.storeTrouble(ctx, err, unavailable))
			continue
		}
		unavailable = 0
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

// storeTrouble records the n-th poll in a row (or lease acquire) that
// failed on the store, logs it (rate-limited) and returns how long to wait
// before the next try: storeBackoffBase doubling, capped at
// storeBackoffMax. A store that cannot be reached pauses the polls; it is
// no failure of the account.
func (w *worker) storeTrouble(ctx context.Context, err error, n int) time.Duration {
	p := w.p
	d := storeBackoff(n, p.rand())
	if errors.Is(err, store.ErrUnavailable) {
		p.mu.Lock()
		p.stateLocked(w.name).status.StoreUnavailable = true
		p.mu.Unlock()
	}
	lvl := slog.LevelDebug
	if n&(n-1) == 0 {
		lvl = slog.LevelWarn
	}
	msg := "store unavailable: polls paused"
	if !errors.Is(err, store.ErrUnavailable) {
		msg = "taking the account's lease failed: polls paused"
	}
	p.log.Log(ctx, lvl, msg, "account", w.name, "err", err, "tries", n, "retry_in", d.Round(time.Millisecond))
	return d
}

// never is the next poll of a worker that waits only for a request or
// its early channel (the lease another node holds found free).
var never = time.Unix(1<<62, 0)

// wait blocks until next (never: no time) or an earlier request (see
// request), and then until the server's LOGIN-DELAY has passed since the
// last login. It returns false when ctx is done, and true early when
// early is closed (the account's lease was lost, or the lease another
// node held was found free).
func (w *worker) wait(ctx context.Context, st *acctState, next time.Time, early <-chan struct{}) bool {
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
		if at.Equal(never) {
			st.status.NextPoll = time.Time{}
		}
		p.mu.Unlock()
		now := p.now()
		if !at.After(now) {
			w.mu.Lock()
			w.early = (!w.forceAt.IsZero() && !w.forceAt.After(now)) || (!w.hintAt.IsZero() && !w.hintAt.After(now))
			w.forceAt, w.hintAt = time.Time{}, time.Time{}
			w.mu.Unlock()
			return ctx.Err() == nil
		}
		var (
			fired <-chan time.Time
			stop  = func() {}
		)
		if !at.Equal(never) {
			t := p.timer(at.Sub(now))
			fired, stop = t.C(), func() { t.Stop() }
		}
		select {
		case <-ctx.Done():
			stop()
			return false
		case <-early:
			stop()
			return true
		case <-fired:
		case <-w.wake:
			stop()
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
