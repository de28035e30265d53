package poller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Account is one upstream POP3 account, already validated by bridge.
type Account struct {
	// Name identifies the account; it is the ledger key, so renaming an
	// account makes its mail look new.
	Name string
	// User is the local user whose mailbox receives the account's mail.
	User string
	Host string
	Port int
	// TLS is "implicit", "starttls" or "none".
	TLS           string
	TLSCAFile     string
	TLSSkipVerify bool
	Username      string
	// Secret returns the password or bearer token; it is never logged.
	Secret func(ctx context.Context) (string, error)
	// Auth is "user", "apop", "plain" or "xoauth2".
	Auth string
	// MaxMessageSize is the largest message fetched, in bytes; larger ones
	// are recorded as skipped. 0 means no limit.
	MaxMessageSize int64
	// PollInterval is the time between polls; 0 means 5 minutes.
	PollInterval time.Duration
	// Folder is the mailbox new mail lands in; "" means INBOX.
	Folder string
	// LeaveOnServer keeps fetched messages upstream; false deletes each
	// message right after it is durably stored.
	LeaveOnServer bool
	// DeleteAfter, with LeaveOnServer, deletes messages stored longer ago
	// than this. 0 means never.
	DeleteAfter time.Duration
	// DeleteOnExpunge deletes a message upstream at the next poll once it
	// has been expunged from every local mailbox.
	DeleteOnExpunge bool
	// Trace logs the POP3 exchange of every session, secrets and message
	// bodies left out (trace.go).
	Trace bool
}

// folder returns the destination mailbox of a.
func (a Account) folder() string {
	if a.Folder == "" {
		return "INBOX"
	}
	return a.Folder
}

// interval returns the poll interval of a.
func (a Account) interval() time.Duration {
	if a.PollInterval <= 0 {
		return defaultPollInterval
	}
	return a.PollInterval
}

// sameConfig reports whether a and b are configured alike, ignoring Secret
// (a func, not comparable): such a reload only swaps the secret.
func sameConfig(a, b Account) bool {
	a.Secret, b.Secret = nil, nil
	return reflect.DeepEqual(a, b)
}

// Options configures a Poller.
type Options struct {
	// Sink receives the mail and keeps the ledger; required.
	Sink Sink
	// Accounts is the initial set of accounts (see Poller.SetAccounts).
	Accounts []Account
	// Logger receives the poller's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Dialer opens upstream connections; nil means a net.Dialer. Tests
	// inject one to reach in-process servers.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxConnections caps the POP3 sessions (logins included) open at
	// once over all accounts; 0 means DefaultMaxConnections, a negative
	// value no cap. A poll waits for a slot (see Status.Waiting).
	MaxConnections int
	// MaxConnectionsPerHost caps the sessions open at once towards one
	// server (host and port as configured); 0 means
	// DefaultMaxConnectionsPerHost, a negative value no cap.
	MaxConnectionsPerHost int
	// AfterPoll, when set, is called by an account's worker after each
	// scheduled poll (not PollOnce) with its result and error, from the
	// worker's goroutine; it must not block for long. nil: none.
	AfterPoll func(a Account, res Result, err error)
	// Leaser, when set, makes this node poll an account only while it
	// holds the account's lease (LeaseName), so that of several nodes on
	// one store exactly one polls each account; nil: no leasing (one node,
	// the SQLite store).
	Leaser Leaser
	// LeaseTTL is the lifetime of an account lease; 0 means
	// DefaultLeaseTTL. Held leases are renewed together every LeaseTTL/3;
	// another node takes an account over within two LeaseTTLs of its
	// holder's death.
	LeaseTTL time.Duration
}

// connCap turns an Options cap into a connLimiter one (0: none).
func connCap(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Result reports one poll pass.
type Result struct {
	Account string
	// Fetched and Bytes count the messages newly stored.
	Fetched int
	Bytes   int64
	// Skipped counts messages newly recorded as too large.
	Skipped int
	// Deleted counts messages whose deletion the server confirmed.
	Deleted int
	// Listed is the number of messages on the server.
	Listed int
	// Anomalies counts what the pass found wrong with the server's
	// identities (see store.IdentityAnomalies); none loses mail.
	Anomalies store.IdentityAnomalies
}

// add accumulates r2 into r.
func (r *Result) add(r2 Result) {
	r.Fetched += r2.Fetched
	r.Bytes += r2.Bytes
	r.Skipped += r2.Skipped
	r.Deleted += r2.Deleted
	r.Listed += r2.Listed
	r.Anomalies = r.Anomalies.Add(r2.Anomalies)
}

// dialFunc opens an authenticated session for an account.
type dialFunc func(ctx context.Context, a Account) (popSession, error)

// Poller runs one worker per upstream account. It is safe for concurrent
// use. Create it with New, run it with Run.
type Poller struct {
	sink  Sink
	log   *slog.Logger
	now   func() time.Time
	dial  dialFunc
	timer func(d time.Duration) timer // seam for tests
	rand  func() float64              // seam for tests; [0,1)
	// limits caps the sessions open at once; dial holds a slot per
	// session.
	limits *connLimiter
	// sessCfg tunes the sessions dial opens (tests shorten timeouts).
	sessCfg sessionConfig
	// connect opens a session without taking a connection slot.
	connect dialFunc
	// afterPoll is Options.AfterPoll.
	afterPoll func(a Account, res Result, err error)
	// leases holds this node's account leases; nil without
	// Options.Leaser.
	leases *leaseKeeper

	mu         sync.Mutex
	accounts   []Account
	state      map[string]*acctState // by account name; kept across reloads
	workers    map[string]*worker    // running workers, while Run runs
	running    bool
	runCtx     context.Context
	wg         sync.WaitGroup
	statusOnce bool // persisted statuses loaded
	// statuses saves account statuses (statuswrite.go).
	statuses statusWriter
}

// New returns a Poller for opts. It has no side effects: nothing connects
// until Run or PollOnce.
func New(opts Options) *Poller {
	p := &Poller{
		sink:  opts.Sink,
		log:   opts.Logger,
		now:   opts.Now,
		timer: newRealTimer,
		rand:  rand.Float64,
		state: make(map[string]*acctState),

		afterPoll: opts.AfterPoll,
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p.statuses = statusWriter{sink: p.sink, log: p.log, every: statusFlushEvery}
	if p.now == nil {
		p.now = time.Now
	}
	p.limits = newConnLimiter(connCap(opts.MaxConnections, DefaultMaxConnections),
		connCap(opts.MaxConnectionsPerHost, DefaultMaxConnectionsPerHost))
	p.sessCfg.Dial = opts.Dialer
	p.connect = func(ctx context.Context, a Account) (popSession, error) {
		cfg := p.sessCfg
		cfg.Logger = p.log.With("account", a.Name)
		s, err := openSession(ctx, a, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	p.dial = p.limited(p.connect)
	if opts.Leaser != nil {
		p.leases = newLeaseKeeper(p, opts.Leaser, opts.LeaseTTL)
	}
	p.accounts = append([]Account(nil), opts.Accounts...)
	for _, a := range p.accounts {
		p.stateLocked(a.Name)
	}
	return p
}

// limited wraps dial so that every session holds a connection slot from
// before it dials until it ends; while it waits, the account's status says
// so.
func (p *Poller) limited(dial dialFunc) dialFunc {
	return func(ctx context.Context, a Account) (popSession, error) {
		if ctx.Value(heldSlotKey{}) != nil {
			return dial(ctx, a) // runPass holds the slot
		}
		release, err := p.acquireSlot(ctx, a)
		if err != nil {
			return nil, err
		}
		s, err := dial(ctx, a)
		if err != nil {
			release()
			return nil, err
		}
		return &limitedSession{popSession: s, release: release}, nil
	}
}

// heldSlotKey marks the context of a pass that already holds its
// connection slot (runPass takes it before it reads the ledger).
type heldSlotKey struct{}

// acquireSlot waits for a connection slot for a session of a, with the
// account's status saying so meanwhile, and returns the function that
// gives it back.
func (p *Poller) acquireSlot(ctx context.Context, a Account) (release func(), err error) {
	host := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	release, err = p.limits.acquireUrgent(ctx, host, isUrgent(ctx), func(waiting bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.stateLocked(a.Name).status.Waiting = waiting
	})
	if err != nil {
		return nil, opErr(a, "connect", fmt.Errorf("waiting for a connection slot: %w", err))
	}
	return release, nil
}

// SetConnectionLimits changes the caps of Options.MaxConnections and
// Options.MaxConnectionsPerHost (same meaning of 0 and negative values)
// while the Poller runs: sessions already open stay, new ones wait until
// they fit.
func (p *Poller) SetConnectionLimits(max, perHost int) {
	p.limits.setLimits(connCap(max, DefaultMaxConnections), connCap(perHost, DefaultMaxConnectionsPerHost))
}

// ConnectionLimits returns the caps in effect on the sessions open at once,
// in total and per host; 0 means no cap.
func (p *Poller) ConnectionLimits() (max, perHost int) {
	p.limits.mu.Lock()
	defer p.limits.mu.Unlock()
	return p.limits.max, p.limits.perHost
}

// ConnectionStats returns how many upstream POP3 sessions are open and how
// many polls wait for a connection slot.
func (p *Poller) ConnectionStats() (open, waiting int) {
	return p.limits.stats()
}

// errUnknownAccount is returned by PollOnce for an account not configured.
var errUnknownAccount = errors.New("poller: unknown account")

// Run starts one worker per account and returns once ctx is done and every
// worker has stopped. On cancellation no new poll starts; a poll in flight
// commits what it has already retrieved (never half a batch) and closes the
// connection without QUIT, so no deletion takes effect for it. Run returns
// nil after a cancellation, or an error if the Poller is already running.
func (p *Poller) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("poller: already running")
	}
	p.running = true
	p.runCtx = ctx
	p.workers = make(map[string]*worker)
	for _, a := range p.accounts {
		p.startWorkerLocked(a)
	}
	p.mu.Unlock()

	p.loadStatuses(ctx)

	<-ctx.Done()
	p.mu.Lock()
	for _, w := range p.workers {
		w.cancel()
	}
	p.workers = nil
	p.running = false
	p.runCtx = nil
	p.mu.Unlock()
	p.wg.Wait()
	p.statuses.flush(ctx)
	if p.leases != nil {
		// The workers released their leases: wait until they are given
		// back, so another node takes the accounts over at once.
		p.leases.wait()
	}
	return nil
}

// PollOnce runs one synchronous poll pass of account, or of every account
// in turn when account is "". progress, if not nil, is called with the
// number of messages handled so far and the number to fetch; it is called
// from one goroutine at a time. A pass never runs concurrently with another
// pass of the same account (a running worker's poll is waited for). With
// Options.Leaser the pass holds the account's lease (sharing it with this
// node's worker); when another node holds it the pass fails with
// ErrLeaseHeld. For several accounts the counts are summed and the errors
// joined.
func (p *Poller) PollOnce(ctx context.Context, account string, progress func(done, total int)) (Result, error) {
	p.mu.Lock()
	var accts []Account
	for _, a := range p.accounts {
		if account == "" || a.Name == account {
			accts = append(accts, a)
		}
	}
	p.mu.Unlock()
	if account != "" && len(accts) == 0 {
		return Result{Account: account}, fmt.Errorf("%w %q", errUnknownAccount, account)
	}
	defer p.statuses.flush(ctx)
	if len(accts) == 1 {
		return p.passOnce(ctx, accts[0], progress)
	}
	var sum Result
	var errs []error
	for _, a := range accts {
		r, err := p.passOnce(ctx, a, progress)
		sum.add(r)
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return sum, errors.Join(errs...)
}

// passOnce is one pass of PollOnce: under the account's lease with a
// Leaser.
func (p *Poller) passOnce(ctx context.Context, a Account, progress func(done, total int)) (Result, error) {
	if p.leases != nil {
		return p.pollOnceLeased(ctx, a, progress)
	}
	return p.pass(ctx, a, progress)
}

// PollNow asks the running worker of account for an early poll: an
// operator's request, honoured also while the account backs off after a
// refused login. It does not block; the poll still waits for the server's
// LOGIN-DELAY and for a connection slot. Without a running worker (Run not
// running, or unknown account) it does nothing.
func (p *Poller) PollNow(account string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.workers[account]; w != nil {
		w.request(now, true)
	}
}

// PollAll asks every running worker for an early poll, as PollNow does
// (SIGUSR1). The polls are spread at random over 50 ms per account, so
// that 1,000 accounts do not all log in at the same instant.
func (p *Poller) PollAll() {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	spread := float64(time.Duration(len(p.workers)) * staggerStep)
	for _, a := range p.accounts {
		if w := p.workers[a.Name]; w != nil {
			w.request(now.Add(time.Duration(spread*p.rand())), true)
		}
	}
}

// Hint tells the poller that an IMAP client looked at user's mailbox. Each
// account delivering into that mailbox gets an early poll, at most once per
// 15 seconds per account, so a message mailed a moment ago shows up when the
// user refreshes. An account whose last login was refused (a wrong
// password, a disabled account) ignores hints until its backoff has passed:
// clients refreshing every few seconds must not make popbridge retry the
// login so often that the provider locks the account. It does not block.
func (p *Poller) Hint(user, mailbox string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.accounts {
		if a.User != user || !sameMailbox(a.folder(), mailbox) {
			continue
		}
		w := p.workers[a.Name]
		if w == nil {
			continue
		}
		st := p.stateLocked(a.Name)
		if !st.lastHint.IsZero() && now.Sub(st.lastHint) < hintEvery {
			continue
		}
		if w.request(now, false) {
			st.lastHint = now
		}
	}
}

// sameMailbox compares mailbox names, INBOX (and its children's first
// level) case-insensitively as IMAP does.
func sameMailbox(a, b string) bool {
	canon := func(s string) string {
		if strings.EqualFold(s, "INBOX") {
			return "INBOX"
		}
		if len(s) > 6 && strings.EqualFold(s[:6], "INBOX/") {
			return "INBOX/" + s[6:]
		}
		return s
	}
	return canon(a) == canon(b)
}

// SetAccounts replaces the account set (a configuration reload). While Run
// runs, workers of removed accounts stop, new accounts get a worker, and
// accounts whose configuration changed get a new worker (the old one
// finishes its poll first; passes of one account never overlap). An account
// whose configuration is unchanged keeps its worker and schedule and only
// takes the new Secret.
func (p *Poller) SetAccounts(accts []Account) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts = append([]Account(nil), accts...)
	keep := make(map[string]bool, len(accts))
	for _, a := range p.accounts {
		keep[a.Name] = true
		p.stateLocked(a.Name)
		if !p.running {
			continue
		}
		p.applyAccountLocked(a)
	}
	for name, w := range p.workers {
		if !keep[name] {
			w.cancel()
			delete(p.workers, name)
		}
	}
}

// CheckLogin connects to a's server, negotiates TLS, authenticates and
// QUITs. The error names the account and carries the server's reply; it
// never contains the secret. It waits for a connection slot first, like a
// poll; timeout (> 0) bounds the check once it has its slot.
func (p *Poller) CheckLogin(ctx context.Context, a Account, timeout time.Duration) error {
	ctx, done, err := p.checkSlot(ctx, a, timeout)
	if err != nil {
		return err
	}
	defer done()
	s, err := p.connect(ctx, a)
	if err != nil {
		return err
	}
	// A login counts for the server's LOGIN-DELAY like a poll's.
	p.noteLogin(a.Name, p.now(), s.Caps())
	if err := s.Quit(ctx); err != nil {
		return accountErr(a, "quit", err)
	}
	return nil
}

// CheckServer connects to a's server, negotiates TLS and reads CAPA,
// without logging in, then QUITs: the check of a server whose users'
// credentials are not configured (provider mode). Like CheckLogin it
// waits for a connection slot first; timeout (> 0) bounds it once it has
// one. The error names the account and carries the hints of a poll's.
func (p *Poller) CheckServer(ctx context.Context, a Account, timeout time.Duration) error {
	ctx, done, err := p.checkSlot(ctx, a, timeout)
	if err != nil {
		return err
	}
	defer done()
	cfg := p.sessCfg
	cfg.Logger = p.log.With("account", a.Name)
	return probeServer(ctx, a, cfg)
}

// checkSlot waits for a connection slot for a check of a (someone waits
// for the answer: ahead of background polls) and bounds the check by
// timeout (> 0) from then on. done releases both.
func (p *Poller) checkSlot(ctx context.Context, a Account, timeout time.Duration) (context.Context, func(), error) {
	release, err := p.acquireSlot(withUrgent(ctx), a)
	if err != nil {
		return ctx, nil, err
	}
	if timeout <= 0 {
		return ctx, release, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); release() }, nil
}

// accountErr wraps err so that it names the account, unless it already is
// an *AccountError.
func accountErr(a Account, op string, err error) error {
	var ae *AccountError
	if errors.As(err, &ae) {
		return err
	}
	return fmt.Errorf("account %q: %s: %w", a.Name, op, err)
}

// applyAccountLocked gives the running poller account a: a worker is
// started for a new account; one whose configuration is unchanged keeps
// its worker and schedule and only takes the new Secret; a changed one is
// restarted. Must be called with p.mu held while p.running.
func (p *Poller) applyAccountLocked(a Account) {
	switch w := p.workers[a.Name]; {
	case w == nil:
		p.startWorkerLocked(a)
	case sameConfig(w.account(), a):
		w.setAccount(a)
	default:
		w.cancel()
		p.startWorkerLocked(a)
	}
}
