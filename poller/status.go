package poller

import (
	"context"
	"errors"
	"time"

	"github.com/popbridge/popbridge/store"
)

// persistTimeout bounds writing an account's status, also during shutdown.
const persistTimeout = 10 * time.Second

// acctState is the per-account state that outlives a worker (reloads
// restart workers). Fields other than lock, verified and suspects are
// guarded by Poller.mu; verified and suspects belong to whoever holds lock.
type acctState struct {
	// lock is held (a token in a 1-slot channel) by the one pass running
	// for the account.
	lock chan struct{}

	status      Status
	lastErrorAt time.Time
	upstream    int64 // messages listed at the last successful poll

	// lastLogin is when the last session logged in; loginDelay is the
	// server's LOGIN-DELAY from its CAPA.
	lastLogin  time.Time
	loginDelay time.Duration
	lastHint   time.Time
	// expireNoted remembers the EXPIRE value already warned about.
	expireNoted string
	// lastPrune is when the last pruning of expired tombstones ran.
	lastPrune time.Time

	// verified maps a UIDL whose LIST size differs from its ledger size to
	// the listed size at which its content was found to be already stored,
	// so the message is not fetched again at every poll.
	verified map[string]int64
	// suspects holds the messages that may have broken a retrieval, with
	// how many probes in a row each has failed. They are retrieved last,
	// one at a time, so one bad message cannot block the rest of the
	// maildrop.
	suspects map[string]int
}

// stateLocked returns (creating) the state of account name. p.mu held.
func (p *Poller) stateLocked(name string) *acctState {
	st := p.state[name]
	if st == nil {
		st = &acctState{
			lock:     make(chan struct{}, 1),
			verified: make(map[string]int64),
			suspects: make(map[string]int),
		}
		st.status.Account = name
		p.state[name] = st
	}
	return st
}

// accountState returns (creating) the state of account name.
func (p *Poller) accountState(name string) *acctState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stateLocked(name)
}

// loadStatuses seeds the in-memory counters from the store's persisted
// statuses, once. A failure is logged and retried at the next pass.
func (p *Poller) loadStatuses(ctx context.Context) {
	p.mu.Lock()
	done := p.statusOnce
	p.mu.Unlock()
	if done {
		return
	}
	sts, err := p.sink.AccountStatuses(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("loading account statuses", "err", err)
		}
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.statusOnce {
		return
	}
	p.statusOnce = true
	for _, ps := range sts {
		st := p.stateLocked(ps.Account)
		// Counters accumulated in this process before the load are added.
		st.status.Fetched += ps.Fetched
		st.status.Bytes += ps.FetchedBytes
		st.status.Skipped += ps.Skipped
		st.status.Anomalies = st.status.Anomalies.Add(ps.Anomalies)
		if st.status.LastAttempt.IsZero() {
			st.status.LastAttempt = ps.LastAttempt
			st.status.LastSuccess = ps.LastSuccess
			st.status.LastError = ps.LastError
			st.lastErrorAt = ps.LastErrorAt
			st.upstream = ps.UpstreamCount
		}
	}
}

// beginPass marks the account as polling.
func (p *Poller) beginPass(name string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(name)
	st.status.Polling = true
	st.status.LastAttempt = at
}

// endPass records the outcome of a pass in memory and in the store.
// canceled passes (shutdown) and passes stopped by a lost lease do not
// record an error.
func (p *Poller) endPass(ctx context.Context, name string, res Result, err error, listed bool) {
	now := p.now()
	p.mu.Lock()
	st := p.stateLocked(name)
	st.status.Polling = false
	st.status.Fetched += int64(res.Fetched)
	st.status.Bytes += res.Bytes
	st.status.Skipped += int64(res.Skipped)
	st.status.Anomalies = st.status.Anomalies.Add(res.Anomalies)
	unavailable := errors.Is(err, store.ErrUnavailable)
	switch {
	case err == nil:
		st.status.LastSuccess = now
		st.status.LastError = ""
		st.status.StoreUnavailable = false
	case ctx.Err() != nil, leaseLost(ctx):
		// Stopped (shutdown, or this node lost the account's lease: its
		// context ends a moment after the keeper finds it lost).
	case unavailable:
		// The store, not the account: no failure of the account (no
		// notice to its user), and the status cannot be saved anyway.
		st.status.StoreUnavailable = true
	default:
		st.status.LastError = err.Error()
		st.lastErrorAt = now
		st.status.StoreUnavailable = false
	}
	if listed {
		// What is left on the server: the listing less the deletions
		// the server confirmed.
		st.upstream = int64(res.Listed - res.Deleted)
	}
	ps := store.AccountStatus{
		Account:       name,
		LastAttempt:   st.status.LastAttempt,
		LastSuccess:   st.status.LastSuccess,
		LastError:     st.status.LastError,
		LastErrorAt:   st.lastErrorAt,
		Fetched:       st.status.Fetched,
		FetchedBytes:  st.status.Bytes,
		Skipped:       st.status.Skipped,
		UpstreamCount: st.upstream,
		Anomalies:     st.status.Anomalies,
	}
	loaded := p.statusOnce
	p.mu.Unlock()
	if !loaded || unavailable {
		// Counters not seeded from the store: persisting them would
		// overwrite the all-time totals with this process's. (An
		// unreachable store cannot take them either.)
		return
	}
	p.statuses.save(ctx, ps)
}

// setLease records what the worker of name learnt of the account's lease:
// which node holds it ("": unknown), and whether that is this node.
func (p *Poller) setLease(name, holder string, held bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(name)
	st.status.LeaseHolder, st.status.LeaseHeld = holder, held
}

// storeReachable clears the account's StoreUnavailable.
func (p *Poller) storeReachable(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stateLocked(name).status.StoreUnavailable = false
}

// setNextPoll records when the worker of name polls next.
func (p *Poller) setNextPoll(name string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stateLocked(name).status.NextPoll = at
}

// Status is the in-memory state of one account's poller. Counters are all
// time (loaded from the store's persisted status).
type Status struct {
	Account     string
	LastAttempt time.Time
	LastSuccess time.Time
	// LastError is the last poll's error, with the server's words; "" after
	// a successful poll.
	LastError string
	Fetched   int64
	Skipped   int64
	Bytes     int64
	// Anomalies counts identity anomalies, all time.
	Anomalies store.IdentityAnomalies
	// Polling is true while a poll of the account is running.
	Polling bool
	// NextPoll is when the account's worker will poll next (zero when no
	// worker runs).
	NextPoll time.Time
	// Waiting is true while a poll waits for a connection slot
	// (MaxConnections, MaxConnectionsPerHost).
	Waiting bool
	// LeaseHolder is the node that held the account's lease when this
	// node last looked (Options.Leaser; "" without leasing or before the
	// first look); LeaseHeld is true while that is this node, the one
	// polling the account.
	LeaseHolder string
	LeaseHeld   bool
	// StoreUnavailable is true while the account's polls pause because
	// the store's database cannot be reached (store.ErrUnavailable): they
	// are retried soon, and nothing is deleted upstream meanwhile.
	StoreUnavailable bool
}

// StateWaiting is what State says of an account waiting for a connection
// slot.
const StateWaiting = "waiting for a connection slot"

// StateStoreUnavailable is what State says of an account whose polls pause
// while the store's database cannot be reached.
const StateStoreUnavailable = "store unavailable"

// State sums up what the account's poller is doing: StateWaiting,
// "polling", StateStoreUnavailable, "polled by node NAME" (another node
// holds its lease), or "idle".
func (s Status) State() string {
	switch {
	case s.Waiting:
		return StateWaiting
	case s.Polling:
		return "polling"
	case s.StoreUnavailable:
		return StateStoreUnavailable
	case !s.LeaseHeld && s.LeaseHolder != "":
		return "polled by node " + s.LeaseHolder
	}
	return "idle"
}

// Status returns the in-memory status of every configured account, in
// configuration order.
func (p *Poller) Status() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.accounts))
	for _, a := range p.accounts {
		st := p.stateLocked(a.Name).status
		st.Account = a.Name
		if p.workers[a.Name] == nil {
			st.NextPoll = time.Time{}
		}
		out = append(out, st)
	}
	return out
}
