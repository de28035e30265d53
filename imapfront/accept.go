package imapfront

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/popbridge/popbridge/internal/lib/netlimit"
)

// backendKind selects the imapserver.Server a connection is served by: the
// library decides the authentication policy per server, not per connection
// (docs/imapserver-workarounds.md, "TLS and the login policy"), and must not offer STARTTLS on a connection that is already
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
	// The caps count raw connections, below TLS: a refused client costs
	// no handshake unless it is owed a BYE, and imapserver still sees the
	// *tls.Conn it needs (docs/imapserver-workarounds.md, "TLS and the login policy").
	lim := netlimit.NewListener(ln, netlimit.Options{
		MaxConns:       s.maxConns,
		MaxPerAddr:     s.maxPerAddr,
		ExemptLoopback: true,
		Reject:         s.rejectConn(implicitTLS),
		OnReject:       s.onReject,
		Evict:          s.evictOldestPreLogin,
		Counter:        s.connCount,
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[lim] = struct{}{}
	s.acceptWG.Add(1)
	s.mu.Unlock()
	defer s.acceptWG.Done()
	dummyHash()    // computed now, so the first unknown user costs no more than others
	s.ensureFeed() // from now on new mail is \Recent (recent.go)
	defer func() {
		s.mu.Lock()
		delete(s.listeners, lim)
		s.mu.Unlock()
	}()
	ln = lim

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

// rejectConn returns the netlimit Reject function of a listener: it tells
// the client why it is refused, after the TLS handshake on implicit-TLS
// listeners (netlimit bounds the time and the number of these).
func (s *Server) rejectConn(implicitTLS bool) func(net.Conn) {
	return func(c net.Conn) {
		if _, ok := c.(*tls.Conn); !ok && implicitTLS {
			if s.tlsConf.Load() == nil {
				return
			}
			c = tls.Server(c, s.dynamicTLS())
		}
		io.WriteString(c, byeTooMany)
	}
}

// onReject logs refused connections, at most one line per rejectLogEvery.
func (s *Server) onReject(addr net.Addr, reason string) {
	n := s.rejected.Add(1)
	now := time.Now().UnixNano()
	last := s.lastRejLog.Load()
	if now-last < int64(rejectLogEvery) || !s.lastRejLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("imap connection refused", "conn", addr.String(), "cap", reason, "refused_total", n)
}

// rejectLogEvery rate-limits the log line of refused connections.
const rejectLogEvery = 10 * time.Second

// handle decides the policy of one accepted connection and hands it to the
// matching imapserver.Server.
func (s *Server) handle(raw net.Conn, implicitTLS bool) {
	var nc net.Conn = raw
	if isTLSConn(raw) {
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
	s.idleGen++ // a connection opened: no idle release pending
	s.connWG.Add(1)
	s.mu.Unlock()

	if victim := s.pre.add(cs); victim != nil {
		s.evictPreLogin(victim)
	}
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
		Logger:       backendLogger{s},
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

// isTLSConn reports whether c is a *tls.Conn, possibly inside a netlimit
// connection (a tls.NewListener handed to Serve or ServeTLS).
func isTLSConn(c net.Conn) bool {
	for {
		if _, ok := c.(*tls.Conn); ok {
			return true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = u.NetConn()
	}
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
