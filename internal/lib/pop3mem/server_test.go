package pop3mem

import (
	"bufio"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// client is a minimal raw POP3 client for asserting wire behaviour.
type client struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	gr string // greeting
}

func dial(t *testing.T, s *Server) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return wrap(t, c)
}

func wrap(t *testing.T, c net.Conn) *client {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.gr = cl.line()
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) send(l string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, l+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(l string) string {
	c.t.Helper()
	c.send(l)
	return c.line()
}

func (c *client) ok(l string) string {
	c.t.Helper()
	r := c.cmd(l)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: got %q", l, r)
	}
	return r
}

// multi reads the lines of a multi-line response up to ".", unstuffed.
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

func (c *client) login() {
	c.t.Helper()
	c.ok("USER " + DefaultUser)
	c.ok("PASS " + DefaultPassword)
}

const msgA = "Subject: a\r\nFrom: x@example.com\r\n\r\nline one\r\n.dotted\r\n..two\r\n.\r\nend\r\n"

func TestBasicSession(t *testing.T) {
	s := NewServer()
	defer s.Close()
	ua := s.AddMessage([]byte(msgA))
	ub := s.AddMessage([]byte("Subject: b\n\nbare lf body\n"))
	if ua == ub {
		t.Fatalf("UIDLs not unique: %q", ua)
	}
	c := dial(t, s)
	if !regexp.MustCompile(`^\+OK .* <[^>]+@pop3mem>$`).MatchString(c.gr) {
		t.Errorf("greeting %q has no APOP timestamp", c.gr)
	}
	c.ok("CAPA")
	caps := strings.Join(c.multi(), "|")
	if caps != "TOP|UIDL|USER|PIPELINING|RESP-CODES|AUTH-RESP-CODE|SASL PLAIN XOAUTH2" {
		t.Errorf("CAPA = %q", caps)
	}
	if r := c.cmd("STAT"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("STAT before login: %q", r)
	}
	c.login()
	sizeA, sizeB := len(msgA), len("Subject: b\r\n\r\nbare lf body\r\n")
	if r := c.ok("STAT"); r != "+OK 2 "+itoa(sizeA+sizeB) {
		t.Errorf("STAT = %q", r)
	}
	c.ok("LIST")
	if got := strings.Join(c.multi(), "|"); got != "1 "+itoa(sizeA)+"|2 "+itoa(sizeB) {
		t.Errorf("LIST = %q", got)
	}
	if r := c.ok("LIST 2"); r != "+OK 2 "+itoa(sizeB) {
		t.Errorf("LIST 2 = %q", r)
	}
	c.ok("UIDL")
	if got := strings.Join(c.multi(), "|"); got != "1 "+ua+"|2 "+ub {
		t.Errorf("UIDL = %q", got)
	}
	c.ok("RETR 1")
	if got := strings.Join(c.multi(), "\r\n") + "\r\n"; got != msgA {
		t.Errorf("RETR 1 = %q, want %q", got, msgA)
	}
	// Raw wire check for stuffing.
	c.send("RETR 1")
	var wire strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		wire.WriteString(l)
		if l == ".\r\n" {
			break
		}
	}
	if !strings.Contains(wire.String(), "\r\n..dotted\r\n...two\r\n..\r\nend\r\n.\r\n") {
		t.Errorf("RETR not dot-stuffed: %q", wire.String())
	}
	c.ok("TOP 1 0")
	if got := strings.Join(c.multi(), "|"); got != "Subject: a|From: x@example.com|" {
		t.Errorf("TOP 1 0 = %q", got)
	}
	c.ok("TOP 1 2")
	if got := len(c.multi()); got != 5 {
		t.Errorf("TOP 1 2 gave %d lines, want 5", got)
	}
	c.ok("DELE 1")
	if r := c.cmd("RETR 1"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("RETR of deleted: %q", r)
	}
	c.ok("RSET")
	c.ok("DELE 2")
	c.ok("NOOP")
	if r := c.cmd("RETR 9"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("RETR 9: %q", r)
	}
	if n := len(s.Messages()); n != 2 {
		t.Fatalf("DELE applied before QUIT: %d messages", n)
	}
	c.ok("QUIT")
	if d := s.Deleted(); len(d) != 1 || d[0] != ub {
		t.Errorf("Deleted = %v, want [%s]", d, ub)
	}
	if m := s.Messages(); len(m) != 1 || m[0].UIDL != ua || string(m[0].Raw) != msgA {
		t.Errorf("Messages after QUIT = %+v", m)
	}
	if log := s.Log(); log[0] != "CAPA" || log[3] != "PASS ***" || log[len(log)-1] != "QUIT" {
		t.Errorf("Log = %q", log)
	}
	if s.Count("RETR") != 4 || s.Count("dele") != 2 || s.Count("QUIT") != 1 {
		t.Errorf("counts RETR=%d DELE=%d QUIT=%d", s.Count("RETR"), s.Count("DELE"), s.Count("QUIT"))
	}
}

var itoa = strconv.Itoa

func TestDroppedSessionDeletesNothing(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.AddMessage([]byte("Subject: x\r\n\r\nx\r\n"))
	c := dial(t, s)
	c.login()
	c.ok("DELE 1")
	c.c.Close()
	c2 := dial(t, s)
	c2.login()
	if r := c2.ok("STAT"); r != "+OK 1 17" {
		t.Errorf("STAT after dropped session = %q", r)
	}
	if len(s.Deleted()) != 0 {
		t.Errorf("Deleted = %v", s.Deleted())
	}
}

func TestSnapshotPerSession(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.AddMessage([]byte("a"))
	c := dial(t, s)
	c.login()
	s.AddMessage([]byte("b"))
	if r := c.ok("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("session saw a message added after login: %q", r)
	}
	s.SetMessages([]Message{{UIDL: "same", Raw: []byte("one")}, {UIDL: "same", Raw: []byte("two")}})
	c2 := dial(t, s)
	c2.login()
	c2.ok("UIDL")
	if got := strings.Join(c2.multi(), "|"); got != "1 same|2 same" {
		t.Errorf("UIDL with reused ids = %q", got)
	}
}

func TestAuth(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	plain := b64("\x00" + DefaultUser + "\x00" + DefaultPassword)
	xo := b64("user=" + DefaultUser + "\x01auth=Bearer " + DefaultToken + "\x01\x01")
	xoBad := b64("user=" + DefaultUser + "\x01auth=Bearer nope\x01\x01")
	tests := []struct {
		name  string
		opts  []Option
		steps [][2]string // line to send, expected reply prefix
	}{
		{"user pass", nil, [][2]string{{"USER alice", "+OK"}, {"PASS secret", "+OK"}}},
		{"wrong pass", nil, [][2]string{{"USER alice", "+OK"}, {"PASS nope", "-ERR [AUTH]"}}},
		{"pass without user", nil, [][2]string{{"PASS secret", "-ERR"}}},
		{"plain ir", nil, [][2]string{{"AUTH PLAIN " + plain, "+OK"}}},
		{"plain continuation", nil, [][2]string{{"AUTH PLAIN", "+ "}, {plain, "+OK"}}},
		{"plain bad", nil, [][2]string{{"AUTH PLAIN " + b64("\x00alice\x00x"), "-ERR [AUTH]"}}},
		{"plain cancel", nil, [][2]string{{"AUTH PLAIN", "+ "}, {"*", "-ERR"}}},
		{"xoauth2 ir", nil, [][2]string{{"AUTH XOAUTH2 " + xo, "+OK"}}},
		{"xoauth2 two-step", nil, [][2]string{{"AUTH XOAUTH2", "+ "}, {xo, "+OK"}}},
		{"xoauth2 bad token", nil, [][2]string{{"AUTH XOAUTH2 " + xoBad, "+ eyJ"}, {"", "-ERR [AUTH]"}}},
		{"xoauth2 ir refused", []Option{WithXOAUTH2NoInitialResponse()},
			[][2]string{{"AUTH XOAUTH2 " + xo, "-ERR Protocol error."}, {"AUTH XOAUTH2", "+ "}, {xo, "+OK"}}},
		{"custom user", []Option{WithUser("bob", "pw"), WithToken("t")},
			[][2]string{{"AUTH XOAUTH2 " + b64("user=bob\x01auth=Bearer t\x01\x01"), "+OK"}}},
		{"unknown mech", nil, [][2]string{{"AUTH CRAM-MD5", "-ERR"}}},
		{"apop refused", []Option{WithoutAPOP()}, [][2]string{{"APOP alice 00", "-ERR"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(tt.opts...)
			defer s.Close()
			c := dial(t, s)
			for _, st := range tt.steps {
				if r := c.cmd(st[0]); !strings.HasPrefix(r, st[1]) {
					t.Fatalf("%q: got %q, want prefix %q", st[0], r, st[1])
				}
			}
		})
	}
	t.Run("apop", func(t *testing.T) {
		s := NewServer()
		defer s.Close()
		c := dial(t, s)
		stamp := regexp.MustCompile(`<[^>]+>`).FindString(c.gr)
		sum := md5.Sum([]byte(stamp + DefaultPassword))
		if r := c.cmd("APOP alice 0123"); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Errorf("bad APOP: %q", r)
		}
		c.ok("APOP alice " + hex.EncodeToString(sum[:]))
	})
}

func tlsClient(t *testing.T, c net.Conn, p *testpki.PKI) net.Conn {
	t.Helper()
	tc := tls.Client(c, p.ClientConfig("127.0.0.1"))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return tc
}

func TestSTLS(t *testing.T) {
	p := testpki.New(t)
	s := NewServer(WithTLS(p.ServerConfig()))
	defer s.Close()
	c := dial(t, s)
	c.ok("CAPA")
	if caps := strings.Join(c.multi(), " "); !strings.Contains(caps, "STLS") {
		t.Fatalf("CAPA without STLS: %q", caps)
	}
	c.ok("STLS")
	if c.r.Buffered() != 0 {
		t.Fatal("data after STLS +OK")
	}
	tc := tlsClient(t, c.c, p)
	c.c, c.r = tc, bufio.NewReader(tc)
	c.ok("CAPA")
	if caps := strings.Join(c.multi(), " "); strings.Contains(caps, "STLS") {
		t.Errorf("CAPA after TLS still offers STLS: %q", caps)
	}
	if r := c.cmd("STLS"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("second STLS: %q", r)
	}
	c.login()
	c.ok("QUIT")
}

func TestImplicitTLS(t *testing.T) {
	p := testpki.New(t)
	s := NewUnstartedServer(WithTLS(p.ServerConfig()))
	s.StartTLS()
	defer s.Close()
	raw, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := wrap(t, tlsClient(t, raw, p))
	c.ok("CAPA")
	if caps := strings.Join(c.multi(), " "); strings.Contains(caps, "STLS") {
		t.Errorf("implicit TLS offers STLS: %q", caps)
	}
	c.login()
	c.ok("QUIT")
}

// readAll reads until EOF or error, with the connection's deadline.
func readAll(c *client) (string, error) {
	b, err := io.ReadAll(c.r)
	return string(b), err
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestFaults(t *testing.T) {
	body := "Subject: f\r\n\r\n" + strings.Repeat("0123456789\r\n", 100) + ".dot\r\n.\r\nafter\r\n"
	p := testpki.New(t)
	tests := []struct {
		name   string
		faults Faults
		run    func(t *testing.T, s *Server, c *client)
	}{
		{"ErrOn", Faults{ErrOn: map[string]string{"retr": "[SYS/TEMP] try later", "PASS": "[IN-USE] locked"}},
			func(t *testing.T, s *Server, c *client) {
				c.ok("USER alice")
				if r := c.cmd("PASS secret"); r != "-ERR [IN-USE] locked" {
					t.Errorf("PASS = %q", r)
				}
				s.UpdateFaults(func(f *Faults) { delete(f.ErrOn, "PASS") })
				c.ok("PASS secret")
				if r := c.cmd("RETR 1"); r != "-ERR [SYS/TEMP] try later" {
					t.Errorf("RETR = %q", r)
				}
			}},
		{"DropRETRAfter", Faults{DropRETRAfter: 100},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("RETR 1")
				got, err := readAll(c)
				if err != nil || len(got) != 100 {
					t.Errorf("got %d bytes, err %v; want 100 then EOF", len(got), err)
				}
			}},
		{"StallRETRAfter", Faults{StallRETRAfter: 50},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("RETR 1")
				c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				got, err := readAll(c)
				if !isTimeout(err) || len(got) != 50 {
					t.Errorf("got %d bytes, err %v; want 50 then a stall", len(got), err)
				}
			}},
		{"StallAfterDELE", Faults{StallAfterDELE: true},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("DELE 1")
				c.send("QUIT")
				c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := readAll(c); !isTimeout(err) {
					t.Errorf("after DELE: %v, want a stall", err)
				}
				if len(s.Deleted()) != 0 {
					t.Error("stalled QUIT deleted messages")
				}
			}},
		{"Drip", Faults{Drip: 5 * time.Millisecond},
			func(t *testing.T, s *Server, c *client) {
				start := time.Now()
				r := c.cmd("USER alice")
				if el := time.Since(start); r != "+OK" || el < 4*5*time.Millisecond {
					t.Errorf("USER = %q after %v; want +OK dripped over >= 20ms", r, el)
				}
			}},
		{"StallAfterGreeting", Faults{StallAfterGreeting: true},
			func(t *testing.T, s *Server, c *client) {
				c.send("CAPA")
				c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := readAll(c); !isTimeout(err) {
					t.Errorf("after greeting: %v, want a stall", err)
				}
			}},
		{"NoUIDL", Faults{NoUIDL: true},
			func(t *testing.T, s *Server, c *client) {
				c.ok("CAPA")
				if caps := strings.Join(c.multi(), " "); strings.Contains(caps, "UIDL") {
					t.Errorf("CAPA = %q", caps)
				}
				c.login()
				if r := c.cmd("UIDL"); !strings.HasPrefix(r, "-ERR") {
					t.Errorf("UIDL = %q", r)
				}
			}},
		{"BareLF", Faults{BareLF: true},
			func(t *testing.T, s *Server, c *client) {
				c.send("USER alice")
				l, _ := c.r.ReadString('\n')
				if l != "+OK\n" {
					t.Errorf("line %q, want bare LF", l)
				}
			}},
		{"LongLine", Faults{LongLine: 3 << 20},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("RETR 1")
				if l := c.line(); len(l) != 3<<20 {
					t.Errorf("first body line %d bytes", len(l))
				}
				if got := len(c.multi()); got != 105 {
					t.Errorf("%d more lines", got)
				}
			}},
		{"UnstuffedDot", Faults{UnstuffedDot: true},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("RETR 1")
				lines := c.multi()
				if lines[len(lines)-1] != "dot" {
					t.Errorf("message did not end at the unstuffed dot: last %q", lines[len(lines)-1])
				}
				if l := c.line(); l != "after" {
					t.Errorf("line after early end = %q", l)
				}
			}},
		{"NeverEnding", Faults{NeverEnding: true},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("RETR 1")
				n := 0
				for n < 4<<20 {
					l, err := c.r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						t.Fatalf("message ended after %d bytes: %v", n, err)
					}
					n += len(l)
				}
			}},
		{"ListSizeScale", Faults{ListSizeScale: 0.1},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				want := "+OK 1 " + itoa(int(float64(len(body))*0.1))
				if r := c.ok("LIST 1"); r != want {
					t.Errorf("LIST 1 = %q, want %q", r, want)
				}
			}},
		{"QuitDrop", Faults{QuitDrop: true},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("DELE 1")
				c.send("QUIT")
				if got, err := readAll(c); got != "" || err != nil {
					t.Errorf("QUIT reply %q, %v; want EOF", got, err)
				}
				if len(s.Deleted()) != 0 {
					t.Error("dropped QUIT deleted messages")
				}
			}},
		{"QuitErr", Faults{QuitErr: true},
			func(t *testing.T, s *Server, c *client) {
				c.login()
				c.ok("DELE 1")
				if r := c.cmd("QUIT"); !strings.HasPrefix(r, "-ERR") {
					t.Errorf("QUIT = %q", r)
				}
				if len(s.Deleted()) != 0 {
					t.Error("-ERR QUIT deleted messages")
				}
			}},
		{"STLSInject", Faults{STLSInject: true},
			func(t *testing.T, s *Server, c *client) {
				c.ok("STLS")
				if l := c.line(); l != "+OK injected" {
					t.Errorf("no injected line: %q", l)
				}
			}},
		{"NoSTLS", Faults{NoSTLS: true},
			func(t *testing.T, s *Server, c *client) {
				c.ok("CAPA")
				if caps := strings.Join(c.multi(), " "); strings.Contains(caps, "STLS") {
					t.Errorf("CAPA = %q", caps)
				}
				if r := c.cmd("STLS"); !strings.HasPrefix(r, "-ERR") {
					t.Errorf("STLS = %q", r)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(WithTLS(p.ServerConfig()))
			defer s.Close()
			s.AddMessage([]byte(body))
			s.SetFaults(tt.faults)
			c := dial(t, s)
			tt.run(t, s, c)
		})
	}
}

func TestReorder(t *testing.T) {
	s := NewServer()
	defer s.Close()
	for _, b := range []string{"a", "b", "c"} {
		s.AddMessageUIDL(b, []byte(b))
	}
	s.SetFaults(Faults{Reorder: true})
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		c := dial(t, s)
		c.login()
		c.ok("UIDL")
		seen[strings.Join(c.multi(), "|")] = true
		c.ok("QUIT")
	}
	if len(seen) != 3 {
		t.Errorf("orders seen: %v, want 3 different", seen)
	}
	for k := range seen {
		if !strings.Contains(k, "1 ") || len(strings.Split(k, "|")) != 3 {
			t.Errorf("bad listing %q", k)
		}
	}
}

func TestCloseEndsStall(t *testing.T) {
	s := NewServer()
	s.SetFaults(Faults{StallAfterGreeting: true})
	c := dial(t, s)
	c.send("CAPA")
	if s.OpenConnections() != 1 {
		t.Fatalf("open connections = %d", s.OpenConnections())
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the stalled connection")
	}
	if _, err := readAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read after Close: %v", err)
	}
	if s.OpenConnections() != 0 {
		t.Errorf("open connections after Close = %d", s.OpenConnections())
	}
}

func TestCustomCaps(t *testing.T) {
	s := NewServer(WithCaps("USER", "UIDL", "LOGIN-DELAY 900", "EXPIRE NEVER"))
	defer s.Close()
	s.SetFaults(Faults{NoUIDL: true})
	c := dial(t, s)
	c.ok("CAPA")
	if got := strings.Join(c.multi(), "|"); got != "USER|LOGIN-DELAY 900|EXPIRE NEVER" {
		t.Errorf("CAPA = %q", got)
	}
}

func TestLoginDelay(t *testing.T) {
	s := NewServer(WithLoginDelay(time.Hour))
	defer s.Close()
	c := dial(t, s)
	c.ok("CAPA")
	if caps := strings.Join(c.multi(), "|"); !strings.HasSuffix(caps, "|LOGIN-DELAY 3600") {
		t.Errorf("CAPA = %q", caps)
	}
	c.login()
	c.ok("QUIT")
	c2 := dial(t, s)
	c2.ok("USER " + DefaultUser)
	if r := c2.cmd("PASS " + DefaultPassword); !strings.HasPrefix(r, "-ERR [LOGIN-DELAY]") {
		t.Fatalf("second login within the delay: %q", r)
	}
	if r := c2.cmd("STAT"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("STAT after a refused login: %q", r)
	}
	if n := s.LoginDelayRefusals(); n != 1 {
		t.Errorf("refusals = %d, want 1", n)
	}
	// A wrong password is refused as such, not counted as too soon.
	c3 := dial(t, s)
	c3.ok("USER " + DefaultUser)
	if r := c3.cmd("PASS wrong"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("wrong password: %q", r)
	}
	if n := s.LoginDelayRefusals(); n != 1 {
		t.Errorf("refusals = %d after a wrong password, want 1", n)
	}
}
