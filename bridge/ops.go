package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// One-shot operations for the command line (`popbridge poll`, `check`,
// `status`). They open what they need and close it before returning; they
// start no listeners.

// CheckTimeout bounds one account's login check.
const CheckTimeout = 30 * time.Second

// CheckResult is the outcome of trying one account's upstream login.
type CheckResult struct {
	Account string
	Server  string // host:port
	TLS     string
	Elapsed time.Duration
	Err     error // nil when connect, TLS and login succeeded
}

// ProviderCheckName names the result of Check for the [provider] server.
const ProviderCheckName = "[provider]"

// Check tries every account's upstream login (connect, TLS, authenticate,
// QUIT) concurrently, within the [poller] connection caps, and returns one
// result per account, in configuration order; with provider mode on, a
// last result, named "[provider]", checks its server as far as it can be
// without a user's password (connect, TLS, CAPA, QUIT). CheckTimeout bounds each
// login once it has its connection slot. It does not open the store. cfg
// must have passed Validate.
func Check(ctx context.Context, cfg *Config, logger *slog.Logger) []CheckResult {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxConns, perHost := cfg.Poller.pollerLimits()
	p := poller.New(poller.Options{Logger: logger.With(LogKeyComponent, "poller"),
		MaxConnections: maxConns, MaxConnectionsPerHost: perHost})
	results := make([]CheckResult, len(cfg.Accounts), len(cfg.Accounts)+1)
	var wg sync.WaitGroup
	if pc := cfg.Provider; pc.Enabled() {
		results = append(results, CheckResult{Account: ProviderCheckName, Server: net.JoinHostPort(pc.Host, strconv.Itoa(pc.Port)), TLS: pc.TLS})
		r := &results[len(results)-1]
		wg.Go(func() {
			start := time.Now()
			r.Err = p.CheckServer(ctx, poller.Account{Name: ProviderCheckName, Host: pc.Host, Port: pc.Port, TLS: pc.TLS,
				TLSCAFile: cfg.Path(pc.TLSCAFile), TLSSkipVerify: pc.TLSSkipVerify}, CheckTimeout)
			r.Elapsed = time.Since(start)
		})
	}
	for i, a := range cfg.Accounts {
		results[i] = CheckResult{Account: a.Name, Server: net.JoinHostPort(a.Host, strconv.Itoa(a.Port)), TLS: a.TLS}
		wg.Go(func() {
			start := time.Now()
			results[i].Err = p.CheckLogin(ctx, cfg.pollerAccount(a), CheckTimeout)
			results[i].Elapsed = time.Since(start)
		})
	}
	wg.Wait()
	return results
}

// PollOnce opens the store, makes sure the users exist, and runs one
// synchronous poll of account ("" = every account, one after the other),
// reporting progress (messages done of total for the account being
// fetched) to progress (may be nil). Per-account errors are joined; the
// results of the accounts that were polled are returned in any case.
func PollOnce(ctx context.Context, cfg *Config, logger *slog.Logger, account string, progress func(account string, done, total int)) ([]poller.Result, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var accounts []AccountConfig
	if account == "" {
		accounts = cfg.Accounts
	} else {
		a, ok := cfg.Account(account)
		if !ok {
			return nil, fmt.Errorf("no account %q (configured: %s)", account, strings.Join(names(cfg.Accounts, func(a AccountConfig) string { return a.Name }), ", "))
		}
		accounts = []AccountConfig{a}
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	maxConns, perHost := cfg.Poller.pollerLimits()
	p := poller.New(poller.Options{
		Sink:                  st,
		Leaser:                leaserOf(st),
		LeaseTTL:              cfg.Store.PollLease.Value,
		Accounts:              cfg.pollerAccounts(),
		Logger:                logger.With(LogKeyComponent, "poller"),
		MaxConnections:        maxConns,
		MaxConnectionsPerHost: perHost,
	})
	var results []poller.Result
	var errs []error
	for _, a := range accounts {
		var fn func(done, total int)
		if progress != nil {
			fn = func(done, total int) { progress(a.Name, done, total) }
		}
		res, err := p.PollOnce(ctx, a.Name, fn)
		if res.Account == "" {
			res.Account = a.Name
		}
		results = append(results, res)
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := st.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	return results, errors.Join(errs...)
}

// StatusReport is what `popbridge status` prints.
type StatusReport struct {
	Accounts []AccountReport
	Users    []UserReport
}

// AccountReport is one account's persisted poller state.
type AccountReport struct {
	Name   string
	User   string // "" for an account found in the store but no longer configured
	Status store.AccountStatus
	Polled bool // false when the store has no status for it yet
}

// UserReport lists one user's mailboxes with their counts.
type UserReport struct {
	Name      string
	Mailboxes []MailboxReport
}

// MailboxReport is one mailbox's counts.
type MailboxReport struct {
	Name   string
	Counts store.MailboxCounts
}

// ReadStatus opens the store read-only and reads the persisted state of
// every account and the mailbox counts of every configured user. A
// read-only store takes no lock on the data directory, so ReadStatus works
// while `popbridge serve` (or `poll`) runs on it, and it sees everything
// they have committed. It creates nothing: when the database does not
// exist yet the error wraps fs.ErrNotExist.
func ReadStatus(ctx context.Context, cfg *Config, logger *slog.Logger) (*StatusReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{readOnly: true})
	if err != nil {
		return nil, err // store.Open's error says "open store read-only: ..."
	}
	defer st.Close()
	sts, err := st.AccountStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("read account statuses: %w", err)
	}
	byName := map[string]store.AccountStatus{}
	for _, s := range sts {
		byName[s.Account] = s
	}
	rep := &StatusReport{}
	for _, a := range cfg.Accounts {
		s, ok := byName[a.Name]
		delete(byName, a.Name)
		rep.Accounts = append(rep.Accounts, AccountReport{Name: a.Name, User: a.User, Status: s, Polled: ok})
	}
	for _, s := range sts {
		if cfg.Provider.Enabled() && strings.HasPrefix(s.Account, ProviderAccountPrefix) {
			continue // listed by `popbridge users`
		}
		if _, left := byName[s.Account]; left {
			rep.Accounts = append(rep.Accounts, AccountReport{Name: s.Account, Status: s, Polled: true})
		}
	}
	for _, uc := range cfg.Users {
		u, err := st.UserByName(ctx, uc.Name)
		if errors.Is(err, store.ErrNotFound) {
			rep.Users = append(rep.Users, UserReport{Name: uc.Name})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read user %q: %w", uc.Name, err)
		}
		mbs, err := st.Mailboxes(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("list mailboxes of %q: %w", uc.Name, err)
		}
		ur := UserReport{Name: uc.Name}
		for _, mb := range mbs {
			if mb.NoSelect {
				continue
			}
			c, err := st.Counts(ctx, u.ID, mb.ID)
			if err != nil {
				return nil, fmt.Errorf("count %s of %q: %w", mb.Name, uc.Name, err)
			}
			ur.Mailboxes = append(ur.Mailboxes, MailboxReport{Name: mb.Name, Counts: c})
		}
		rep.Users = append(rep.Users, ur)
	}
	return rep, nil
}
