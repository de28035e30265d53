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
