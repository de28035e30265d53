package imapfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// defaultAppendLimit is the APPEND limit when Options.AppendLimit is 0.
const defaultAppendLimit = 50 << 20

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("imapfront: server closed")

// User is a local IMAP user.
type User struct {
	// Name is the login name, which is also the store user's name.
	Name string
	// PasswordHash is a bcrypt ($2a$/$2b$/$2y$) or argon2id ($argon2id$...)
	// PHC string, e.g. from HashPassword.
	PasswordHash string
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
	Store *store.Store
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

	feedOnce   sync.Once
	feedMu     sync.Mutex
	feedCancel func()

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*connState]struct{}
	backends  map[backendKind]*backend

	// faultHook, when set by tests, is called at named points of session
	// methods, so that a test can make them panic.
	faultHook func(point string)

	acceptWG  sync.WaitGroup // accept loops
	connWG    sync.WaitGroup // connections handed to imapserver, until closed
	backendWG sync.WaitGroup // imapserver.Server.Serve loops
}

// backendKind selects the imapserver.Server a connection is served by: the
// library decides the authentication policy per server, not per connection
// (notes §1), and must not offer STARTTLS on a connection that is already
// TLS.
type backendKind struct {
	insecureAuth bool
	startTLS     bool
}

// backend is one imapserver.Server fed by a channel listener.
type backend struct {
	srv *imapserver.Server
	ln  *chanListener
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
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		users:     make(map[store.UserID]*userState),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*connState]struct{}),
		backends:  make(map[backendKind]*backend),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.limit = defaultAppendLimit
	if opts.AppendLimit > 0 {
		s.limit = uint32(opts.AppendLimit)
	}
	s.SetUsers(opts.Users)
	s.SetTLSConfig(opts.TLSConfig)
	return s, nil
}

// SetUsers replaces the users that may log in. Sessions already logged in
// are kept.
func (s *Server) SetUsers(users []User) {
	m := make(map[string]string, len(users))
	for _, u := range users {
		m[u.Name] = u.PasswordHash
	}
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

// Serve accepts plain connections on ln, offering STARTTLS when a TLS
// configuration is set, until Shutdown. It returns ErrServerClosed after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS accepts implicit-TLS connections on ln until Shutdown, doing the
// handshake with the current TLS configuration (ln is a plain TCP listener;
// a tls.NewListener is accepted too). It returns ErrServerClosed after
// Shutdown.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.tlsConf.Load() == nil {
		return errors.New("imapfront: ServeTLS needs a TLS configuration")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.acceptWG.Add(1)
	s.mu.Unlock()
	defer s.acceptWG.Done()
	dummyHash() // computed now, so the first unknown user costs no more than others
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept imap connection: %w", err)
			}
			// Out of file descriptors and the like: back off and retry
			// rather than stop serving everyone.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept imap connection", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.handle(raw, implicitTLS)
	}
}

// handle decides the policy of one accepted connection and hands it to the
// matching imapserver.Server.
func (s *Server) handle(raw net.Conn, implicitTLS bool) {
	var nc net.Conn = raw
	if _, ok := raw.(*tls.Conn); ok {
		// A listener that already does TLS (tls.NewListener).
		implicitTLS = true
	} else if implicitTLS {
		nc = tls.Server(raw, s.dynamicTLS())
	}
	loopback := isLoopback(raw.RemoteAddr())
	kind := backendKind{
		insecureAuth: implicitTLS || loopback || s.opts.AllowPlaintextAuth,
		startTLS:     !implicitTLS && s.tlsConf.Load() != nil,
	}
	cs := newConnState(s, nc)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		raw.Close()
		return
	}
	b := s.backends[kind]
	if b == nil {
		b = s.newBackend(kind)
		s.backends[kind] = b
	}
	s.conns[cs] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()

	if !b.ln.deliver(cs) {
		cs.Close()
	}
}

// newBackend creates and starts an imapserver.Server. Must be called with
// s.mu held.
func (s *Server) newBackend(kind backendKind) *backend {
	opts := &imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:        {},
			imap.CapIMAP4rev2:        {},
			imap.CapSpecialUse:       {},
			imap.CapCreateSpecialUse: {},
			imap.CapBinary:           {},
			imap.CapUnauthenticate:   {},
		},
		Logger:       slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		InsecureAuth: kind.insecureAuth,
	}
	if kind.startTLS {
		opts.TLSConfig = s.dynamicTLS()
	}
	b := &backend{srv: imapserver.New(opts), ln: newChanListener()}
	s.backendWG.Add(1)
	go func() {
		defer s.backendWG.Done()
		if err := b.srv.Serve(b.ln); err != nil {
			s.log.Error("imap backend stopped", "err", err)
		}
	}()
	return b
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
	return sess, nil, nil
}

// removeConn forgets a closed connection.
func (s *Server) removeConn(cs *connState) {
	s.mu.Lock()
	delete(s.conns, cs)
	s.mu.Unlock()
	s.connWG.Done()
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
	if s.feedCancel != nil {
		s.feedCancel()
		s.feedCancel = nil
	}
	s.feedMu.Unlock()
	return err
}

// isLoopback reports whether addr is a loopback TCP address.
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// chanListener is a net.Listener fed by Server.handle.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
}
