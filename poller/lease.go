package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Leaser grants the leases that make one node of a cluster, and only one,
// poll an account (Options.Leaser). *pgstore.Store satisfies it. Leases
// are judged by the database's clock; a lease that lapses can be taken by
// another node.
type Leaser interface {
	// AcquireLease takes the lease name for ttl, or extends it when this
	// node holds it. ok is false when another node holds it; the lease
	// then says which and how long it has left.
	AcquireLease(ctx context.Context, name string, ttl time.Duration) (l store.Lease, ok bool, err error)
	// RenewLeases extends every lease of ls this node still holds, in one
	// call, and returns them; a lease missing from the result is lost.
	RenewLeases(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]store.Lease, error)
	// ReleaseLeases gives up the leases of ls this node still holds.
	ReleaseLeases(ctx context.Context, ls []store.Lease) error
	// LookLeases tells who holds each lease of names and how long it
	// has left (Left 0 once lapsed; Holder "" once released or never
	// taken), one Lease per name, in one call that takes nothing: a node
	// waiting for the leases of thousands of accounts asks once for all
	// of them and acquires only those that are free.
	LookLeases(ctx context.Context, names []string) ([]store.Lease, error)
}

// DefaultLeaseTTL is the account lease's lifetime when Options.LeaseTTL is
// 0: a node that dies (kill -9, network loss) hands its accounts over
// within two of these.
const DefaultLeaseTTL = 30 * time.Second

// LeaseName returns the name of the lease of the account called account.
func LeaseName(account string) string { return "account:" + account }

// ErrLeaseHeld is wrapped by the error of PollOnce when another node holds
// the account's lease (it polls the account).
var ErrLeaseHeld = errors.New("poller: account polled by another node")

// errLeaseLost is the cancellation cause of a pass whose node lost the
// account's lease: the pass stops before any further commit or DELE.
var errLeaseLost = errors.New("poller: account lease lost")

// errLeaseReleased is the cancellation cause of a held lease's context
// once its last holder let it go.
var errLeaseReleased = errors.New("poller: account lease released")

// leaseOpTimeout bounds a lease call that has no deadline of its own (a
// release at shutdown).
const leaseOpTimeout = 10 * time.Second

// heldLease is an account lease this node holds. Its context ends (cause
// errLeaseLost) when the keeper finds it lost, or (errLeaseReleased) when
// its last holder released it.
type heldLease struct {
	lease store.Lease
	// deadline is when the lease surely still runs, by this node's clock:
	// the last successful acquire or renewal was sent at deadline - ttl,
	// and the database started the ttl later than that.
	deadline time.Time
	// refs counts the holders: a worker and a PollOnce may share it.
	refs int
	ctx  context.Context
	end  context.CancelCauseFunc
}

// leaseKeeper holds this node's account leases and renews them all in one
// call every ttl/3. A lease the renewal does not return is lost: its
// context ends, which stops the pass running under it. When renewals fail
// (the database is unreachable), a lease is given up before it could
// lapse: once the next renewal would come too late for its deadline.
// Released leases are given back in one call too.
type leaseKeeper struct {
	p   *Poller
	l   Leaser
	ttl time.Duration

	mu   sync.Mutex
	held map[string]*heldLease
	// releases are leases to give back at the next flush; releasing
	// names those being given back (closed when done), so that a new
	// acquire of the name waits for it and is not undone by it.
	releases  []store.Lease
	releasing map[string]chan struct{}
	running   bool
	done      chan struct{} // closed when the loop that runs exits
	kick      chan struct{} // 1 slot: releases wait
	failing   bool          // the last renewal failed (logs the change only)
	renewed   int           // renewals finished (tests wait for them)

	// watched are the leases other nodes hold that this node's workers
	// wait for, by lease name: one look (LookLeases) for all of them
	// wakes the workers of those found free. lookKick (1 slot) tells the
	// look loop that a watch was added; looking says it runs.
	watched     map[string]*watchedLease
	looking     bool
	lookKick    chan struct{}
	lookFailing bool // the last look failed (logs the change only)
	looks       int  // looks finished (tests wait for them)
}

// renewal is one RenewLeases call of the keeper, run on its own goroutine
// so that a call that hangs (a database cut off by the network) cannot
// keep the keeper from giving leases up before they lapse.
type renewal struct {
	hs      []*heldLease // the leases renewed, as held when it started
	sent    time.Time
	renewed []store.Lease
	err     error
}

// newLeaseKeeper returns the keeper of p's leases from l.
func newLeaseKeeper(p *Poller, l Leaser, ttl time.Duration) *leaseKeeper {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return &leaseKeeper{
		p: p, l: l, ttl: ttl,
		held:      map[string]*heldLease{},
		releasing: map[string]chan struct{}{},
		kick:      make(chan struct{}, 1),
		watched:   map[string]*watchedLease{},
		lookKick:  make(chan struct{}, 1),
	}
}

// renewEvery is the keeper's renewal period.
func (k *leaseKeeper) renewEvery() time.Duration { return k.ttl / 3 }

// hold takes the lease of account for this node, or shares it when this
// node holds it already. When another node holds it, h is nil and other
// tells who and for how long. release lets go of h (idempotent); the
// lease goes back to the database once its last holder let go.
func (k *leaseKeeper) hold(ctx context.Context, account string) (h *heldLease, release func(), other store.Lease, err error) {
	name := LeaseName(account)
	k.mu.Lock()
	for {
		if h = k.held[name]; h != nil {
			h.refs++
			k.mu.Unlock()
			return h, k.releaser(h), store.Lease{}, nil
		}
		ch := k.releasing[name]
		if ch == nil {
			break
		}
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, store.Lease{}, ctx.Err()
		}
		k.mu.Lock()
	}
	// A release still queued would undo the acquire: drop it, the lease
	// is acquired (extended, same token) instead.
	for i, l := range k.releases {
		if l.Name == name {
			k.releases = append(k.releases[:i], k.releases[i+1:]...)
			break
		}
	}
	k.mu.Unlock()

	sent := k.p.now()
	l, ok, err := k.l.AcquireLease(ctx, name, k.ttl)
	if err != nil {
		return nil, nil, store.Lease{}, fmt.Errorf("account %q: acquire lease: %w", account, err)
	}
	if !ok {
		return nil, nil, l, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if h = k.held[name]; h != nil {
		// Another holder acquired it meanwhile: the same lease, extended.
		h.refs++
		if d := sent.Add(k.ttl); d.After(h.deadline) {
			h.deadline = d
		}
		return h, k.releaser(h), store.Lease{}, nil
	}
	hctx, end := context.WithCancelCause(context.Background())
	h = &heldLease{lease: l, deadline: sent.Add(k.ttl), refs: 1, ctx: hctx, end: end}
	k.held[name] = h
	if !k.running {
		k.running = true
		k.done = make(chan struct{})
		go k.loop(k.done)
	}
	return h, k.releaser(h), store.Lease{}, nil
}

// releaser returns the release function of one hold of h.
func (k *leaseKeeper) releaser(h *heldLease) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			if k.held[h.lease.Name] != h {
				return // lost meanwhile
			}
			if h.refs--; h.refs > 0 {
				return
			}
			delete(k.held, h.lease.Name)
			h.end(errLeaseReleased)
			k.releases = append(k.releases, h.lease)
			select {
			case k.kick <- struct{}{}:
			default:
			}
		})
	}
}

// errRenewalHangs is why leases are given up while a renewal has not
// answered for a whole renewal period.
var errRenewalHangs = errors.New("lease renewal has not answered for a whole renewal period")

// loop renews the held leases every renewEvery and gives back released
// ones as they come, until nothing is held or queued. One renewal runs at
// a time; while it hangs, the leases it cannot save in time are given up.
func (k *leaseKeeper) loop(done chan struct{}) {
	defer close(done)
	next := k.p.now().Add(k.renewEvery())
	var inflight chan renewal // non-nil while a renewal runs
	for {
		t := k.p.timer(next.Sub(k.p.now()))
		select {
		case <-t.C():
			if inflight == nil {
				inflight = k.startRenewal()
			} else {
				k.mu.Lock()
				k.giveUpLocked(k.p.now(), errRenewalHangs)
				k.mu.Unlock()
			}
			next = k.p.now().Add(k.renewEvery())
		case r := <-inflight:
			t.Stop()
			inflight = nil
			k.finishRenewal(r)
		case <-k.kick:
			t.Stop()
		}
		k.flush()
		k.mu.Lock()
		// A renewal still running is left to finish on its own (its
		// channel is buffered): nothing is held that it could save.
		if len(k.held) == 0 && len(k.releases) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
	}
}

// startRenewal starts renewing every held lease in one call; it returns
// nil when none is held.
func (k *leaseKeeper) startRenewal() chan renewal {
	k.mu.Lock()
	r := renewal{hs: make([]*heldLease, 0, len(k.held))}
	ls := make([]store.Lease, 0, len(k.held))
	for _, h := range k.held {
		r.hs = append(r.hs, h)
		ls = append(ls, h.lease)
	}
	k.mu.Unlock()
	if len(ls) == 0 {
		return nil
	}
	out := make(chan renewal, 1)
	r.sent = k.p.now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), k.ttl)
		defer cancel()
		r.renewed, r.err = k.l.RenewLeases(ctx, ls, k.ttl)
		out <- r
	}()
	return out
}

// finishRenewal applies the outcome of a renewal. A lease it does not
// return is lost; when it failed, a lease whose deadline comes before the
// next renewal could is given up now, before it lapses.
func (k *leaseKeeper) finishRenewal(r renewal) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.renewed++
	if r.err != nil {
		if !k.failing {
			k.p.log.Warn("renewing account leases failed; polls stop before the leases lapse", "leases", len(r.hs), "err", r.err)
		}
		k.failing = true
		k.giveUpLocked(k.p.now(), r.err)
		return
	}
	if k.failing {
		k.p.log.Info("renewing account leases works again", "leases", len(r.hs))
	}
	k.failing = false
	got := make(map[string]store.Lease, len(r.renewed))
	for _, l := range r.renewed {
		got[l.Name] = l
	}
	for _, h := range r.hs {
		if k.held[h.lease.Name] != h {
			continue // released meanwhile
		}
		if l, ok := got[h.lease.Name]; ok && l.Token == h.lease.Token {
			h.lease, h.deadline = l, r.sent.Add(k.ttl)
			continue
		}
		k.loseLocked(h, nil)
	}
}

// giveUpLocked gives up every held lease that could lapse before a
// renewal started now would save it (renewals failing or hanging). k.mu
// held.
func (k *leaseKeeper) giveUpLocked(now time.Time, why error) {
	for _, h := range k.held {
		if !now.Add(k.renewEvery()).Before(h.deadline) {
			k.loseLocked(h, why)
		}
	}
}

// loseLocked gives up h, lost: its passes stop. k.mu held.
func (k *leaseKeeper) loseLocked(h *heldLease, why error) {
	delete(k.held, h.lease.Name)
	h.end(errLeaseLost)
	args := []any{"lease", h.lease.Name}
	if why != nil {
		args = append(args, "err", why)
	}
	k.p.log.Warn("account lease lost: this node stops polling the account", args...)
}

// flush gives back the released leases in one call.
func (k *leaseKeeper) flush() {
	k.mu.Lock()
	ls := k.releases
	k.releases = nil
	ch := make(chan struct{})
	for _, l := range ls {
		k.releasing[l.Name] = ch
	}
	k.mu.Unlock()
	if len(ls) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
	err := k.l.ReleaseLeases(ctx, ls)
	cancel()
	k.mu.Lock()
	for _, l := range ls {
		delete(k.releasing, l.Name)
	}
	k.mu.Unlock()
	close(ch)
	if err != nil {
		// They lapse after their ttl instead.
		k.p.log.Warn("releasing account leases failed; they lapse on their own", "leases", len(ls), "err", err)
	}
}

// wait waits until the keeper's loop, if any runs, has exited (every lease
// released and given back).
func (k *leaseKeeper) wait() {
	k.mu.Lock()
	done, running := k.done, k.running
	k.mu.Unlock()
	if running {
		<-done
	}
}

// heldLeaseKey is the context key of the lease a pass runs under.
type heldLeaseKey struct{}

// leaseCtx returns a context for a pass under h: canceled with
// errLeaseLost as its cause when h is lost, and with ctx.
func leaseCtx(ctx context.Context, h *heldLease) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancelCause(context.WithValue(ctx, heldLeaseKey{}, h))
	stop := context.AfterFunc(h.ctx, func() { cancel(context.Cause(h.ctx)) })
	return pctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// leaseLost reports whether the pass of ctx runs under a lease its node
// lost. It knows the moment the keeper finds the lease lost, before ctx's
// cancellation has propagated.
func leaseLost(ctx context.Context) bool {
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		return true
	}
	h, _ := ctx.Value(heldLeaseKey{}).(*heldLease)
	return h != nil && errors.Is(context.Cause(h.ctx), errLeaseLost)
}

// passStopped returns why the pass of ctx must stop (errLeaseLost, or
// ctx's cause), or nil while it may go on.
func passStopped(ctx context.Context) error {
	if leaseLost(ctx) {
		return errLeaseLost
	}
	return context.Cause(ctx)
}

// pollOnceLeased is PollOnce's pass of a under the account's lease: it
// fails with ErrLeaseHeld when another node holds it.
func (p *Poller) pollOnceLeased(ctx context.Context, a Account, progress func(done, total int)) (Result, error) {
	h, release, other, err := p.leases.hold(ctx, a.Name)
	if err != nil {
		return Result{Account: a.Name}, err
	}
	if h == nil {
		return Result{Account: a.Name}, fmt.Errorf("account %q: %w %q for %v more", a.Name, ErrLeaseHeld, other.Holder, other.Left.Round(time.Second))
	}
	defer release()
	pctx, cancel := leaseCtx(ctx, h)
	defer cancel()
	res, err := p.pass(pctx, a, progress)
	if err != nil && leaseLost(pctx) {
		err = fmt.Errorf("account %q: pass stopped: %w", a.Name, errLeaseLost)
	}
	return res, err
}

// logLease logs at debug level what a worker learnt of its lease.
func (p *Poller) logLease(account string, msg string, args ...any) {
	p.log.Log(context.Background(), slog.LevelDebug, msg, append([]any{"account", account}, args...)...)
}
