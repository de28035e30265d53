package netlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults used for zero fields of [Options].
const (
	// DefaultMaxConns is the default cap on open connections in total.
	DefaultMaxConns = 1000
	// DefaultMaxPerAddr is the default cap on open connections from one
	// client address.
	DefaultMaxPerAddr = 20
	// DefaultIPv6PrefixLen is the default IPv6 prefix length that counts as
	// one client address.
	DefaultIPv6PrefixLen = 64
	// DefaultRejectTimeout is the default deadline for Options.Reject.
	DefaultRejectTimeout = 2 * time.Second
)

// MaxRejecting is how many Options.Reject calls may run at once; connections
// rejected while that many are running are closed without calling Reject, so
// a flood cannot pile up goroutines.
const MaxRejecting = 64

// Reasons passed to Options.OnReject.
const (
	// ReasonTotal means Options.MaxConns connections were already open.
	ReasonTotal = "total"
	// ReasonPerAddr means Options.MaxPerAddr connections from the same
	// client address were already open.
	ReasonPerAddr = "per-address"
)

// Options configures a [Listener]. The zero value gives the defaults.
type Options struct {
	// MaxConns caps open connections in total. Zero means
	// DefaultMaxConns (1000); negative means no cap.
	MaxConns int
	// MaxPerAddr caps open connections from one client address (an IPv4
	// address or an IPv6 prefix of IPv6PrefixLen bits). Zero means
	// DefaultMaxPerAddr (20); negative means no cap. Connections whose
	// remote address is not an IP address (Unix sockets) count only
	// against MaxConns.
	MaxPerAddr int
	// ExemptLoopback, when true, exempts loopback clients (127.0.0.0/8,
	// ::1) from MaxPerAddr; they still count against MaxConns.
	ExemptLoopback bool
	// IPv6PrefixLen is how many leading bits of an IPv6 address identify
	// one client for MaxPerAddr. Zero or a value outside 1..128 means
	// DefaultIPv6PrefixLen (64). IPv4-mapped IPv6 addresses count as IPv4.
	IPv6PrefixLen int
	// Reject, if not nil, is given each connection refused for a cap,
	// before it is closed, e.g. to write "* BYE too many connections". It
	// runs in its own goroutine under a read/write deadline of
	// RejectTimeout and gets the raw connection: on an implicit-TLS port it
	// must do the handshake itself (see the package doc). It must not
	// close or keep the connection; the Listener closes it when Reject
	// returns. Nil means close at once.
	Reject func(c net.Conn)
	// RejectTimeout bounds how long Reject may use the connection. Zero
	// means DefaultRejectTimeout (2 s).
	RejectTimeout time.Duration
	// OnReject, if not nil, is called synchronously from Accept for every
	// refused connection with its remote address and ReasonTotal or
	// ReasonPerAddr, e.g. to log or count. It must be quick and must not
	// block; rate-limit any logging it does.
	OnReject func(addr net.Addr, reason string)
	// Evict, if not nil, is called from Accept when MaxConns connections
	// are open, before refusing the new one: it may close an open
	// connection of lesser value (one that has not logged in yet) and
	// report true, and the new connection is then accepted if the close
	// freed a slot. It must close synchronously and must not call back
	// into the Listener other than by closing connections.
	Evict func() bool
	// Counter, if not nil, holds the open-connection counts the caps are
	// checked against, shared with every other Listener given the same
	// Counter: MaxConns and MaxPerAddr then cap the connections of all of
	// them together (e.g. ports 143 and 993 of one server). Nil means a
	// Counter of this Listener's own.
	Counter *Counter
}

// Counter holds counts of open connections, in total and per client
// address, that one or more Listeners check their caps against. Create it
// with [NewCounter]. It is safe for concurrent use.
type Counter struct {
	mu      sync.Mutex
	open    int
	perAddr map[netip.Prefix]int
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter {
	return &Counter{perAddr: make(map[netip.Prefix]int)}
}

// Listener is a net.Listener that caps open connections in total and per
// client address. Create it with [NewListener]. It is safe for concurrent
// use.
type Listener struct {
	inner          net.Listener
	maxConns       int
	maxPerAddr     int
	exemptLoopback bool
	v6bits         int
	rejectFn       func(net.Conn)
	rejectTimeout  time.Duration
	onReject       func(net.Addr, string)
	evict          func() bool
	cnt            *Counter

	mu        sync.Mutex
	rejected  uint64
	rejecting int
	closed    bool
	wg        sync.WaitGroup // Reject goroutines
}

var _ net.Listener = (*Listener)(nil)

// NewListener returns a Listener that takes connections from inner and
// enforces opts. It has no side effects; inner must be the raw (TCP)
// listener, never a TLS one (see the package doc). The Listener owns inner
// from now on: [Listener.Close] closes it.
func NewListener(inner net.Listener, opts Options) *Listener {
	l := &Listener{
		inner:          inner,
		maxConns:       opts.MaxConns,
		maxPerAddr:     opts.MaxPerAddr,
		exemptLoopback: opts.ExemptLoopback,
		v6bits:         opts.IPv6PrefixLen,
		rejectFn:       opts.Reject,
		rejectTimeout:  opts.RejectTimeout,
		onReject:       opts.OnReject,
		evict:          opts.Evict,
		cnt:            opts.Counter,
	}
	if l.cnt == nil {
		l.cnt = NewCounter()
	}
	if l.maxConns == 0 {
		l.maxConns = DefaultMaxConns
	}
	if l.maxPerAddr == 0 {
		l.maxPerAddr = DefaultMaxPerAddr
	}
	if l.v6bits < 1 || l.v6bits > 128 {
		l.v6bits = DefaultIPv6PrefixLen
	}
	if l.rejectTimeout <= 0 {
		l.rejectTimeout = DefaultRejectTimeout
	}
	return l
}

// Accept waits for the next connection within the caps and returns it.
// Connections over a cap are rejected (see [Options]) and Accept keeps
// waiting. Errors from the inner listener are returned unchanged, so after
// [Listener.Close] Accept returns an error matching net.ErrClosed. The
// caller must Close the returned connection to free its slot.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		key, perAddr := l.clientKey(c.RemoteAddr())
		cnt := l.cnt
		cnt.mu.Lock()
		reason := l.overCapLocked(key, perAddr)
		if reason == ReasonTotal && l.evict != nil {
			cnt.mu.Unlock()
			l.evict()
			cnt.mu.Lock()
			reason = l.overCapLocked(key, perAddr)
		}
		if reason == "" {
			cnt.open++
			if perAddr {
				cnt.perAddr[key]++
			}
			cnt.mu.Unlock()
			return &conn{Conn: c, l: l, key: key, perAddr: perAddr}, nil
		}
		cnt.mu.Unlock()
		l.mu.Lock()
		l.rejected++
		l.mu.Unlock()
		l.reject(c, reason)
	}
}

// overCapLocked returns the cap a new connection from key would exceed,
// "" if none. Must be called with l.cnt.mu held.
func (l *Listener) overCapLocked(key netip.Prefix, perAddr bool) string {
	cnt := l.cnt
	switch {
	case l.maxConns > 0 && cnt.open >= l.maxConns:
		return ReasonTotal
	case perAddr && l.maxPerAddr > 0 && cnt.perAddr[key] >= l.maxPerAddr:
		return ReasonPerAddr
	}
	return ""
}

// clientKey returns the key a remote address is counted under for
// MaxPerAddr, and false when it is not counted per address (not an IP
// address, or an exempt loopback address).
func (l *Listener) clientKey(a net.Addr) (netip.Prefix, bool) {
	ip, ok := remoteIP(a)
	if !ok {
		return netip.Prefix{}, false
	}
	if l.exemptLoopback && ip.IsLoopback() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = l.v6bits
	}
	p, err := ip.Prefix(bits)
	if err != nil { // cannot happen: valid address, bits in range
		return netip.Prefix{}, false
	}
	return p, true
}

// remoteIP extracts the IP address of a (IPv4-mapped addresses unmapped,
// zone dropped).
func remoteIP(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch ta := a.(type) {
	case nil:
		return netip.Addr{}, false
	case *net.TCPAddr:
		var ok bool
		if ip, ok = netip.AddrFromSlice(ta.IP); !ok {
			return netip.Addr{}, false
		}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone(""), true
}

// reject reports c, hands it to Options.Reject in a goroutine when possible,
// and closes it.
func (l *Listener) reject(c net.Conn, reason string) {
	if l.onReject != nil {
		l.onReject(c.RemoteAddr(), reason)
	}
	if l.rejectFn == nil {
		_ = c.Close()
		return
	}
	l.mu.Lock()
	if l.closed || l.rejecting >= MaxRejecting {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.rejecting++
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			l.rejecting--
			l.mu.Unlock()
		}()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(l.rejectTimeout))
		l.rejectFn(c)
	}()
}

// release frees the slot of a closed connection.
func (l *Listener) release(key netip.Prefix, perAddr bool) {
	cnt := l.cnt
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	cnt.open--
	if perAddr {
		if n := cnt.perAddr[key] - 1; n > 0 {
			cnt.perAddr[key] = n
		} else {
			delete(cnt.perAddr, key)
		}
	}
}

// Close closes the inner listener, which makes pending and later Accept
// calls return an error, and waits for running Options.Reject calls to
// finish (each is bounded by RejectTimeout). Connections already returned by
// Accept are not closed. Close returns the inner listener's error.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats is a snapshot of a [Listener]'s counters.
type Stats struct {
	// Open is the number of connections returned by Accept and not yet
	// closed (by all Listeners sharing its Counter).
	Open int
	// Addrs is the number of distinct client addresses among them that
	// count against MaxPerAddr.
	Addrs int
	// Rejected is the number of connections refused for a cap since the
	// Listener was created.
	Rejected uint64
}

// Stats returns the current counters.
func (l *Listener) Stats() Stats {
	l.cnt.mu.Lock()
	open, addrs := l.cnt.open, len(l.cnt.perAddr)
	l.cnt.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Open: open, Addrs: addrs, Rejected: l.rejected}
}

// conn is a connection returned by Listener.Accept; closing it frees its
// slot once.
type conn struct {
	net.Conn
	l       *Listener
	key     netip.Prefix
	perAddr bool
	once    sync.Once
}

// Close closes the connection and, the first time only, frees its slot.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key, c.perAddr) })
	return err
}

// NetConn returns the connection the inner listener accepted (as
// tls.Conn.NetConn does), so that callers can tell, for example, whether it
// is a *tls.Conn. Closing it directly does not free the slot.
func (c *conn) NetConn() net.Conn { return c.Conn }

// errNoCloseWrite is returned by CloseWrite when the inner connection
// cannot half-close.
var errNoCloseWrite = errors.New("netlimit: connection does not support CloseWrite")

// CloseWrite half-closes the inner connection when it supports that (as
// *net.TCPConn does), so tls.Conn.CloseWrite keeps working above the
// Listener. It does not free the slot.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoCloseWrite
}
