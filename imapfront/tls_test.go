package imapfront

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testTLSConfig returns a server config with a fresh self-signed
// certificate for 127.0.0.1.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// TestStartTLSRemote: a non-loopback plaintext client sees LOGINDISABLED
// and STARTTLS, and may log in after STARTTLS.
func TestStartTLSRemote(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.TLSConfig = testTLSConfig(t) })
	client, server := net.Pipe()
	defer client.Close()
	env.srv.handle(remoteConn{server}, false)
	c := &rawClient{t: t, conn: client, br: bufio.NewReader(client)}
	greet := c.line()
	if !strings.Contains(greet, "STARTTLS") || !strings.Contains(greet, "LOGINDISABLED") {
		t.Fatalf("greeting: %q", greet)
	}
	c.ok("STARTTLS")
	tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	c.conn, c.br = tc, bufio.NewReader(tc)
	u := c.ok("CAPABILITY")
	if len(grep(u, "AUTH=PLAIN")) != 1 || len(grep(u, "STARTTLS")) != 0 {
		t.Fatalf("CAPABILITY after STARTTLS: %q", u)
	}
	c.ok("LOGIN alice alice-secret")
	c.ok("SELECT INBOX")
}

// TestImplicitTLS: ServeTLS handshakes itself, allows LOGIN and offers no
// STARTTLS.
func TestImplicitTLS(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.TLSConfig = testTLSConfig(t) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go env.srv.ServeTLS(ln)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	defer conn.Close()
	c := &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
	greet := c.line()
	if strings.Contains(greet, "STARTTLS") || strings.Contains(greet, "LOGINDISABLED") || !strings.Contains(greet, "AUTH=PLAIN") {
		t.Fatalf("greeting: %q", greet)
	}
	c.ok("LOGIN alice alice-secret")
	c.ok("SELECT INBOX")
	// The poisoning guard works on implicit TLS too.
	c.write("p1 APPEND INBOX {5000+}\r\n%s", strings.Repeat("x CREATE Bad\r\n", 5000/14)+strings.Repeat("y", 5000-5000/14*14))
	if l := c.line(); !strings.HasPrefix(l, "p1 BAD") {
		t.Fatalf("oversized non-sync literal: %q", l)
	}
	if _, err := c.readLine(ioWait); err == nil {
		t.Fatalf("connection still open after rejected literal")
	}
	if u := env.rawLogin("alice").ok(`LIST "" "Bad"`); len(u) != 0 {
		t.Fatalf("literal bytes executed: %q", u)
	}
}
