package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a test CA and one server certificate it signed.
type PKI struct {
	// CAPEM is the CA certificate in PEM form.
	CAPEM []byte
	// CertPEM and KeyPEM are the server certificate and its private key.
	CertPEM, KeyPEM []byte
	// CAFile, CertFile and KeyFile hold the PEM blocks above, in a directory
	// removed when the test ends. KeyFile is mode 0600, the others 0644.
	CAFile, CertFile, KeyFile string
	// Cert is the server certificate with its key, for tls.Config.Certificates.
	Cert tls.Certificate
	// Pool contains only the CA certificate.
	Pool *x509.CertPool
}

// Option changes how the server certificate is made.
type Option func(*options)

type options struct {
	notBefore, notAfter time.Time
	names               []string
}

// Expired makes the server certificate expire an hour before now.
func Expired() Option {
	return func(o *options) {
		o.notBefore = time.Now().Add(-48 * time.Hour)
		o.notAfter = time.Now().Add(-time.Hour)
	}
}

// Names replaces the DNS names and IP addresses the server certificate is
// valid for (default: localhost, 127.0.0.1, ::1).
func Names(names ...string) Option {
	return func(o *options) { o.names = names }
}

// New makes a fresh CA and server certificate and writes them under
// tb.TempDir(). It fails the test on error.
func New(tb testing.TB, opts ...Option) *PKI {
	tb.Helper()
	p, err := Generate(tb.TempDir(), opts...)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return p
}

// Generate is New without testing.TB: it writes the PEM files into dir.
func Generate(dir string, opts ...Option) (*PKI, error) {
	o := options{
		notBefore: time.Now().Add(-time.Hour),
		notAfter:  time.Now().Add(24 * time.Hour),
		names:     []string{"localhost", "127.0.0.1", "::1"},
	}
	for _, fn := range opts {
		fn(&o)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "popbridge test CA"},
		NotBefore:             time.Now().Add(-72 * time.Hour),
		NotAfter:              time.Now().Add(72 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: o.names[0]},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range o.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &PKI{
		CAPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		Pool:     x509.NewCertPool(),
	}
	p.Pool.AddCert(caCert)
	if p.Cert, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{p.CAFile, p.CAPEM, 0o644}, {p.CertFile, p.CertPEM, 0o644}, {p.KeyFile, p.KeyPEM, 0o600}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ServerConfig returns a server tls.Config presenting the certificate, with
// TLS 1.2 as the minimum version.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}, MinVersion: tls.VersionTLS12}
}

// ClientConfig returns a client tls.Config that trusts only the test CA.
func (p *PKI) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}
