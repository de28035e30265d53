package bridge

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// Provider mode ([provider]): IMAP logins that are not [[user]] entries
// are checked against one POP3 service. The first success creates the
// local user (INBOX and the special-use mailboxes) and an account
// "provider:LOGIN" polled by a poller of its own, whose connection cap is
// max_upstream_connections and whose metrics are aggregated (no series
// per provider user). Passwords are never stored in clear: the login
// cache keeps an argon2id verifier in memory; credentials = "encrypted"
// keeps the POP password sealed in the store (provider_users), "session"
// in memory only while the user has a session and for poll_after_logout.
// A background poll whose login is refused stops polling that user
// ("needs_login", credential dropped) until their next IMAP login.

// maxProviderLogin is the longest login accepted as a provider login, in
// bytes (a store user name may be longer; a POP user name rarely is).
const maxProviderLogin = 255

// providerCheckTimeout bounds one login check against the POP server once
// it has a connection slot.
const providerCheckTimeout = 30 * time.Second

// provider implements imapfront.ExternalLogin and ExternalPresence, and
// imapfront.Hinter for provider users.
type provider struct {
	cfg    ProviderConfig
	caFile string // tls_ca_file resolved against the config file
	log    *slog.Logger
	st     Backend
	poller *poller.Poller
	aead   cipher.AEAD // nil with credentials = "session"
	m      *providerMetrics
	now    func() time.Time
	// hashSem bounds concurrent argon2id computations (19 MiB each).
	hashSem chan struct{}

	mu    sync.Mutex
	users map[string]*provUser // by login
	// afterLogout replaces time.AfterFunc (tests).
	afterLogout func(d time.Duration, f func()) interface{ Stop() bool }

	// shared: other nodes use the store too (PostgreSQL): provider
	// users they create or change are taken over by sync.
	shared bool
	// syncEvery is how often sync runs on a shared store: [store]
	// poll_lease, the time within which accounts move between nodes.
	syncEvery time.Duration

	cancel context.CancelFunc
	done   chan struct{}
}

// provUser is what the provider keeps in memory of one user.
type provUser struct {
	// active: the account is in the poller.
	active     bool
	needsLogin bool
	// secret is the POP password with credentials = "session" while the
	// user is polled; sealed the credential kept in the store otherwise.
	secret string
	sealed []byte
	// verifier is an argon2id hash of the password the POP server last
	// accepted, at verifiedAt; "" when none.
	verifier   string
	verifiedAt time.Time
	// pending is closed when the verifier being computed for the last
	// accepted login is kept (see rememberVerifier); nil when none is.
	pending chan struct{}
	// present: the user has IMAP sessions; logout ends polling later
	// (credentials = "session").
	present     bool
	logoutTimer interface{ Stop() bool }
	// gen counts the logins that gave the user a credential; usedGen is
	// the gen of the credential the last poll took. A refusal of a poll
	// that took an older credential than the newest says nothing about
	// the newest (the user logged in with a new password meanwhile).
	gen, usedGen uint64
}

// newProvider makes the provider of cfg (which must be enabled) over st.
// Nothing connects until start.
func newProvider(cfg *Config, st Backend, m *providerMetrics, log *slog.Logger) *provider {
	pc := cfg.Provider
	p := &provider{
		cfg:       pc,
		caFile:    cfg.Path(pc.TLSCAFile),
		log:       log,
		st:        st,
		m:         m,
		now:       time.Now,
		hashSem:   make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		syncEvery: cfg.Store.PollLease.Value,
		shared:    leaserOf(st) != nil,
		users:     make(map[string]*provUser),
		afterLogout: func(d time.Duration, f func()) interface{ Stop() bool } {
			return time.AfterFunc(d, f)
		},
	}
	if p.syncEvery <= 0 {
		p.syncEvery = DefaultPollLease
	}
	limit := pc.MaxUpstreamConnections
	if limit == 0 {
		limit = -1
	}
	p.poller = poller.New(poller.Options{
		Sink:                  &providerSink{Backend: st, m: m},
		Leaser:                leaserOf(st),
		LeaseTTL:              cfg.Store.PollLease.Value,
		Logger:                log,
		MaxConnections:        limit,
		MaxConnectionsPerHost: -1,
		AfterPoll:             p.afterPoll,
	})
	return p
}

// accountName is the account of provider user login.
func accountName(login string) string { return ProviderAccountPrefix + login }

// account is the poller account of provider user login.
func (p *provider) account(login string, secret func(context.Context) (string, error)) poller.Account {
	c := p.cfg
	return poller.Account{
		Name:            accountName(login),
		User:            login,
		Host:            c.Host,
		Port:            c.Port,
		TLS:             c.TLS,
		TLSCAFile:       p.caFile,
		TLSSkipVerify:   c.TLSSkipVerify,
		Username:        expandUsername(c.Username, login),
		Secret:          secret,
		Auth:            c.Auth,
		MaxMessageSize:  c.MaxMessageSize.Bytes,
		PollInterval:    c.PollInterval.Value,
		Folder:          c.Folder,
		LeaveOnServer:   c.LeaveOnServer,
		DeleteAfter:     c.DeleteAfter.Value,
		DeleteOnExpunge: c.DeleteOnExpunge,
	}
}

// keptSecret returns the Secret of a polled provider user: the password in
// memory (session) or the sealed one, opened at each poll (encrypted).
func (p *provider) keptSecret(login string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		p.mu.Lock()
		u := p.users[login]
		var secret string
		var sealed []byte
		if u != nil {
			secret, sealed = u.secret, u.sealed
			u.usedGen = u.gen
		}
		p.mu.Unlock()
		switch {
		case p.aead == nil && secret != "":
			return secret, nil
		case p.aead != nil && sealed != nil:
			return openCredential(p.aead, login, sealed)
		}
		return "", errors.New("no password kept for this provider user: it is polled again after its next login")
	}
}

// prepare loads the key (creating it) and the provider users, before the
// IMAP server takes logins.
func (p *provider) prepare(ctx context.Context, keyFile string) error {
	if p.cfg.Credentials == CredentialsEncrypted {
		aead, err := loadProviderKey(keyFile, p.log)
		if err != nil {
			return err
		}
		p.aead = aead
	} else if n, err := p.st.DropProviderCredentials(ctx); err != nil {
		return fmt.Errorf("provider: %w", err)
	} else if n > 0 {
		p.log.Info("credentials = \"session\": dropped the passwords kept sealed for provider users; they are polled again after their next login", "users", n)
	}
	users, err := p.st.ProviderUsers(ctx)
	if err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	var accts []poller.Account
	unreadable := 0
	for _, su := range users {
		acct, ok, bad := p.adopt(su)
		if bad {
			unreadable++
		}
		if ok {
			accts = append(accts, acct)
		}
	}
	if unreadable > 0 {
		p.log.Warn("kept provider passwords do not open with key_file (was it replaced?): those users are polled again after their next login",
			"users", unreadable)
	}
	p.poller.SetAccounts(accts)
	if p.cfg.TLSSkipVerify {
		p.log.Warn("tls_skip_verify is set: the provider's POP certificate is not verified")
	}
	p.log.Info("provider mode", "host", p.cfg.Host, "port", p.cfg.Port, "credentials", p.cfg.Credentials,
		"users", len(users), "polled", len(accts))
	return nil
}

// start starts the provider users' poller.
func (p *provider) start(ctx context.Context) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		p.poller.Run(pctx)
	}()
	if p.shared {
		go p.syncLoop(pctx)
	}
}

// stop stops the provider's poller (in-flight deliveries finish) and its
// logout timers.
func (p *provider) stop(ctx context.Context) error {
	p.mu.Lock()
	for _, u := range p.users {
		if u.logoutTimer != nil {
			u.logoutTimer.Stop()
			u.logoutTimer = nil
		}
	}
	p.mu.Unlock()
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("provider poller still busy at the shutdown deadline: %w", ctx.Err())
	}
}

// Present implements imapfront.ExternalPresence: with credentials =
// "session", a provider user is polled while they have a session and for
// poll_after_logout after the last one ends.
func (p *provider) Present(user string, present bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[user]
	if u == nil {
		return // a [[user]]
	}
	u.present = present
	if u.logoutTimer != nil {
		u.logoutTimer.Stop()
		u.logoutTimer = nil
	}
	if present || p.aead != nil {
		return
	}
	u.logoutTimer = p.afterLogout(p.cfg.PollAfterLogout.Value, func() { p.logoutExpired(user) })
}

// logoutExpired ends the polling of a session-mode user whose last session
// ended poll_after_logout ago, forgetting the password.
func (p *provider) logoutExpired(user string) {
	p.mu.Lock()
	u := p.users[user]
	if u == nil || u.present || !u.active {
		p.mu.Unlock()
		return
	}
	u.active, u.secret, u.logoutTimer = false, "", nil
	p.mu.Unlock()
	p.poller.RemoveAccount(accountName(user))
	p.log.Info("provider user logged out for poll_after_logout: polling stops until the next login", LogKeyUser, user)
}

// afterPoll is the provider poller's AfterPoll: counts, and a refused login
// stops the user's polling until their next IMAP login.
func (p *provider) afterPoll(a poller.Account, res poller.Result, err error) {
	switch {
	case err == nil:
		p.m.polls.WithLabelValues("ok").Inc()
		return
	case !poller.IsLoginRefused(err):
		p.m.polls.WithLabelValues("error").Inc()
		return
	}
	p.m.polls.WithLabelValues("login_refused").Inc()
	user := a.User
	p.mu.Lock()
	u := p.users[user]
	if u != nil && u.usedGen != u.gen {
		// The user logged in (maybe with a new password) after this poll
		// took its password: poll again with the newest instead.
		p.mu.Unlock()
		p.log.Info("provider user's POP login was refused with an older password; polling with the newest", LogKeyUser, user)
		p.poller.PollNow(a.Name)
		return
	}
	if u != nil {
		u.active, u.needsLogin, u.secret, u.sealed, u.verifier, u.pending = false, true, "", nil, "", nil
	}
	p.mu.Unlock()
	p.poller.RemoveAccount(a.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := p.st.SetProviderUserState(ctx, user, store.ProviderNeedsLogin, true); serr != nil {
		p.log.Error("provider user needs login: recording it failed", LogKeyUser, user, "err", serr)
	}
	p.log.Warn("provider user's POP login was refused: polling stops until the user logs in again with the current password",
		LogKeyUser, user, "err", err)
}

// Hint implements imapfront.Hinter for provider users: a client looking at
// the folder their mail lands in asks for an early poll.
func (p *provider) Hint(user, mailbox string) {
	p.mu.Lock()
	u := p.users[user]
	active := u != nil && u.active
	p.mu.Unlock()
	if !active || !sameFolder(p.cfg.Folder, mailbox) {
		return
	}
	p.poller.HintAccount(accountName(user))
}

// sameFolder compares mailbox names, INBOX case-insensitively.
func sameFolder(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// counts returns how many provider users are active (polled) and how many
// need a login.
func (p *provider) counts() (active, needsLogin, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.users {
		switch {
		case u.needsLogin:
			needsLogin++
		case u.active:
			active++
		default:
			idle++
		}
	}
	return active, needsLogin, idle
}

// hinters tells every Hinter of the list.
type hinters []imapfront.Hinter

// Hint implements imapfront.Hinter.
func (h hinters) Hint(user, mailbox string) {
	for _, x := range h {
		x.Hint(user, mailbox)
	}
}

func (b *Bridge) startProvider(ctx context.Context) {
	b.mu.Lock()
	prov := b.provider
	b.mu.Unlock()
	if prov != nil {
		prov.start(ctx)
	}
}

func (b *Bridge) stopProvider(ctx context.Context) error {
	b.mu.Lock()
	prov := b.provider
	b.mu.Unlock()
	if prov == nil {
		return nil
	}
	return prov.stop(ctx)
}
