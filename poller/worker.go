package poller

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// worker polls one account on its schedule until its context is canceled.
type worker struct {
	p      *Poller
	name   string
	wake   chan struct{} // 1 slot: an early poll is wanted
	cancel context.CancelFunc

	mu   sync.Mutex
	acct Account
}

// startWorkerLocked starts a worker for a under the Run context. p.mu held,
// p.running true.
func (p *Poller) startWorkerLocked(a Account) {
	ctx, cancel := context.WithCancel(p.runCtx)
	w := &worker{p: p, name: a.Name, acct: a, wake: make(chan struct{}, 1), cancel: cancel}
	p.workers[a.Name] = w
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		w.run(ctx)
	}()
}

// account returns the worker's current account configuration.
func (w *worker) account() Account {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acct
}

// setAccount swaps in a configuration that differs only in its Secret.
func (w *worker) setAccount(a Account) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acct = a
}

// poke asks for an early poll without blocking.
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is the worker loop: wait for the next poll time (or a poke), never
// earlier than the server's LOGIN-DELAY allows, poll, and schedule the next
// poll: the interval with jitter after a success, exponential backoff with
// jitter after a failure.
func (w *worker) run(ctx context.Context) {
	p := w.p
	st := p.accountState(w.name)
	failures := 0
	lastErr := ""
	next := p.now().Add(time.Duration(float64(min(w.account().interval(), maxStartDelay)) * p.rand()))
	defer p.setNextPoll(w.name, time.Time{})
	for {
		if !w.wait(ctx, st, next) {
			return
		}
		a := w.account()
		_, err := p.pass(ctx, a, nil)
		if ctx.Err() != nil {
			return
		}
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

// wait blocks until next (or a poke), and then until the server's
// LOGIN-DELAY has passed since the last login. It returns false when ctx
// is done.
func (w *worker) wait(ctx context.Context, st *acctState, next time.Time) bool {
	p := w.p
	for {
		p.mu.Lock()
		at := next
		if st.loginDelay > 0 && !st.lastLogin.IsZero() {
			if allowed := st.lastLogin.Add(st.loginDelay); allowed.After(at) {
				at = allowed
			}
		}
		st.status.NextPoll = at
		p.mu.Unlock()
		now := p.now()
		if !at.After(now) {
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
			next = now
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
