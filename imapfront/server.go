package imapfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/internal/lib/authlimit"
	"github.com/popbridge/popbridge/internal/lib/netlimit"
	"github.com/popbridge/popbridge/store"
)

// Defaults for zero Options fields.
const (
	// defaultAppendLimit is the APPEND limit when Options.AppendLimit is 0.
	defaultAppendLimit = 50 << 20
	// DefaultMaxConns is the connection cap when Options.MaxConns is 0.
	DefaultMaxConns = netlimit.DefaultMaxConns
	// DefaultMaxConnsPerAddr is the per-address connection cap when
	// Options.MaxConnsPerAddr is 0.
	DefaultMaxConnsPerAddr = netlimit.DefaultMaxPerAddr
	// DefaultMaxPreLoginConns is the cap on connections that have not
	// logged in yet when Options.MaxPreLoginConns is 0: a quarter of
	// DefaultMaxConns.
	DefaultMaxPreLoginConns = DefaultMaxConns / 4
	// DefaultMaxMailboxes is the per-user mailbox cap when
	// Options.MaxMailboxes is 0.
	DefaultMaxMailboxes = 10000
	// DefaultIdleTimeout is how long an authenticated connection may stay
	// silent (IDLE included) when Options.IdleTimeout is 0: imapserver's
	// own 35 minutes.
	DefaultIdleTimeout = 35 * time.Minute
	// MinIdleTimeout is the shortest Options.IdleTimeout New accepts: RFC
	// 3501 section 5.4 and RFC 2177 require at least 30 minutes.
	MinIdleTimeout = 30 * time.Minute
	// PreAuthTimeout is how long a connection that has not logged in may
	// stay silent, and how long any command may take to arrive once it
	// has started. imapserver hard-codes it; it is not configurable.
	PreAuthTimeout = 30 * time.Second
	// MaxCommandLine is the longest command imapserver accepts, in bytes,
	// literals excluded (a longer one ends the connection). imapserver
	// hard-codes it; it is not configurable.
	MaxCommandLine = 50 << 10
)

// byeTooMany is written to connections refused for a connection cap.
const byeTooMany = "* BYE Too many connections\r\n"

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("imapfront: server closed")

// User is a local IMAP user.
type User struct {
	// Name is the login name, which is also the store user's name.
	Name string
	// PasswordHash is a bcrypt ($2a$/$2b$/$2y$) or argon2id ($argon2id$...)
	// PHC string, e.g. from HashPassword.
	PasswordHash string
	// Trace logs the user's IMAP traffic once logged in (trace.go).
	Trace bool
}

// Hinter is told when a client looks at a mailbox (SELECT, NOOP, IDLE), so
// that new mail can be fetched early. *poller.Poller satisfies it. Hint must
// not block.
type Hinter interface {
	Hint(user, mailbox string)
}

// Options configures a Server. Store is required; every other zero value
// has the default documented on its field.
type Options struct {
	// Store holds the mail served. Required.
	Store Store
	// Users may log in; SetUsers replaces them.
	Users []User
	// TLSConfig enables STARTTLS on Serve and is required by ServeTLS. nil:
	// no TLS.
	TLSConfig *tls.Config
	// AllowPlaintextAuth allows LOGIN and AUTHENTICATE without TLS from
	// non-loopback addresses. Loopback clients may always authenticate.
	AllowPlaintextAuth bool
	// AppendLimit is the largest message APPEND accepts, in bytes. 0: 50 MiB.
	AppendLimit int64
	// Hinter is told about mailboxes clients look at. nil: none.
	Hinter Hinter
	// Logger receives the server's log lines. nil: discard.
	Logger *slog.Logger

	// MaxConns caps the connections open at once, over all the listeners
	// of the server (Serve and ServeTLS calls). A connection over the cap
	// gets "* BYE Too many connections" (after the
	// handshake on implicit TLS) and is closed before any session starts.
	// 0: DefaultMaxConns (1000); negative: no cap.
	MaxConns int
	// MaxConnsPerAddr caps the connections open at once from one client
	// address (an IPv4 address or an IPv6 /64), over all listeners, like
	// Dovecot's mail_max_userip_connections but counted before login.
	// Loopback clients are exempt (they still count against MaxConns).
	// 0: DefaultMaxConnsPerAddr (20); negative: no cap.
	MaxConnsPerAddr int
	// MaxPreLoginConns caps the connections that have not logged in yet,
	// over all listeners: a newcomer over it closes the oldest of them
	// (prelogin.go). When MaxConns is reached, the oldest connection that
	// has not logged in gives way to the newcomer as well, so that
	// clients that log in are refused only when logged-in connections
	// fill MaxConns. A value above MaxConns means MaxConns.
	// 0: DefaultMaxPreLoginConns (250); negative: no cap of its own.
	MaxPreLoginConns int
	// AuthLimiter slows down failed logins (LOGIN and AUTHENTICATE) per
	// client address and per user name, Dovecot auth_penalty style: 2, 4,
	// 8, then 15 s per attempt. Share one limiter between servers (or
	// keep it across restarts of the server) to share the penalties; set
	// authlimit.Options.Trusted for networks that must never be delayed.
	// nil: a limiter with authlimit's defaults, so throttling is always on.
	AuthLimiter *authlimit.Limiter
	// MaxMailboxes caps the mailboxes a user may have, \Noselect parents
	// included; CREATE and RENAME beyond it answer NO [LIMIT]. Mailboxes
	// the store creates itself (first login, delivery) are not refused.
	// 0: DefaultMaxMailboxes (10,000); negative: no cap.
	MaxMailboxes int
	// IdleTimeout is how long a logged-in connection may stay silent,
	// IDLE included, before it is closed (the autologout timer of RFC 3501
	// section 5.4). New refuses values under MinIdleTimeout (30 min, RFC
	// 2177). 0: DefaultIdleTimeout (35 min). The pre-login timeout
	// (PreAuthTimeout) and the command-line limit (MaxCommandLine) are
	// imapserver's and not configurable; the cost of one SEARCH is bounded
	// by fixed limits (see doc.go).
	IdleTimeout time.Duration
	// OnCommand, when set, is called after each IMAP command a session
	// executes, with its upper-case name ("FETCH", "UID FETCH", "LOGIN"),
	// how long it took and its error (nil on success; an *imap.Error for
	// NO and BAD). It is called from the connection's goroutine and must
	// not block. Commands imapserver answers itself (CAPABILITY, NOOP,
	// LOGOUT, STARTTLS, ENABLE) are not reported; see metrics.go. nil: none.
	OnCommand func(name string, d time.Duration, err error)
	// Alert, when set, returns the text of an [ALERT] for a user ("" for
	// none), sent as an untagged OK after a successful LOGIN and on SELECT
	// or EXAMINE of INBOX (alert.go). It must not block. nil: none.
	Alert func(user string) string
	// OnServerBug, when set, is called for every command answered NO
	// [SERVERBUG] (an internal error, logged). Client syntax errors that
	// go-imap beta.8 would answer that way are answered BAD instead and
	// not counted (connState.fixServerBug); on a STARTTLS connection,
	// where they cannot be rewritten, they are neither rewritten nor
	// counted. It must not block. nil: none.
	OnServerBug func()
	// External checks the logins of names that are not in Users (see
	// ExternalLogin and external.go); it may also implement
	// ExternalPresence. nil: only Users may log in.
	External ExternalLogin
}

// Server is an IMAP server over a store. Create it with New; it serves
// until Shutdown.
type Server struct {
	opts  Options
	log   *slog.Logger
	limit uint32

	users    map[store.UserID]*userState // guarded by usersMu
	usersMu  sync.Mutex
	accounts atomic.Pointer[map[string]string] // login name -> hash
	tlsConf  atomic.Pointer[tls.Config]
	// traced holds the users whose traffic is traced (User.Trace).
	traced atomic.Pointer[map[string]bool]
	// passwords remembers successful password verifications (auth.go).
	passwords *verifyCache

	feedOnce sync.Once
	feedMu   sync.Mutex
	feedSub  *store.Subscription // the store's change feed, once subscribed

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*connState]struct{}
	backends  map[backendKind]*backend

	conv        *convCache // converted ENVELOPE/BODYSTRUCTURE, by message
	arenas      arenaPool  // FETCH body arenas kept between FETCHes (fetcharena.go)
	authLim     *authlimit.Limiter
	fingerprint *authlimit.Fingerprinter
	verifySem   chan struct{}     // bounds concurrent password verifications
	connCount   *netlimit.Counter // shared by the listeners' caps
	pre         preLogin          // connections not logged in yet
	recent      recentTracker     // unclaimed \Recent messages
	viewSeq     atomic.Uint64     // numbers views in SELECT order
	maxConns    int
	maxPerAddr  int
	maxMboxes   int
	idleTimeout time.Duration
	rejected    atomic.Int64 // connections refused for a cap
	lastRejLog  atomic.Int64 // unix nanoseconds of the last rejection log line

	// ctx is cancelled when Shutdown starts; login penalties end early.
	ctx    context.Context
	cancel context.CancelFunc

	// idleGen counts connection arrivals and departures (guarded by mu),
	// so that an idle memory release armed when the last connection
	// closed is dropped if another came meanwhile (idlemem.go).
	idleGen uint64

	acceptWG  sync.WaitGroup // accept loops
	connWG    sync.WaitGroup // connections handed to imapserver, until closed
	backendWG sync.WaitGroup // imapserver.Server.Serve loops
}

// New returns a server for opts. It has no side effects; nothing runs until
// Serve or ServeTLS.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("imapfront: Options.Store is required")
	}
	if opts.AppendLimit < 0 || opts.AppendLimit > 1<<32-1 {
		return nil, fmt.Errorf("imapfront: AppendLimit %d out of range", opts.AppendLimit)
	}
	if opts.IdleTimeout != 0 && opts.IdleTimeout < MinIdleTimeout {
		return nil, fmt.Errorf("imapfront: IdleTimeout %v is under the %v RFC 3501 and RFC 2177 require", opts.IdleTimeout, MinIdleTimeout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:        opts,
		log:         opts.Logger,
		passwords:   newVerifyCache(verifyHash, verifyCacheTTL, verifyCacheSize, time.Now),
		users:       make(map[store.UserID]*userState),
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[*connState]struct{}),
		backends:    make(map[backendKind]*backend),
		conv:        newConvCache(convCacheEntries),
		authLim:     opts.AuthLimiter,
		fingerprint: authlimit.NewFingerprinter(),
		verifySem:   make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		connCount:   netlimit.NewCounter(),
		maxConns:    orDefault(opts.MaxConns, DefaultMaxConns),
		maxPerAddr:  orDefault(opts.MaxConnsPerAddr, DefaultMaxConnsPerAddr),
		maxMboxes:   orDefault(opts.MaxMailboxes, DefaultMaxMailboxes),
		pre:         preLogin{max: orDefault(opts.MaxPreLoginConns, DefaultMaxPreLoginConns)},
		idleTimeout: opts.IdleTimeout,
		ctx:         ctx,
		cancel:      cancel,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.maxConns > 0 && s.pre.max > s.maxConns {
		s.pre.max = s.maxConns
	}
	if s.authLim == nil {
		s.authLim = authlimit.New(authlimit.Options{})
	}
	if s.idleTimeout == 0 {
		s.idleTimeout = DefaultIdleTimeout
	}
	s.limit = defaultAppendLimit
	if opts.AppendLimit > 0 {
		s.limit = uint32(opts.AppendLimit)
	}
	s.SetUsers(opts.Users)
	s.SetTLSConfig(opts.TLSConfig)
	return s, nil
}

// orDefault returns def for 0, -1 (no cap) for negative values, v otherwise.
func orDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

// SetUsers replaces the users that may log in. Sessions already logged in
// are kept.
func (s *Server) SetUsers(users []User) {
	m := make(map[string]string, len(users))
	traced := map[string]bool{}
	for _, u := range users {
		m[u.Name] = u.PasswordHash
		if u.Trace {
			traced[u.Name] = true
		}
	}
	s.traced.Store(&traced)
	s.accounts.Store(&m)
}

// SetTLSConfig replaces the TLS configuration used by new STARTTLS and
// implicit-TLS handshakes. nil disables STARTTLS for new connections.
func (s *Server) SetTLSConfig(c *tls.Config) {
	s.tlsConf.Store(c)
}

// lookupUser returns the password hash of a configured user.
func (s *Server) lookupUser(name string) (string, bool) {
	m := s.accounts.Load()
	if m == nil {
		return "", false
	}
	h, ok := (*m)[name]
	return h, ok
}

// dynamicTLS is handed to imapserver and tls.Server: every handshake uses
// the configuration current at that moment.
func (s *Server) dynamicTLS() *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.tlsConf.Load()
			if c == nil {
				return nil, errors.New("imapfront: TLS is not configured")
			}
			return c, nil
		},
	}
}

// newSession is imapserver's NewSession hook.
func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	cs, ok := c.NetConn().(*connState)
	if !ok {
		return nil, nil, fmt.Errorf("imapfront: unexpected connection type %T", c.NetConn())
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server is shutting down"}
	}
	sess := newSession(s, cs)
	cs.attach(c, sess)
	return s.metered(sess), nil, nil
}

// logConnClosed is the debug message logged once a connection has ended
// and freed its slot.
const logConnClosed = "imap connection closed"

// removeConn forgets a closed connection.
func (s *Server) removeConn(cs *connState) {
	s.pre.remove(cs)
	s.mu.Lock()
	delete(s.conns, cs)
	s.noteConnsLocked()
	open := len(s.conns)
	s.mu.Unlock()
	// Its slot under MaxConns and MaxConnsPerAddr is free by now.
	s.log.Debug(logConnClosed, "conn", cs.remote, "open", open)
	s.connWG.Done()
}

// serverBug reports one NO [SERVERBUG] answer (Options.OnServerBug).
func (s *Server) serverBug() {
	if f := s.opts.OnServerBug; f != nil {
		f()
	}
}

// Shutdown stops the server gracefully: it closes the listeners, lets each
// connection finish the command it is executing, sends it BYE and waits for
// every connection to end. When ctx is done first, the remaining connections
// are closed and ctx's error is returned. The server may not be reused.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*connState, 0, len(s.conns))
	for cs := range s.conns {
		conns = append(conns, cs)
	}
	s.mu.Unlock()
	s.acceptWG.Wait()

	var byeWG sync.WaitGroup
	for _, cs := range conns {
		byeWG.Add(1)
		go func() {
			defer byeWG.Done()
			cs.byeWhenQuiet(ctx)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(allDone)
	}()
	var err error
	select {
	case <-allDone:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		left := make([]*connState, 0, len(s.conns))
		for cs := range s.conns {
			left = append(left, cs)
		}
		s.mu.Unlock()
		for _, cs := range left {
			cs.Close()
		}
		<-allDone
	}
	byeWG.Wait()

	s.mu.Lock()
	for _, b := range s.backends {
		b.ln.Close()
	}
	s.mu.Unlock()
	s.backendWG.Wait()

	s.feedMu.Lock()
	if s.feedSub != nil {
		s.feedSub.Cancel()
		s.feedSub = nil
	}
	s.feedMu.Unlock()
	return err
}
