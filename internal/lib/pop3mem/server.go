package pop3mem

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default credentials accepted by a server made without [WithUser] or
// [WithToken].
const (
	DefaultUser     = "alice"
	DefaultPassword = "secret"
	DefaultToken    = "token-alice"
)

// Message is one message in the maildrop.
type Message struct {
	// UIDL is the unique-id listing value. Several messages may share one
	// (to imitate a broken server); AddMessage assigns unique ones.
	UIDL string
	// Raw is the message with CRLF line endings, as a client receives it.
	Raw []byte

	id uint64 // server-internal identity; never reused
}

// Faults are the switches that make the server misbehave. The zero value is
// a well-behaved server. A field with a command name matches the command
// verb case-insensitively ("RETR", "PASS", ...).
type Faults struct {
	// ErrOn makes the server answer "-ERR <text>" to the named commands
	// instead of executing them, e.g. {"PASS": "[IN-USE] locked"}. For AUTH
	// the -ERR is sent right after the AUTH line.
	ErrOn map[string]string
	// DropRETRAfter > 0 closes the connection after that many bytes of a
	// RETR response body have been written.
	DropRETRAfter int64
	// StallRETRAfter > 0 stops responding after that many bytes of a RETR
	// response body.
	StallRETRAfter int64
	// StallAfterGreeting sends the greeting and then never responds.
	StallAfterGreeting bool
	// StallAfterDELE replies to a DELE and then never responds again.
	StallAfterDELE bool
	// Drip > 0 writes every response one byte at a time, Drip apart.
	Drip time.Duration
	// Rate > 0 throttles every response to about Rate bytes per second,
	// written in small steady chunks (a slow but steady link; Drip is a
	// pathological one).
	Rate int64
	// NoUIDL leaves UIDL out of CAPA and answers -ERR to UIDL.
	NoUIDL bool
	// Reorder gives the messages different numbers in every session (a
	// rotation by the session's login count).
	Reorder bool
	// BareLF ends every line the server sends with LF instead of CRLF.
	BareLF bool
	// LongLine > 0 sends a line of that many 'x' bytes at the start of every
	// RETR body (after the +OK line).
	LongLine int
	// UnstuffedDot sends message lines that begin with "." without the
	// extra dot, so a "." line ends the message early.
	UnstuffedDot bool
	// NeverEnding makes RETR bodies never end: after the message the server
	// keeps sending lines until the connection is closed.
	NeverEnding bool
	// ListSizeScale > 0 multiplies the sizes reported by LIST and STAT.
	ListSizeScale float64
	// QuitDrop closes the connection on QUIT without replying and without
	// applying deletions.
	QuitDrop bool
	// QuitErr answers QUIT with -ERR and applies no deletions.
	QuitErr bool
	// STLSInject sends a plaintext "+OK injected" line in the same write as
	// the "+OK" to STLS, before the TLS handshake (CVE-2011-0411 class).
	STLSInject bool
	// NoSTLS leaves STLS out of CAPA and answers -ERR to STLS.
	NoSTLS bool
}

// Server is an in-process POP3 server. Its methods are safe for concurrent
// use.
type Server struct {
	// TLS is the server's certificate configuration, used for STLS and
	// implicit TLS. Nil until StartTLS or WithTLS sets it.
	TLS *tls.Config

	user, password string
	token          string
	caps           []string // nil: default list
	apop           bool
	xoauthNoIR     bool
	loginDelay     time.Duration // WithLoginDelay; 0: none

	ln        net.Listener
	implicit  bool
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	msgs    []Message
	nextID  uint64
	deleted []string
	faults  Faults
	counts  map[string]int
	log     []string
	logins  int
	// lastLogin is when the last login succeeded, for WithLoginDelay;
	// delayRefusals counts logins refused for coming sooner.
	lastLogin     time.Time
	delayRefusals int
	conns         map[net.Conn]struct{}
	connsAll      int
	sessions      SessionCounter
	shared        *SessionCounter // WithSessionCounter; nil: none
}

// SessionCounter counts the POP3 sessions open at once on one or more
// servers (see [WithSessionCounter]) and remembers the most that were ever
// open together. A session is open from the moment the server accepts its
// connection until the server reads QUIT or the connection ends, whichever
// comes first (a client that has the reply to QUIT may open its next
// session before the server has torn the old connection down). The zero
// value is ready to use; its methods are safe for concurrent use.
type SessionCounter struct {
	mu               sync.Mutex
	open, max, total int
}

// Total returns how many sessions were opened so far.
func (c *SessionCounter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Open returns the sessions open now.
func (c *SessionCounter) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// Max returns the most sessions that were open at once.
func (c *SessionCounter) Max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

func (c *SessionCounter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open += d
	c.max = max(c.max, c.open)
	if d > 0 {
		c.total += d
	}
}

// Option configures a Server before it starts.
type Option func(*Server)

// WithUser sets the user name and password accepted by USER/PASS, APOP and
// AUTH PLAIN (default DefaultUser/DefaultPassword).
func WithUser(user, password string) Option {
	return func(s *Server) { s.user, s.password = user, password }
}

// WithToken sets the bearer token accepted by AUTH XOAUTH2 for the user
// (default DefaultToken).
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithCaps replaces the CAPA list. The default is TOP, UIDL, USER,
// PIPELINING, RESP-CODES, AUTH-RESP-CODE, "SASL PLAIN XOAUTH2", plus STLS when
// TLS is configured and the connection is not yet encrypted. With WithCaps
// the list is sent as given, except that STLS and UIDL are still removed by
// [Faults.NoSTLS], [Faults.NoUIDL] and after TLS is active. The capabilities
// only change what CAPA says; all commands work regardless.
func WithCaps(caps ...string) Option {
	return func(s *Server) { s.caps = append([]string{}, caps...) }
}

// WithSessionCounter makes the server count its sessions in c too, so that
// several servers can share one count (the server always keeps its own, see
// [Server.MaxOpenSessions]).
func WithSessionCounter(c *SessionCounter) Option { return func(s *Server) { s.shared = c } }

// WithLoginDelay makes the server announce "LOGIN-DELAY <seconds of d>" in
// CAPA (RFC 2449) and enforce it: a login that succeeds sooner than d after
// the previous successful one is refused with "-ERR [LOGIN-DELAY]" and
// counted (see LoginDelayRefusals), as a server that means it would.
func WithLoginDelay(d time.Duration) Option { return func(s *Server) { s.loginDelay = d } }

// LoginDelayRefusals returns how many logins were refused for coming
// sooner than WithLoginDelay allows.
func (s *Server) LoginDelayRefusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delayRefusals
}

// admitLogin applies WithLoginDelay to a login that presented valid
// credentials at now: false when it comes too soon (and is counted).
func (s *Server) admitLogin(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loginDelay > 0 && !s.lastLogin.IsZero() && now.Sub(s.lastLogin) < s.loginDelay {
		s.delayRefusals++
		return false
	}
	s.lastLogin = now
	return true
}

// WithoutAPOP leaves the <timestamp> out of the greeting and refuses APOP.
func WithoutAPOP() Option { return func(s *Server) { s.apop = false } }

// WithTLS sets the certificate configuration used for STLS and implicit TLS.
// With a TLS configuration the server offers STLS.
func WithTLS(cfg *tls.Config) Option { return func(s *Server) { s.TLS = cfg } }

// WithXOAUTH2NoInitialResponse makes the server refuse "AUTH XOAUTH2
// <initial-response>" with "-ERR Protocol error." as Microsoft 365 does,
// accepting only the two-step form.
func WithXOAUTH2NoInitialResponse() Option { return func(s *Server) { s.xoauthNoIR = true } }

// NewUnstartedServer returns a server that is not yet listening. Call Start
// or StartTLS, then Close.
func NewUnstartedServer(opts ...Option) *Server {
	s := &Server{
		user: DefaultUser, password: DefaultPassword, token: DefaultToken,
		apop:   true,
		closed: make(chan struct{}),
		counts: map[string]int{},
		conns:  map[net.Conn]struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewServer returns a started plain-text server on 127.0.0.1. The caller
// must call Close.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// Start listens on 127.0.0.1:0 and serves plain POP3 (with STLS if TLS is
// configured). It panics if the listener cannot be created, like httptest.
func (s *Server) Start() { s.start(false) }

// StartTLS listens on 127.0.0.1:0 and serves POP3 over implicit TLS (POP3S).
// s.TLS must be set (WithTLS).
func (s *Server) StartTLS() {
	if s.TLS == nil {
		panic("pop3mem: StartTLS without a TLS configuration")
	}
	s.start(true)
}

func (s *Server) start(implicit bool) {
	if s.ln != nil {
		panic("pop3mem: server already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("pop3mem: listen: %v", err))
	}
	s.ln, s.implicit = ln, implicit
	s.wg.Add(1)
	go s.serve()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.closed:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.connsAll++
		s.wg.Add(1)
		s.mu.Unlock()
		s.sessionDelta(1)
		go func() {
			defer s.wg.Done()
			pc := newConn(s, c)
			pc.serve()
			pc.endSession()
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the listener, closes every connection (ending any stall) and
// waits for all connection goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closed)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		if s.ln != nil {
			s.ln.Close()
		}
	})
	s.wg.Wait()
}

// Normalize returns raw with every line ending turned into CRLF (bare LF
// becomes CRLF; bare CR is kept) and a final CRLF added if missing: the form
// in which the server stores and sends messages.
func Normalize(raw []byte) []byte {
	b := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}
	return b
}

// AddMessage appends a message to the maildrop with a fresh unique UIDL and
// returns the UIDL.
func (s *Server) AddMessage(raw []byte) (uidl string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	uidl = "uid" + strconv.FormatUint(s.nextID, 10)
	s.msgs = append(s.msgs, Message{UIDL: uidl, Raw: Normalize(raw), id: s.nextID})
	return uidl
}

// AddMessageUIDL appends a message with the given UIDL, which may repeat one
// already used (a server that reuses UIDLs).
func (s *Server) AddMessageUIDL(uidl string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.msgs = append(s.msgs, Message{UIDL: uidl, Raw: Normalize(raw), id: s.nextID})
}

// SetMessages replaces the maildrop. Messages with an empty UIDL get a fresh
// unique one.
func (s *Server) SetMessages(msgs []Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = s.msgs[:0:0]
	for _, m := range msgs {
		s.nextID++
		if m.UIDL == "" {
			m.UIDL = "uid" + strconv.FormatUint(s.nextID, 10)
		}
		s.msgs = append(s.msgs, Message{UIDL: m.UIDL, Raw: Normalize(m.Raw), id: s.nextID})
	}
}

// Messages returns a copy of the current maildrop in maildrop order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = Message{UIDL: m.UIDL, Raw: bytes.Clone(m.Raw), id: m.id}
	}
	return out
}

// Deleted returns the UIDLs of the messages removed by a QUIT so far, in
// the order they were removed.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deleted...)
}

// Count returns how many times a command verb (case-insensitive, e.g.
// "RETR") has been received, over all connections.
func (s *Server) Count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[strings.ToUpper(cmd)]
}

// Log returns every command line received so far, over all connections,
// in arrival order. Secrets are replaced by "***" (the PASS argument, the
// APOP digest, an AUTH initial response); SASL continuation lines are not
// logged.
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// Connections returns how many connections have been accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connsAll
}

// MaxOpenSessions returns the most sessions that were open at once on this
// server (see [SessionCounter] for when a session counts as open).
func (s *Server) MaxOpenSessions() int { return s.sessions.Max() }

// OpenSessions returns the sessions open now (see [SessionCounter]).
func (s *Server) OpenSessions() int { return s.sessions.Open() }

func (s *Server) sessionDelta(d int) {
	s.sessions.add(d)
	if s.shared != nil {
		s.shared.add(d)
	}
}

// OpenConnections returns how many connections are still being served.
func (s *Server) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Faults returns the current fault switches.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the fault switches; the next command on every
// connection sees the new value.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// UpdateFaults changes the fault switches under the server's lock.
func (s *Server) UpdateFaults(fn func(*Faults)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.faults)
}

func (s *Server) count(cmd, line string) Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[cmd]++
	if f := strings.Fields(line); len(f) > 1 {
		switch cmd {
		case "PASS":
			line = cmd + " ***"
		case "APOP", "AUTH":
			if len(f) > 2 {
				line = cmd + " " + f[1] + " ***"
			}
		}
	}
	s.log = append(s.log, line)
	f := s.faults
	if f.ErrOn != nil {
		m := make(map[string]string, len(f.ErrOn))
		for k, v := range f.ErrOn {
			m[strings.ToUpper(k)] = v
		}
		f.ErrOn = m
	}
	return f
}

// login takes the session snapshot.
func (s *Server) login() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logins++
	snap := append([]Message(nil), s.msgs...)
	if s.faults.Reorder && len(snap) > 1 {
		k := s.logins % len(snap)
		snap = append(snap[k:], snap[:k]...)
	}
	return snap
}

// commit removes the messages with the given ids from the maildrop.
func (s *Server) commit(ids map[uint64]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.msgs[:0:0]
	for _, m := range s.msgs {
		if ids[m.id] {
			s.deleted = append(s.deleted, m.UIDL)
			continue
		}
		kept = append(kept, m)
	}
	s.msgs = kept
}
