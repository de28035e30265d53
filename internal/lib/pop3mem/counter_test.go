package pop3mem

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitOpen waits until f reports n open sessions (the server counts on its
// own goroutines).
func waitOpen(t *testing.T, what string, f func() int, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d sessions open, want %d", what, f(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSessionCounting: a session counts from accept until QUIT is read (or
// the connection ends); the maximum and total are kept, per server and in
// a shared counter.
func TestSessionCounting(t *testing.T) {
	var shared SessionCounter
	s := NewServer(WithSessionCounter(&shared))
	defer s.Close()
	a, b := dial(t, s), dial(t, s)
	waitOpen(t, "two clients", s.OpenSessions, 2)
	a.login()
	a.ok("QUIT") // counted as ended before the reply
	if n := s.OpenSessions(); n != 1 {
		t.Errorf("%d sessions open after a QUIT was answered, want 1", n)
	}
	b.c.Close() // gone without QUIT
	waitOpen(t, "after a close", s.OpenSessions, 0)
	if s.MaxOpenSessions() != 2 || shared.Max() != 2 || shared.Total() != 2 || shared.Open() != 0 {
		t.Errorf("server max %d, shared max %d total %d open %d; want 2, 2, 2, 0",
			s.MaxOpenSessions(), shared.Max(), shared.Total(), shared.Open())
	}
}

// TestProxyCounts: sessions through a Proxy reach the server and are
// counted like the server counts them.
func TestProxyCounts(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.AddMessage([]byte(msgA))
	var shared SessionCounter
	px := NewProxy(s.Addr(), &shared)
	defer px.Close()
	conn := func() *client {
		c, err := net.Dial("tcp", net.JoinHostPort(px.Host(), strconv.Itoa(px.Port())))
		if err != nil {
			t.Fatal(err)
		}
		return wrap(t, c)
	}
	a, b := conn(), conn()
	if !strings.HasPrefix(a.gr, "+OK pop3mem") {
		t.Fatalf("greeting through the proxy: %q", a.gr)
	}
	waitOpen(t, "two clients", shared.Open, 2)
	a.login()
	if l := a.ok("RETR 1"); !strings.HasPrefix(l, "+OK") {
		t.Fatal(l)
	}
	if got := strings.Join(a.multi(), "\r\n") + "\r\n"; got != msgA {
		t.Errorf("RETR through the proxy: %q", got)
	}
	a.ok("QUIT")
	if n := shared.Open(); n != 1 {
		t.Errorf("%d sessions open after QUIT through the proxy, want 1", n)
	}
	b.c.Close()
	waitOpen(t, "after a close", shared.Open, 0)
	if px.MaxOpenSessions() != 2 || px.Sessions() != 2 {
		t.Errorf("proxy max %d total %d, want 2 and 2", px.MaxOpenSessions(), px.Sessions())
	}
}

// TestRate: Faults.Rate delivers every byte, at about the rate asked.
func TestRate(t *testing.T) {
	s := NewServer()
	defer s.Close()
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n", 300) // 19.2 KB
	s.AddMessage([]byte(body))
	c := dial(t, s)
	c.login()
	s.SetFaults(Faults{Rate: 40_000})
	start := time.Now()
	c.ok("RETR 1")
	got := strings.Join(c.multi(), "\r\n") + "\r\n"
	el := time.Since(start)
	if got != body {
		t.Fatalf("throttled RETR returned %d bytes, want the %d of the message", len(got), len(body))
	}
	// 19.2 KB at 40 KB/s: about 480 ms; never much faster.
	if el < 400*time.Millisecond {
		t.Errorf("RETR took %v, want about 480 ms at 40 KB/s", el)
	}
}
