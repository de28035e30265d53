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
	"strings"
	"sync"
	"time"
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
}

// add accumulates r2 into r.
func (r *Result) add(r2 Result) {
	r.Fetched += r2.Fetched
	r.Bytes += r2.Bytes
	r.Skipped += r2.Skipped
	r.Deleted += r2.Deleted
	r.Listed += r2.Listed
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
	// Polling is true while a poll of the account is running.
	Polling bool
	// NextPoll is when the account's worker will poll next (zero when no
	// worker runs).
	NextPoll time.Time
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

	mu         sync.Mutex
	accounts   []Account
	state      map[string]*acctState // by account name; kept across reloads
	workers    map[string]*worker    // running workers, while Run runs
	running    bool
	runCtx     context.Context
	wg         sync.WaitGroup
	statusOnce bool // persisted statuses loaded
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
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if p.now == nil {
		p.now = time.Now
	}
	dialer := opts.Dialer
	p.dial = func(ctx context.Context, a Account) (popSession, error) {
		s, err := dialSession(ctx, a, dialer, p.log.With("account", a.Name))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	p.accounts = append([]Account(nil), opts.Accounts...)
	for _, a := range p.accounts {
		p.stateLocked(a.Name)
	}
	return p
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
	return nil
}

// PollOnce runs one synchronous poll pass of account, or of every account
// in turn when account is "". progress, if not nil, is called with the
// number of messages handled so far and the number to fetch; it is called
// from one goroutine at a time. A pass never runs concurrently with another
// pass of the same account (a running worker's poll is waited for). For
// several accounts the counts are summed and the errors joined.
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
	if len(accts) == 1 {
		return p.pass(ctx, accts[0], progress)
	}
	var sum Result
	var errs []error
	for _, a := range accts {
		r, err := p.pass(ctx, a, progress)
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

// PollNow asks the running worker of account for an early poll. It does not
// block; the poll still waits for the server's LOGIN-DELAY. Without a
// running worker (Run not running, or unknown account) it does nothing.
func (p *Poller) PollNow(account string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.workers[account]; w != nil {
		w.poke()
	}
}

// Hint tells the poller that an IMAP client looked at user's mailbox. Each
// account delivering into that mailbox gets an early poll, at most once per
// 15 seconds per account, so a message mailed a moment ago shows up when the
// user refreshes. It does not block.
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
		st.lastHint = now
		w.poke()
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
		w := p.workers[a.Name]
		switch {
		case w == nil:
			p.startWorkerLocked(a)
		case sameConfig(w.account(), a):
			w.setAccount(a)
		default:
			w.cancel()
			p.startWorkerLocked(a)
		}
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
// never contains the secret.
func (p *Poller) CheckLogin(ctx context.Context, a Account) error {
	s, err := p.dial(ctx, a)
	if err != nil {
		return err
	}
	if err := s.Quit(ctx); err != nil {
		return accountErr(a, "quit", err)
	}
	return nil
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
