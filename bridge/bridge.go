package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/poller"
)

// DefaultShutdownTimeout bounds a graceful stop when
// Bridge.ShutdownTimeout is 0.
const DefaultShutdownTimeout = 20 * time.Second

// Log keys used by the bridge and passed to the parts it starts.
const (
	LogKeyComponent = "component"
	LogKeyAccount   = "account"
	LogKeyUser      = "user"
)

// Addrs are the addresses the bridge listens on; nil for a listener that is
// not configured.
type Addrs struct {
	IMAP    net.Addr
	IMAPTLS net.Addr
	HTTP    net.Addr
}

// Bridge is the popbridge service: store, poller, IMAP front end and HTTP
// endpoint, run from one Config. Create it with New, run it with Run.
type Bridge struct {
	// ShutdownTimeout bounds the graceful stop after Run's context is
	// cancelled: in-flight deliveries and IMAP commands may finish until
	// then. 0: DefaultShutdownTimeout. Set before Run.
	ShutdownTimeout time.Duration

	log *slog.Logger

	mu      sync.Mutex // guards the fields below after Run started
	cfg     *Config
	store   Backend
	poller  *poller.Poller
	imap    *imapfront.Server
	http    *http.Server
	metrics *metrics
	addrs   Addrs
	// provider is provider mode's login checker and poller; nil when
	// [provider] is off.
	provider *provider

	reloadMu     sync.Mutex // serialises Reload
	running      atomic.Bool
	ready        chan struct{}
	fatal        chan error
	serveWG      sync.WaitGroup // IMAP and HTTP serve goroutines
	imapLns      []imapListener // bound by buildIMAP, served by serveIMAP
	httpLn       net.Listener   // bound by buildHTTP, served by serveHTTP
	pollerCancel context.CancelFunc
	pollerDone   chan error
	startedAt    time.Time
	reload       reloadState // guarded by mu
}

// reloadState is the outcome of the last reload, for /metrics and /healthz.
// The configuration loaded at start counts as a successful load.
type reloadState struct {
	ok          bool
	lastSuccess time.Time
	lastAttempt time.Time
	lastError   string
}

// recordReload notes the outcome of a reload attempt (err nil: success).
func (b *Bridge) recordReload(err error) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reload.lastAttempt = now
	if err != nil {
		b.reload.ok, b.reload.lastError = false, err.Error()
		return
	}
	b.reload.ok, b.reload.lastError, b.reload.lastSuccess = true, "", now
}

// ReloadRefused records a reload that failed before [Bridge.Reload] could
// run, typically because the file did not load; it shows in /healthz and
// /metrics (popbridge_config_last_reload_successful 0) until a reload
// succeeds.
func (b *Bridge) ReloadRefused(err error) { b.recordReload(err) }

// New returns a Bridge for cfg, which must have passed Validate. It has no
// side effects: nothing is opened or started until Run. logger nil: discard.
func New(cfg *Config, logger *slog.Logger) *Bridge {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Bridge{
		log:   logger,
		cfg:   cfg,
		ready: make(chan struct{}),
		fatal: make(chan error, 4),
	}
}

// Config returns the configuration in effect.
func (b *Bridge) Config() *Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

// Ready is closed once Run has started every part; Addrs is valid then.
func (b *Bridge) Ready() <-chan struct{} { return b.ready }

// Addrs returns the listening addresses (useful with port 0). Valid after Ready.
func (b *Bridge) Addrs() Addrs {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs
}

// Status returns the in-memory poller status of every account; nil before
// Run has started the poller.
func (b *Bridge) Status() []poller.Status {
	b.mu.Lock()
	p := b.poller
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Status()
}

// connectionStats returns the poller's open upstream sessions and polls
// waiting for a slot; ok is false before Run has started the poller.
func (b *Bridge) connectionStats() (open, waiting int, ok bool) {
	b.mu.Lock()
	p := b.poller
	b.mu.Unlock()
	if p == nil {
		return 0, 0, false
	}
	open, waiting = p.ConnectionStats()
	return open, waiting, true
}

// PollNow asks for an early poll of account, or of every account when
// account is "" (SIGUSR1; spread over 50 ms per account, see
// poller.Poller.PollAll). It does not wait; it does nothing before Run.
func (b *Bridge) PollNow(account string) {
	b.mu.Lock()
	p := b.poller
	b.mu.Unlock()
	if p == nil {
		return
	}
	if account != "" {
		p.PollNow(account)
		return
	}
	p.PollAll()
}

// Run builds every part first: it opens the store, creates the poller and
// the IMAP server, and binds the IMAP and HTTP listeners; if any of that
// fails, it releases what it opened and returns, having started nothing
// (no poll, no connection served). Then it starts the IMAP front end, the
// poller and the HTTP endpoint, in that order, and serves until ctx is
// cancelled or a part fails. It then stops in reverse order
// within ShutdownTimeout: the HTTP endpoint, the poller (no new polls;
// in-flight deliveries finish), the IMAP front end (listeners closed,
// commands finish, BYE to every client), the store. It returns nil after
// a clean stop on ctx cancellation. Run may be called once.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("bridge: Run called twice")
	}
	b.startedAt = time.Now()
	b.mu.Lock()
	b.reload = reloadState{ok: true, lastSuccess: b.startedAt, lastAttempt: b.startedAt}
	b.mu.Unlock()
	timeout := b.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	stopCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), timeout)
	}
	parts := []component{
		{name: "store", build: b.buildStore, unbuild: b.closeStore, stop: func(context.Context) error { return b.closeStore() }},
		{name: "imap", build: b.buildIMAP, unbuild: b.unbuildIMAP, start: b.serveIMAP, stop: b.stopIMAP},
		{name: "poller", start: func() { b.startPoller(ctx) }, stop: b.stopPoller},
		{name: "provider", start: func() { b.startProvider(ctx) }, stop: b.stopProvider},
		{name: "http", build: b.buildHTTP, unbuild: b.unbuildHTTP, start: b.serveHTTP, stop: b.stopHTTP},
	}
	if err := buildAll(ctx, parts, b.log); err != nil {
		return err
	}
	startAll(parts, b.log)
	addrs := b.Addrs()
	b.log.Info("popbridge running", "imap", addrString(addrs.IMAP), "imaps", addrString(addrs.IMAPTLS),
		"http", addrString(addrs.HTTP), "users", len(b.Config().Users), "accounts", len(b.Config().Accounts))
	close(b.ready)

	var runErr error
	select {
	case <-ctx.Done():
		b.log.Info("shutting down", "timeout", timeout)
	case runErr = <-b.fatal:
		b.log.Error("shutting down after a failure", "err", runErr)
	}
	sctx, cancel := stopCtx()
	defer cancel()
	stopErr := stopAll(sctx, parts, b.log)
	b.waitPoller()
	b.serveWG.Wait()
	if stopErr == nil {
		b.log.Info("stopped")
	}
	return errors.Join(runErr, stopErr)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// fail reports a part that stopped on its own; Run then shuts down.
func (b *Bridge) fail(err error) {
	select {
	case b.fatal <- err:
	default:
	}
}

// buildStore opens the store and creates (without starting) the poller.
func (b *Bridge) buildStore(ctx context.Context) error {
	cfg := b.Config()
	st, err := openStore(ctx, cfg, b.log)
	if err != nil {
		return err
	}
	warnDataPerms(b.log, cfg.Path(cfg.DataDir))
	m := newMetrics(b)
	sts, err := st.AccountStatuses(ctx)
	if err != nil {
		st.Close()
		return fmt.Errorf("read account statuses: %w", err)
	}
	m.notices = newNotices(b, st, sts)
	if err := m.notices.seedSent(ctx); err != nil {
		st.Close()
		return err
	}
	maxConns, perHost := cfg.Poller.pollerLimits()
	p := poller.New(poller.Options{
		Sink:                  m.sink(st),
		Leaser:                leaserOf(st),
		LeaseTTL:              cfg.Store.PollLease.Value,
		Accounts:              cfg.pollerAccounts(),
		Logger:                b.log.With(LogKeyComponent, "poller"),
		MaxConnections:        maxConns,
		MaxConnectionsPerHost: perHost,
		AfterPoll:             m.afterPoll,
	})
	var prov *provider
	if cfg.Provider.Enabled() {
		prov = newProvider(cfg, st, newProviderMetrics(m.reg, b), b.log.With(LogKeyComponent, "provider"))
		if err := prov.prepare(ctx, cfg.Path(cfg.Provider.KeyFile)); err != nil {
			st.Close()
			return err
		}
	}
	b.mu.Lock()
	b.store, b.metrics, b.poller, b.provider = st, m, p, prov
	b.mu.Unlock()
	return nil
}

// openStore opens the store of cfg and makes sure every user exists.
func openStore(ctx context.Context, cfg *Config, log *slog.Logger) (Backend, error) {
	st, err := openBackend(ctx, cfg, log, openOptions{})
	if err != nil {
		return nil, err // store.Open's errors already start with "open store:"
	}
	if err := ensureUsers(ctx, st, cfg); err != nil {
		st.Close()
		return nil, err
	}
	if err := carryLedgers(ctx, st, cfg, log); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// carryLedgers moves the ledger of every account's previous_names to its
// current name (see store.RenameAccount), logging what it moved. Run before
// any poller starts; it is idempotent.
func carryLedgers(ctx context.Context, st Backend, cfg *Config, log *slog.Logger) error {
	for _, a := range cfg.Accounts {
		for _, old := range a.PreviousNames {
			n, err := st.RenameAccount(ctx, old, a.Name)
			if err != nil {
				return fmt.Errorf("account %q: carry over the ledger of previous name %q: %w", a.Name, old, err)
			}
			if n > 0 {
				log.Info("account renamed: ledger carried over", LogKeyAccount, a.Name, "previous_name", old, "ledger_rows", n)
			}
		}
	}
	return nil
}

func ensureUsers(ctx context.Context, st Backend, cfg *Config) error {
	for _, u := range cfg.Users {
		if _, err := st.EnsureUser(ctx, u.Name); err != nil {
			return fmt.Errorf("ensure user %q: %w", u.Name, err)
		}
	}
	return nil
}

func (b *Bridge) closeStore() error {
	b.mu.Lock()
	st := b.store
	b.mu.Unlock()
	if err := st.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// imapListener is a bound IMAP listener, plain or implicit TLS.
type imapListener struct {
	name string
	ln   net.Listener
	tls  bool
}

// buildIMAP creates the IMAP server and binds its listeners, without
// serving them.
func (b *Bridge) buildIMAP(ctx context.Context) error {
	cfg := b.Config()
	tlsConf, autoInfo, err := cfg.serverTLS(cfg.Path(cfg.DataDir), b.log)
	if err != nil {
		return err
	}
	logAutoCert(b.log, autoInfo)
	b.mu.Lock()
	st, p, m, prov := b.store, b.poller, b.metrics, b.provider
	b.mu.Unlock()
	var hinter imapfront.Hinter = p
	if prov != nil {
		hinter = hinters{p, prov}
	}
	opts := imapfront.Options{
		Store:              st,
		Users:              cfg.imapUsers(),
		TLSConfig:          tlsConf,
		AllowPlaintextAuth: cfg.IMAP.AllowPlaintextAuth,
		Hinter:             hinter,
		Logger:             b.log.With(LogKeyComponent, "imap"),
		OnCommand:          m.observeCommand,
		Alert:              m.notices.alert,
		OnServerBug:        m.imapServerBugs.Inc,
	}
	if prov != nil {
		opts.External = prov
	}
	cfg.imapLimits(&opts)
	srv, err := imapfront.New(opts)
	if err != nil {
		return fmt.Errorf("create imap server: %w", err)
	}
	var lns []imapListener
	var lc net.ListenConfig
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{{"imap", cfg.IMAP.Listen, false}, {"imaps", cfg.IMAP.ListenTLS, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", l.addr)
		if err != nil {
			for _, l := range lns {
				l.ln.Close()
			}
			return errors.Join(fmt.Errorf("listen %s: %w", l.name, err), shutdownUnserved(srv))
		}
		lns = append(lns, imapListener{l.name, m.countConns(ln, l.name), l.tls})
	}
	b.mu.Lock()
	b.imap, b.imapLns = srv, lns
	for _, l := range lns {
		if l.tls {
			b.addrs.IMAPTLS = l.ln.Addr()
		} else {
			b.addrs.IMAP = l.ln.Addr()
		}
	}
	b.mu.Unlock()
	return nil
}

// shutdownUnserved releases an IMAP server that never served.
func shutdownUnserved(srv *imapfront.Server) error {
	if err := srv.Shutdown(context.Background()); err != nil && !errors.Is(err, imapfront.ErrServerClosed) {
		return fmt.Errorf("imap shutdown: %w", err)
	}
	return nil
}

// unbuildIMAP closes the listeners of an IMAP server that never served.
func (b *Bridge) unbuildIMAP() error {
	b.mu.Lock()
	srv, lns := b.imap, b.imapLns
	b.imapLns = nil
	b.mu.Unlock()
	for _, l := range lns {
		l.ln.Close()
	}
	return shutdownUnserved(srv)
}

// serveIMAP serves the listeners buildIMAP bound.
func (b *Bridge) serveIMAP() {
	b.mu.Lock()
	srv, lns := b.imap, b.imapLns
	b.mu.Unlock()
	for _, l := range lns {
		b.serveWG.Add(1)
		go func() {
			defer b.serveWG.Done()
			// imapfront's Serve leaves ln open when Shutdown came first
			// (a stop right after the start): close it here, so that Run
			// never returns with the port still bound.
			defer l.ln.Close()
			serve := srv.Serve
			if l.tls {
				serve = srv.ServeTLS
			}
			if err := serve(l.ln); err != nil && !errors.Is(err, imapfront.ErrServerClosed) {
				b.fail(fmt.Errorf("serve %s: %w", l.name, err))
			}
		}()
	}
}

func (b *Bridge) stopIMAP(ctx context.Context) error {
	b.mu.Lock()
	srv := b.imap
	b.mu.Unlock()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, imapfront.ErrServerClosed) {
		return fmt.Errorf("imap shutdown: %w", err)
	}
	return nil
}

// startPoller runs the poller built by buildStore; ctx's values (not its
// cancellation: stopPoller stops it) reach the poll loop.
func (b *Bridge) startPoller(ctx context.Context) {
	b.mu.Lock()
	p := b.poller
	b.mu.Unlock()
	for _, a := range b.Config().Accounts {
		if a.TLSSkipVerify {
			b.log.Warn("tls_skip_verify is set: the upstream certificate is not verified", LogKeyAccount, a.Name)
		}
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	b.pollerCancel, b.pollerDone = cancel, done
	go func() {
		err := p.Run(pctx)
		if err != nil && pctx.Err() == nil {
			b.fail(fmt.Errorf("poller: %w", err))
		}
		done <- err
		close(done)
	}()
}

// stopPoller stops new polls and waits for in-flight deliveries to commit.
func (b *Bridge) stopPoller(ctx context.Context) error {
	b.pollerCancel()
	select {
	case err, ok := <-b.pollerDone:
		if ok && err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("poller still busy at the shutdown deadline: %w", ctx.Err())
	}
}

// waitPoller waits, briefly, for the poller goroutine after a stop that hit
// the deadline, so Run does not leave it behind unnoticed.
func (b *Bridge) waitPoller() {
	if b.pollerDone == nil {
		return
	}
	select {
	case <-b.pollerDone:
	case <-time.After(5 * time.Second):
		b.log.Error("poller did not stop within 5s after shutdown")
	}
}

// buildHTTP binds the HTTP listener and creates its server, without
// serving; nothing when http.listen is empty.
func (b *Bridge) buildHTTP(ctx context.Context) error {
	addr := b.Config().HTTP.Listen
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	srv := &http.Server{
		Handler:           b.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(b.log.With(LogKeyComponent, "http").Handler(), slog.LevelError),
	}
	b.mu.Lock()
	b.http, b.httpLn = srv, ln
	b.addrs.HTTP = ln.Addr()
	b.mu.Unlock()
	return nil
}

// unbuildHTTP closes the listener of an HTTP server that never served.
func (b *Bridge) unbuildHTTP() error {
	b.mu.Lock()
	ln := b.httpLn
	b.httpLn = nil
	b.mu.Unlock()
	if ln == nil {
		return nil
	}
	return ln.Close()
}

// serveHTTP serves the listener buildHTTP bound.
func (b *Bridge) serveHTTP() {
	b.mu.Lock()
	srv, ln := b.http, b.httpLn
	b.mu.Unlock()
	if ln == nil {
		return
	}
	b.serveWG.Add(1)
	go func() {
		defer b.serveWG.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.fail(fmt.Errorf("serve http: %w", err))
		}
	}()
}

func (b *Bridge) stopHTTP(ctx context.Context) error {
	b.mu.Lock()
	srv := b.http
	b.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
