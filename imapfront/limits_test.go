package imapfront

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/authlimit"
)

// dialFrom dials the server from a chosen loopback source address
// (127.0.0.0/8 is all loopback on Linux), so tests can play several
// clients. It returns a raw client past the greeting.
func (e *testEnv) dialFrom(t *testing.T, src string) *rawClient {
	t.Helper()
	return e.dialAddrFrom(t, e.addr, src)
}

// dialAddrFrom is dialFrom to the server's listener at addr.
func (e *testEnv) dialAddrFrom(t *testing.T, addr, src string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioWait}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting from %s: %q", src, l)
	}
	return c
}

// serveRelabelled serves the env's server on a second loopback listener
// whose connections report their remote address 127.0.0.N as 192.0.2.N
// (TEST-NET-1): to the server they are clients of other machines, which the
// per-address cap and the plaintext-login policy treat as such. It returns
// the listener's address; Shutdown closes it.
func (e *testEnv) serveRelabelled(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(relabelListener{ln})
	return ln.Addr().String()
}

type relabelListener struct{ net.Listener }

func (l relabelListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	a := *c.RemoteAddr().(*net.TCPAddr)
	ip := a.IP.To4()
	a.IP = net.IPv4(192, 0, 2, ip[3])
	return relabelConn{c, &a}, nil
}

type relabelConn struct {
	net.Conn
	remote net.Addr
}

func (c relabelConn) RemoteAddr() net.Addr { return c.remote }

// notifyClosed makes the server's logger signal closed each time a
// connection has ended and freed its slot (the debug line logConnClosed).
func notifyClosed(o *Options, closed chan<- struct{}) {
	o.Logger = slog.New(notifyHandler{Handler: o.Logger.Handler(), msg: logConnClosed, ch: closed})
}

// notifyHandler sends on ch for every record with message msg.
type notifyHandler struct {
	slog.Handler
	msg string
	ch  chan<- struct{}
}

func (h notifyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default: // nobody waits for this many
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h notifyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return notifyHandler{h.Handler.WithAttrs(as), h.msg, h.ch}
}

func (h notifyHandler) WithGroup(name string) slog.Handler {
	return notifyHandler{h.Handler.WithGroup(name), h.msg, h.ch}
}

// TestLoginThrottle drives the login penalty through the real server with
// a recorded-sleeps clock: repeated failures from one address wait 2, 4, 8
// and 15 s (across connections); another address logging in with the right
// password is not delayed; failures log address and user, never the
// password.
func TestLoginThrottle(t *testing.T) {
	env := newEnv(t)
	attacker := env.dialFrom(t, "127.0.0.1")
	for i := 1; i <= maxLoginFailures; i++ {
		if _, st := attacker.cmd("LOGIN alice guess%d", i); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("attempt %d: %s", i, st)
		}
	}
	// The third failure closed that connection; the attacker comes back.
	attacker = env.dialFrom(t, "127.0.0.1")
	if _, st := attacker.cmd("LOGIN alice guess4"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("attempt 4: %s", st)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second}
	if got := env.clock.take(); !slices.Equal(got, want) {
		t.Fatalf("penalty sleeps = %v, want %v", got, want)
	}
	// Up to 100 attempts: the curve stays capped at 15 s, never a lockout.
	for i := 5; i <= 100; {
		attacker = env.dialFrom(t, "127.0.0.1")
		for range maxLoginFailures {
			if _, st := attacker.cmd("LOGIN alice guess%d", i); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
				t.Fatalf("attempt %d: %s", i, st)
			}
			if i++; i > 100 {
				break
			}
		}
	}
	got := env.clock.take()
	if len(got) != 96 {
		t.Fatalf("%d penalty sleeps for attempts 5..100, want 96", len(got))
	}
	for i, d := range got {
		if d != 15*time.Second {
			t.Fatalf("attempt %d waited %v, want 15s", i+5, d)
		}
	}

	// Another address, another user, right password: no wait at all.
	env.dialFrom(t, "127.0.0.2").ok("LOGIN bob bob-secret")
	if got := env.clock.take(); len(got) != 0 {
		t.Fatalf("bob from another address waited %v", got)
	}
	// The attacker's address keeps its level: guessing another user's
	// password from it costs the full 15 s at once, where bob's first
	// failure from elsewhere costs 2 s.
	env.dialFrom(t, "127.0.0.1").cmd("LOGIN bob guess5")
	if got := env.clock.take(); !slices.Equal(got, []time.Duration{15 * time.Second}) {
		t.Fatalf("attacker address waited %v, want [15s]", got)
	}
	env.clock.advance(time.Hour) // every record forgotten
	env.dialFrom(t, "127.0.0.2").cmd("LOGIN bob guess6")
	if got := env.clock.take(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
		t.Fatalf("first failure from a fresh address waited %v, want [2s]", got)
	}

	logs := env.logs.String()
	if strings.Contains(logs, "guess") {
		t.Fatalf("log contains a tried password:\n%s", logs)
	}
	if n := strings.Count(logs, "imap login failed"); n != 102 {
		t.Errorf("logged %d failed logins, want 102", n)
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "imap login failed") && (!strings.Contains(l, "user=") || !strings.Contains(l, "conn=127.0.0.")) {
			t.Errorf("failed login logged without user and address: %s", l)
		}
	}
}

// TestLoginUnknownUserCostsTheSame: an unknown user, a known user with a
// wrong password and a known user with an unusable hash each cost one full
// password verification (the first and last against the dummy hash) and the
// same penalty; timing is not measured, the counters are.
func TestLoginUnknownUserCostsTheSame(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Users = append(o.Users, User{Name: "broken", PasswordHash: "$2a$10$short"}) })
	tests := []struct {
		name, src, user string
		dummy           int64
		sasl            bool // AUTHENTICATE PLAIN instead of LOGIN
	}{
		{"unknown user", "127.0.0.3", "mallory", 1, false},
		{"known user, wrong password", "127.0.0.4", "alice", 0, false},
		{"unusable configured hash", "127.0.0.5", "broken", 1, false},
		{"AUTHENTICATE PLAIN, unknown user", "127.0.0.6", "trudy", 1, true},
		{"AUTHENTICATE PLAIN, wrong password", "127.0.0.7", "bob", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v0, d0 := hooksOf(t, env.srv).verifies.Load(), hooksOf(t, env.srv).dummyVerifies.Load()
			c := env.dialFrom(t, tt.src)
			cmd := "LOGIN " + tt.user + " wrong-password"
			if tt.sasl {
				cmd = "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+tt.user+"\x00wrong-password"))
			}
			if _, st := c.cmd("%s", cmd); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
				t.Fatalf("LOGIN: %s", st)
			}
			if v := hooksOf(t, env.srv).verifies.Load() - v0; v != 1 {
				t.Errorf("verifications = %d, want 1", v)
			}
			if d := hooksOf(t, env.srv).dummyVerifies.Load() - d0; d != tt.dummy {
				t.Errorf("dummy-hash verifications = %d, want %d", d, tt.dummy)
			}
			if got := env.clock.take(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
				t.Errorf("penalty = %v, want [2s]", got)
			}
		})
	}
}

// TestLoginPenaltyAbortedByShutdown: a login waiting out a long penalty
// ends when the server shuts down.
func TestLoginPenaltyAbortedByShutdown(t *testing.T) {
	// A sleeper that only a cancelled context wakes.
	started := make(chan struct{}, 1)
	lim := authlimit.New(authlimit.Options{Sleep: func(ctx context.Context, d time.Duration) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}})
	env := newEnv(t, func(o *Options) { o.AuthLimiter = lim })
	c := env.raw()
	c.write("a LOGIN alice wrong")
	<-started
	done := make(chan error, 1)
	go func() { done <- env.srv.Shutdown(t.Context()) }()
	for {
		l, err := c.readLine(ioWait)
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "a ") {
			if !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
				t.Fatalf("aborted login: %q", l)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestConnectionCaps: over the total cap a client gets BYE and the slot is
// freed when a connection logs out; over the per-address cap likewise,
// while other addresses are served.
func TestConnectionCaps(t *testing.T) {
	t.Run("total", func(t *testing.T) {
		closed := make(chan struct{}, 16)
		env := newEnv(t, func(o *Options) { o.MaxConns = 3; notifyClosed(o, closed) })
		// Logged-in connections fill the cap (connections that have not
		// logged in would give way to the newcomer: TestPreLoginBudget).
		var cs []*rawClient
		for range 3 {
			c := env.dialFrom(t, "127.0.0.1")
			c.ok("LOGIN alice alice-secret")
			cs = append(cs, c)
		}
		expectBye(t, env.addr, "127.0.0.1")
		cs[0].cmd("LOGOUT")
		<-closed
		env.dialFrom(t, "127.0.0.1").ok("LOGIN alice alice-secret")
	})
	t.Run("per address", func(t *testing.T) {
		// Loopback clients are exempt from the per-address cap: the
		// server is reached through a listener that presents 127.0.0.N
		// as the non-loopback 192.0.2.N.
		closed := make(chan struct{}, 16)
		env := newEnv(t, func(o *Options) { o.MaxConnsPerAddr = 2; o.AllowPlaintextAuth = true; notifyClosed(o, closed) })
		addr := env.serveRelabelled(t)
		a := env.dialAddrFrom(t, addr, "127.0.0.1")
		env.dialAddrFrom(t, addr, "127.0.0.1")
		expectBye(t, addr, "127.0.0.1")
		env.dialAddrFrom(t, addr, "127.0.0.2").ok("LOGIN bob bob-secret")
		a.cmd("LOGOUT")
		<-closed
		env.dialAddrFrom(t, addr, "127.0.0.1").ok("LOGIN alice alice-secret")
	})
	t.Run("loopback exempt from per address", func(t *testing.T) {
		env := newEnv(t, func(o *Options) { o.MaxConnsPerAddr = 1 })
		env.dialFrom(t, "127.0.0.1")
		env.dialFrom(t, "127.0.0.1").ok("LOGIN alice alice-secret")
	})
	t.Run("implicit TLS", func(t *testing.T) {
		env := newEnv(t, func(o *Options) { o.TLSConfig = testTLSConfig(t); o.MaxConns = 1 })
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go env.srv.ServeTLS(ln)
		first, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		fr := bufio.NewReader(first)
		if l, _ := fr.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("first greeting: %q", l)
		}
		// Logged in, so it does not give way to the newcomer.
		io.WriteString(first, "a LOGIN alice alice-secret\r\n")
		if l, _ := fr.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("first login: %q", l)
		}
		second, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("rejected client gets no handshake: %v", err)
		}
		defer second.Close()
		second.SetDeadline(time.Now().Add(ioWait))
		if b, _ := io.ReadAll(second); string(b) != byeTooMany {
			t.Fatalf("over the cap on implicit TLS: %q", b)
		}
	})
}

// expectBye dials from src and expects the cap's BYE, then the close.
func expectBye(t *testing.T, addr, src string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioWait))
	if b, err := io.ReadAll(conn); string(b) != byeTooMany {
		t.Fatalf("over the cap: %q (%v)", b, err)
	}
}

// TestMailboxLimit: CREATE and RENAME beyond MaxMailboxes answer NO
// [LIMIT], missing parents counting; room made by DELETE is usable.
func TestMailboxLimit(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.MaxMailboxes = 10 })
	c := env.rawLogin("alice")
	have := len(c.ok(`LIST "" *`))
	if have >= 9 {
		t.Fatalf("a new user already has %d mailboxes", have)
	}
	for i := have; i < 9; i++ {
		c.ok("CREATE box%d", i)
	}
	if _, st := c.cmd("CREATE a/b"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("CREATE needing 2 mailboxes with 1 left: %s", st)
	}
	if _, st := c.cmd("RENAME box%d x/y/z", have); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("RENAME creating 2 parents with 1 left: %s", st)
	}
	c.ok("RENAME box%d renamed", have) // moving costs nothing
	c.ok("CREATE last")
	if _, st := c.cmd("CREATE one-too-many"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("CREATE over the limit: %s", st)
	}
	if _, st := c.cmd("RENAME INBOX saved"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Fatalf("RENAME INBOX (creates a mailbox) over the limit: %s", st)
	}
	c.ok("DELETE last")
	c.ok("CREATE again")
	if n := len(c.ok(`LIST "" *`)); n != 10 {
		t.Fatalf("LIST shows %d mailboxes, want 10", n)
	}
	// Delivery is never refused by the IMAP limit.
	env.deliver("alice", "INBOX", msg("still delivered"))
	c.ok("SELECT INBOX")
}

// TestIdleTimeoutOption: New refuses an idle timeout under 30 minutes;
// imapserver's 35-minute deadline is replaced by IdleTimeout while its
// short deadlines pass unchanged.
func TestIdleTimeoutOption(t *testing.T) {
	st := newEnv(t).st
	if _, err := New(Options{Store: st, IdleTimeout: 29 * time.Minute}); err == nil {
		t.Fatal("New accepted a 29 min idle timeout")
	}
	srv, err := New(Options{Store: st, IdleTimeout: 2 * time.Hour})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rec := &deadlineRecorder{}
	cs := newConnState(srv, rec)
	now := time.Now()
	tests := []struct {
		name string
		set  time.Time
		want time.Duration // from now; 0: unchanged
	}{
		{"imapserver idle 35 min", now.Add(35 * time.Minute), 2 * time.Hour},
		{"command 30 s", now.Add(30 * time.Second), 0},
		{"literal 5 min", now.Add(5 * time.Minute), 0},
		{"cleared", time.Time{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs.SetReadDeadline(tt.set)
			if tt.want == 0 {
				if !rec.got.Equal(tt.set) {
					t.Fatalf("deadline changed to %v", rec.got)
				}
				return
			}
			if d := rec.got.Sub(now); d < tt.want || d > tt.want+time.Minute {
				t.Fatalf("deadline in %v, want %v", d, tt.want)
			}
		})
	}
}

// deadlineRecorder is a net.Conn that records read deadlines.
type deadlineRecorder struct {
	net.Conn
	got time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error { d.got = t; return nil }
func (d *deadlineRecorder) RemoteAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestLiteralScannerVerdicts: which literal announcements poison a
// connection before imapserver parses them.
func TestLiteralScannerVerdicts(t *testing.T) {
	tests := []struct {
		name  string
		input []string // fed in these chunks
		want  int
	}{
		{"small sync literal", []string{"a SEARCH TEXT {10}\r\n0123456789\r\n"}, litOK},
		{"small non-sync literal", []string{"a CREATE {4096+}\r\n" + strings.Repeat("x", 4096) + "\r\n"}, litOK},
		{"big non-sync literal", []string{"a APPEND INBOX {4097+}\r\n"}, litNonSyncTooBig},
		{"big sync literal in SEARCH", []string{"a SEARCH TEXT {4294967295}\r\n"}, litSyncTooBig},
		{"big sync literal in CREATE", []string{"a CREATE {5000}\r\n"}, litSyncTooBig},
		{"big sync literal in APPEND", []string{"a APPEND INBOX (\\Seen) {50000}\r\n"}, litOK},
		{"APPEND with mailbox literal first", []string{"a APPEND {5}\r\n", "INBOX {50000}\r\n"}, litOK},
		{"append lower case, split chunks", []string{"a app", "end INBOX {50", "000}\r\n"}, litOK},
		{"second command after literal data", []string{"a APPEND INBOX {3}\r\nabc\r\nb SEARCH TEXT {5000}\r\n"}, litSyncTooBig},
		{"literal data looking like a command", []string{"a APPEND INBOX {24}\r\nb SEARCH TEXT {5000}\r\n\r\n"}, litOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s literalScanner
			got := litOK
			for _, chunk := range tt.input {
				if v, _ := s.feed([]byte(chunk)); v != litOK {
					got = v
					break
				}
			}
			if got != tt.want {
				t.Fatalf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}

// TestBigSyncLiteralAnsweredAtOnce: a synchronising literal over 4096
// bytes outside APPEND is answered BAD at once (imapserver alone would wait
// for a line the client never sends) and the connection is closed; its
// data, if sent anyway, never runs.
func TestBigSyncLiteralAnsweredAtOnce(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	start := time.Now()
	c.write("a CREATE {5000}\r\nx CREATE Injected")
	l, err := c.readLine(ioWait)
	if err != nil || !strings.HasPrefix(l, "a BAD") {
		t.Fatalf("answer: %q %v", l, err)
	}
	if _, err := c.readLine(ioWait); err == nil {
		t.Fatal("connection still open")
	}
	// Without the fix imapserver waits its 30 s command timeout; anything
	// well under that shows the answer did not wait for it.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("answered after %v", d)
	}
	if u := env.rawLogin("alice").ok(`LIST "" Injected`); len(u) != 0 {
		t.Fatalf("literal data executed: %q", u)
	}
}

// TestServeTLSListener: a tls.NewListener handed to ServeTLS sits above
// the connection caps; its connections are still recognised as TLS (no
// double handshake, LOGIN allowed, no STARTTLS).
func TestServeTLSListener(t *testing.T) {
	conf := testTLSConfig(t)
	env := newEnv(t, func(o *Options) { o.TLSConfig = conf })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go env.srv.ServeTLS(tls.NewListener(ln, conf))
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	c := &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
	if greet := c.line(); strings.Contains(greet, "STARTTLS") || !strings.Contains(greet, "AUTH=PLAIN") {
		t.Fatalf("greeting: %q", greet)
	}
	c.ok("LOGIN alice alice-secret")
}

// TestConnectionCapSharedByListeners: MaxConns counts the connections of
// Serve and ServeTLS together.
func TestConnectionCapSharedByListeners(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.TLSConfig = testTLSConfig(t); o.MaxConns = 1 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go env.srv.ServeTLS(ln)
	// The plain listener's one slot, logged in so that it does not give
	// way (TestPreLoginGivesWayAtTotal).
	env.dialFrom(t, "127.0.0.1").ok("LOGIN alice alice-secret")
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioWait))
	if b, _ := io.ReadAll(conn); string(b) != byeTooMany {
		t.Fatalf("second connection, on the TLS listener: %q", b)
	}
}
