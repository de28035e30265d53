package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
)

func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a, err := ln.Accept()
		if err != nil {
			return
		}
		defer a.Close()
		_ = tls.Server(a, srv).Handshake()
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	err = tls.Client(b, cli).Handshake()
	b.Close()
	<-done
	return err
}

func TestHandshake(t *testing.T) {
	p := New(t)
	for _, name := range []string{"127.0.0.1", "localhost", "::1"} {
		if err := handshake(t, p.ServerConfig(), p.ClientConfig(name)); err != nil {
			t.Errorf("handshake as %s: %v", name, err)
		}
	}
	if _, err := os.Stat(p.KeyFile); err != nil {
		t.Fatal(err)
	}
	other := New(t)
	err := handshake(t, p.ServerConfig(), other.ClientConfig("127.0.0.1"))
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("foreign CA: got %v, want UnknownAuthorityError", err)
	}
}

func TestExpired(t *testing.T) {
	p := New(t, Expired())
	err := handshake(t, p.ServerConfig(), p.ClientConfig("127.0.0.1"))
	var ci x509.CertificateInvalidError
	if !errors.As(err, &ci) || ci.Reason != x509.Expired {
		t.Errorf("got %v, want expired certificate error", err)
	}
}
