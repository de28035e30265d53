package netlimit

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

const ioTimeout = 5 * time.Second

// server runs an accept loop on a limited loopback listener. Every accepted
// connection gets "OK\r\n" and is sent on accepted.
type server struct {
	lim      *Listener
	addr     string
	accepted chan net.Conn
	done     chan error // Accept's final error
	rejects  chan string
}

// bye is an Options.Reject that writes "BYE\r\n".
func bye(c net.Conn) { _, _ = c.Write([]byte("BYE\r\n")) }

// startServer listens on 127.0.0.1:0 with opts. OnReject reports
// "<ip> <reason>" on s.rejects.
func startServer(t *testing.T, opts Options) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &server{
		addr:     ln.Addr().String(),
		accepted: make(chan net.Conn, 200),
		done:     make(chan error, 1),
		rejects:  make(chan string, 200),
	}
	opts.OnReject = func(a net.Addr, reason string) {
		ip, _ := remoteIP(a)
		s.rejects <- ip.String() + " " + reason
	}
	s.lim = NewListener(ln, opts)
	go func() {
		for {
			c, err := s.lim.Accept()
			if err != nil {
				s.done <- err
				return
			}
			_, _ = c.Write([]byte("OK\r\n"))
			s.accepted <- c
		}
	}()
	t.Cleanup(func() {
		s.lim.Close()
		<-s.done
		close(s.accepted)
		for c := range s.accepted {
			c.Close()
		}
	})
	return s
}

// dial connects from the loopback address src and returns the first line the
// server sends ("OK" or "BYE"), or "EOF" when it closes without a word.
func dial(t *testing.T, addr, src string) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if line == "" && isEOF(err) {
			return c, "EOF"
		}
		t.Fatalf("read greeting from %s: %q, %v", src, line, err)
	}
	return c, strings.TrimSpace(line)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// nextAccepted returns the server side of the next accepted connection.
func (s *server) nextAccepted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.accepted:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

func TestCaps(t *testing.T) {
	type attempt struct {
		src  string
		want string // "OK" or "BYE"
	}
	tests := []struct {
		name        string
		opts        Options
		attempts    []attempt
		wantRejects []string
	}{
		{
			name: "total cap",
			opts: Options{MaxConns: 3, MaxPerAddr: -1, Reject: bye},
			attempts: []attempt{
				{"127.0.0.1", "OK"}, {"127.0.0.1", "OK"}, {"127.0.0.2", "OK"},
				{"127.0.0.3", "BYE"}, {"127.0.0.1", "BYE"},
			},
			wantRejects: []string{"127.0.0.3 total", "127.0.0.1 total"},
		},
		{
			name: "per-address cap",
			opts: Options{MaxConns: 10, MaxPerAddr: 2, Reject: bye},
			attempts: []attempt{
				{"127.0.0.1", "OK"}, {"127.0.0.1", "OK"}, {"127.0.0.1", "BYE"},
				{"127.0.0.2", "OK"}, {"127.0.0.2", "OK"}, {"127.0.0.2", "BYE"},
			},
			wantRejects: []string{"127.0.0.1 per-address", "127.0.0.2 per-address"},
		},
		{
			name: "total reached before per-address",
			opts: Options{MaxConns: 3, MaxPerAddr: 2, Reject: bye},
			attempts: []attempt{
				{"127.0.0.1", "OK"}, {"127.0.0.1", "OK"}, {"127.0.0.1", "BYE"},
				{"127.0.0.2", "OK"}, {"127.0.0.3", "BYE"},
			},
			wantRejects: []string{"127.0.0.1 per-address", "127.0.0.3 total"},
		},
		{
			name: "loopback exempt from per-address only",
			opts: Options{MaxConns: 3, MaxPerAddr: 1, ExemptLoopback: true, Reject: bye},
			attempts: []attempt{
				{"127.0.0.1", "OK"}, {"127.0.0.1", "OK"}, {"127.0.0.1", "OK"},
				{"127.0.0.1", "BYE"},
			},
			wantRejects: []string{"127.0.0.1 total"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.opts)
			ok := 0
			for i, a := range tc.attempts {
				if _, got := dial(t, s.addr, a.src); got != a.want {
					t.Fatalf("attempt %d from %s: got %q, want %q", i, a.src, got, a.want)
				}
				if a.want == "OK" {
					ok++
					s.nextAccepted(t)
				}
			}
			for i, want := range tc.wantRejects {
				select {
				case got := <-s.rejects:
					if got != want {
						t.Errorf("OnReject %d = %q, want %q", i, got, want)
					}
				case <-time.After(ioTimeout):
					t.Fatalf("OnReject %d not called, want %q", i, want)
				}
			}
			st := s.lim.Stats()
			if st.Open != ok || st.Rejected != uint64(len(tc.wantRejects)) {
				t.Fatalf("stats = %+v, want Open %d, Rejected %d", st, ok, len(tc.wantRejects))
			}
		})
	}
}

func TestSlotFreedOnClose(t *testing.T) {
	s := startServer(t, Options{MaxConns: 1, Reject: bye})
	client, got := dial(t, s.addr, "127.0.0.1")
	if got != "OK" {
		t.Fatalf("first conn: %q", got)
	}
	sc := s.nextAccepted(t)

	// The client leaving does not free the slot; the server's Close does.
	client.Close()
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "BYE" {
		t.Fatalf("second conn while the first is open server-side: %q, want BYE", got)
	}
	if err := sc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := sc.Close(); err == nil {
		t.Error("second Close returned nil, want the inner error")
	}
	if st := s.lim.Stats(); st.Open != 0 || st.Addrs != 0 {
		t.Fatalf("after double close: stats %+v, want Open 0, Addrs 0", st)
	}
	// Freed exactly once: one new conn fits, a second does not.
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("conn after close: %q, want OK", got)
	}
	s.nextAccepted(t)
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "BYE" {
		t.Fatalf("conn over the cap after a double close: %q, want BYE", got)
	}
	if st := s.lim.Stats(); st.Open != 1 {
		t.Fatalf("stats %+v, want Open 1", st)
	}
}

func TestConcurrentClose(t *testing.T) {
	s := startServer(t, Options{MaxConns: 50, Reject: bye})
	var conns []net.Conn
	for range 20 {
		dial(t, s.addr, "127.0.0.1")
		conns = append(conns, s.nextAccepted(t))
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		for range 3 {
			wg.Go(func() { c.Close() })
		}
	}
	wg.Wait()
	if st := s.lim.Stats(); st.Open != 0 || st.Addrs != 0 {
		t.Fatalf("after concurrent closes: stats %+v, want Open 0, Addrs 0", st)
	}
}

func TestNilRejectCloses(t *testing.T) {
	s := startServer(t, Options{MaxConns: 1})
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("first: %q", got)
	}
	s.nextAccepted(t)
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "EOF" {
		t.Fatalf("over the cap without Reject: %q, want EOF", got)
	}
	if got := <-s.rejects; got != "127.0.0.1 total" {
		t.Fatalf("OnReject: %q", got)
	}
}

func TestRejectDeadline(t *testing.T) {
	readErr := make(chan error, 1)
	s := startServer(t, Options{
		MaxConns:      1,
		RejectTimeout: 100 * time.Millisecond,
		Reject: func(c net.Conn) {
			_, err := c.Read(make([]byte, 1)) // the client never writes
			readErr <- err
		},
	})
	dial(t, s.addr, "127.0.0.1")
	s.nextAccepted(t)
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "EOF" {
		t.Fatalf("rejected conn: %q, want EOF after Reject timed out", got)
	}
	select {
	case err := <-readErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Reject's read: %v, want a timeout", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Reject not called")
	}
}

func TestMaxRejecting(t *testing.T) {
	release := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(MaxRejecting)
	s := startServer(t, Options{
		MaxConns:      1,
		RejectTimeout: time.Minute,
		Reject: func(net.Conn) {
			calls.Done()
			<-release
		},
	})
	defer close(release)
	dial(t, s.addr, "127.0.0.1")
	s.nextAccepted(t)
	for range MaxRejecting {
		d := net.Dialer{Timeout: ioTimeout}
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	calls.Wait() // MaxRejecting Reject calls are now blocked
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "EOF" {
		t.Fatalf("rejected conn beyond MaxRejecting: %q, want EOF (closed without Reject)", got)
	}
	if st := s.lim.Stats(); st.Rejected != MaxRejecting+1 {
		t.Fatalf("stats %+v, want Rejected %d", st, MaxRejecting+1)
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewListener(ln, Options{})
	errc := make(chan error, 1)
	go func() {
		c, err := lim.Accept()
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	if err := lim.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Accept still blocked after Close")
	}
	if got := lim.Addr(); got.String() != ln.Addr().String() {
		t.Fatalf("Addr = %v, want %v", got, ln.Addr())
	}
}

func TestBelowTLS(t *testing.T) {
	pki := testpki.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewListener(ln, Options{MaxPerAddr: 1})
	tlsLn := tls.NewListener(lim, pki.ServerConfig())
	accepted := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tlsLn.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				_ = tc.SetDeadline(time.Now().Add(ioTimeout))
				_ = tc.Handshake() // the client reports failures
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		tlsLn.Close()
		<-done
	})

	cc, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ln.Addr().String(), pki.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer cc.Close()
	sc := <-accepted
	tc, ok := sc.(*tls.Conn)
	if !ok {
		t.Fatalf("accepted %T, want *tls.Conn (imapserver's canAuth needs it)", sc)
	}
	if _, err := tc.Write([]byte("OK\r\n")); err != nil {
		t.Fatalf("server write: %v", err)
	}
	line, err := bufio.NewReader(cc).ReadString('\n')
	if err != nil || line != "OK\r\n" {
		t.Fatalf("client read %q, %v", line, err)
	}
	if err := tc.CloseWrite(); err != nil {
		t.Fatalf("tls CloseWrite through the limiter: %v", err)
	}

	// A second conn from the same address is refused before any handshake.
	_, err = tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ln.Addr().String(), pki.ClientConfig("127.0.0.1"))
	if err == nil {
		t.Fatal("second TLS conn from 127.0.0.1 succeeded, want a refused handshake")
	}
	if st := lim.Stats(); st.Open != 1 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want Open 1, Rejected 1", st)
	}
	// Closing the *tls.Conn frees the slot.
	tc.Close()
	if st := lim.Stats(); st.Open != 0 {
		t.Fatalf("after tls Close: stats %+v, want Open 0", st)
	}
}

func TestUnixSocketsCountOnlyTotal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	rejected := make(chan string, 1)
	lim := NewListener(ln, Options{MaxPerAddr: 1, MaxConns: 2, OnReject: func(_ net.Addr, reason string) {
		rejected <- reason
	}})
	t.Cleanup(func() { lim.Close(); os.Remove(path) })
	results := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := lim.Accept()
			if err != nil {
				return
			}
			results <- c
		}
	}()
	for i := range 3 {
		c, err := net.DialTimeout("unix", path, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i < 2 {
			sc := <-results
			t.Cleanup(func() { sc.Close() })
		}
	}
	// The third is over MaxConns, not over MaxPerAddr.
	select {
	case reason := <-rejected:
		if reason != ReasonTotal {
			t.Fatalf("third conn rejected for %q, want %q", reason, ReasonTotal)
		}
	case <-time.After(ioTimeout):
		t.Fatal("third conn not rejected")
	}
	if st := lim.Stats(); st.Open != 2 || st.Addrs != 0 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want Open 2, Addrs 0, Rejected 1", st)
	}
}

func TestClientKey(t *testing.T) {
	l := NewListener(nil, Options{})
	exempt := NewListener(nil, Options{ExemptLoopback: true, IPv6PrefixLen: 128})
	tcp := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1234} }
	tests := []struct {
		name   string
		l      *Listener
		a, b   net.Addr
		same   bool
		counts bool
	}{
		{"IPv4 per address", l, tcp("127.0.0.1"), tcp("127.0.0.2"), false, true},
		{"IPv4 ignores port", l, tcp("127.0.0.1"), &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9}, true, true},
		{"IPv6 same /64", l, tcp("2001:db8::1"), tcp("2001:db8::ffff:1"), true, true},
		{"IPv6 other /64", l, tcp("2001:db8::1"), tcp("2001:db8:0:1::1"), false, true},
		{"IPv6 /128 option", exempt, tcp("2001:db8::1"), tcp("2001:db8::2"), false, true},
		{"mapped IPv4", l, tcp("::ffff:127.0.0.1"), tcp("127.0.0.1"), true, true},
		{"loopback exempt", exempt, tcp("127.0.0.1"), tcp("::1"), true, false},
		{"unix not counted", l, &net.UnixAddr{Name: "@", Net: "unix"}, &net.UnixAddr{Name: "@", Net: "unix"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka, ca := tc.l.clientKey(tc.a)
			kb, cb := tc.l.clientKey(tc.b)
			if ca != tc.counts || cb != tc.counts {
				t.Fatalf("counted = %v, %v; want %v", ca, cb, tc.counts)
			}
			if (ka == kb) != tc.same {
				t.Fatalf("keys %v and %v: same=%v, want %v", ka, kb, ka == kb, tc.same)
			}
		})
	}
}

// TestNetConn: the accepted connection exposes the inner one, so a caller
// can tell a *tls.Conn from a tls.NewListener below it.
func TestNetConn(t *testing.T) {
	s := startServer(t, Options{})
	client, got := dial(t, s.addr, "127.0.0.1")
	if got != "OK" {
		t.Fatalf("conn: %q", got)
	}
	sc := s.nextAccepted(t)
	inner := sc.(interface{ NetConn() net.Conn }).NetConn()
	if _, ok := inner.(*net.TCPConn); !ok {
		t.Fatalf("NetConn() = %T, want *net.TCPConn", inner)
	}
	if inner.RemoteAddr().String() != client.LocalAddr().String() {
		t.Fatalf("NetConn remote %v, client %v", inner.RemoteAddr(), client.LocalAddr())
	}
	sc.Close()
}

// TestSharedCounter: two Listeners sharing a Counter cap their connections
// together, and a slot freed on one is usable on the other.
func TestSharedCounter(t *testing.T) {
	cnt := NewCounter()
	a := startServer(t, Options{MaxConns: 2, Reject: bye, Counter: cnt})
	b := startServer(t, Options{MaxConns: 2, Reject: bye, Counter: cnt})
	if _, got := dial(t, a.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("first on a: %q", got)
	}
	ca := a.nextAccepted(t)
	if _, got := dial(t, b.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("first on b: %q", got)
	}
	b.nextAccepted(t)
	for _, s := range []*server{a, b} {
		if _, got := dial(t, s.addr, "127.0.0.1"); got != "BYE" {
			t.Fatalf("third overall: %q, want BYE", got)
		}
	}
	if st := b.lim.Stats(); st.Open != 2 || st.Rejected != 1 {
		t.Fatalf("b stats %+v, want Open 2 (shared), Rejected 1 (own)", st)
	}
	ca.Close()
	if _, got := dial(t, b.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("after a slot freed on a, b: %q", got)
	}
	b.nextAccepted(t)
}

// TestEvict: with MaxConns open, Accept asks Evict for room; a connection
// it closes makes room for the newcomer, and when it finds nothing to
// close the newcomer is refused.
func TestEvict(t *testing.T) {
	var mu sync.Mutex
	var victims []net.Conn
	evictions := 0
	s := startServer(t, Options{MaxConns: 2, Reject: bye, Evict: func() bool {
		mu.Lock()
		defer mu.Unlock()
		evictions++
		if len(victims) == 0 {
			return false
		}
		v := victims[0]
		victims = victims[1:]
		v.Close()
		return true
	}})
	for range 2 {
		if _, got := dial(t, s.addr, "127.0.0.1"); got != "OK" {
			t.Fatalf("conn within the cap: %q", got)
		}
		sc := s.nextAccepted(t)
		mu.Lock()
		victims = append(victims, sc)
		mu.Unlock()
	}
	// Full: the oldest gives way.
	mu.Lock()
	first := victims[0]
	mu.Unlock()
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "OK" {
		t.Fatalf("conn with an evictable one open: %q, want OK", got)
	}
	s.nextAccepted(t)
	if err := first.Close(); err == nil {
		t.Error("the evicted connection was still open")
	}
	// Nothing left to evict (the last victim stays, the newcomer is not
	// evictable): refused.
	mu.Lock()
	victims = nil
	mu.Unlock()
	if _, got := dial(t, s.addr, "127.0.0.1"); got != "BYE" {
		t.Fatalf("conn with nothing evictable: %q, want BYE", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if evictions != 2 {
		t.Fatalf("Evict called %d times, want 2", evictions)
	}
	if st := s.lim.Stats(); st.Open != 2 {
		t.Fatalf("stats %+v, want Open 2", st)
	}
}
