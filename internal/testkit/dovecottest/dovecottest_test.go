package dovecottest

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartServesPOP3(t *testing.T) {
	s := Start(t, Options{Users: map[string]string{"bob": "pw"}})
	s.AddMessage(t, "bob", []byte("Subject: hi\n\nhello\n"))
	if n := s.Count(t, "bob"); n != 1 {
		t.Fatalf("Count = %d", n)
	}
	check := func(c net.Conn) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		cmd := func(line string) string {
			if line != "" {
				c.Write([]byte(line + "\r\n"))
			}
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return strings.TrimRight(l, "\r\n")
		}
		if g := cmd(""); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("greeting %q", g)
		}
		cmd("USER bob")
		if r := cmd("PASS pw"); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("PASS: %q\n%s", r, s.Log())
		}
		if r := cmd("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
			t.Errorf("STAT = %q", r)
		}
		cmd("QUIT")
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	check(c)
	tc, err := tls.Dial("tcp", s.AddrTLS(), s.PKI.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	check(tc)
}

// TestSetPasswordAndStop: a password changed while Dovecot runs takes
// effect at the next login (the old one is refused); a user added later
// can log in; Stop closes the listener.
func TestSetPasswordAndStop(t *testing.T) {
	s := Start(t, Options{Users: map[string]string{"bob": "pw-1"}})
	login := func(user, pw string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		var last string
		for _, line := range []string{"", "USER " + user, "PASS " + pw} {
			if line != "" {
				c.Write([]byte(line + "\r\n"))
			}
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			last = strings.TrimRight(l, "\r\n")
		}
		return last
	}
	if r := login("bob", "pw-1"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("first password: %q", r)
	}
	s.SetPassword(t, "bob", "pw-2")
	if r := login("bob", "pw-1"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("old password after the change: %q", r)
	}
	if r := login("bob", "pw-2"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("new password: %q\n%s", r, s.Log())
	}
	s.SetPassword(t, "newcomer", "pw-3")
	if r := login("newcomer", "pw-3"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("added user: %q\n%s", r, s.Log())
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("Dovecot still accepts after Stop")
	}
}
