package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// AutoCert is the tls_cert (and tls_key) value that asks for a self-signed
// certificate kept in data_dir.
const AutoCert = "auto"

// Files of the self-signed certificate, in data_dir.
const (
	AutoCertFile = "auto-cert.pem"
	AutoKeyFile  = "auto-key.pem"
	// AutoCertValidity is the validity period of a generated certificate.
	AutoCertValidity = 10 * 365 * 24 * time.Hour
)

// AutoCertInfo describes the self-signed certificate in use.
type AutoCertInfo struct {
	// CertFile and KeyFile are the PEM files in data_dir.
	CertFile, KeyFile string
	// Fingerprint is the SHA-256 of the certificate (DER), as upper-case
	// hex pairs separated by colons, like `openssl x509 -fingerprint
	// -sha256`: what a client pins.
	Fingerprint string
	// Names are the DNS names and IP addresses the certificate covers.
	Names []string
	// NotAfter is when it expires.
	NotAfter time.Time
	// Created is true when this call generated it.
	Created bool
}

// LoadAutoCert returns the self-signed certificate kept in dir (created
// 0700 if missing), generating it on first use: ECDSA P-256, valid for
// AutoCertValidity, for names (DNS names or IP addresses), written to
// AutoCertFile and AutoKeyFile with mode 0600. Later calls reuse it
// unchanged, whatever names are asked for, so a pinned fingerprint stays
// valid; it is replaced only when it has expired or its files do not hold a
// matching certificate and key (a warning is logged on logger then).
func LoadAutoCert(dir string, names []string, logger *slog.Logger) (tls.Certificate, AutoCertInfo, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	info := AutoCertInfo{CertFile: filepath.Join(dir, AutoCertFile), KeyFile: filepath.Join(dir, AutoKeyFile)}
	cert, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile)
	switch {
	case err == nil && time.Now().Before(cert.Leaf.NotAfter):
		return cert, describeCert(info, cert), nil
	case err == nil:
		logger.Warn("self-signed IMAP certificate expired; generating a new one (its fingerprint changes)",
			"cert", info.CertFile, "not_after", cert.Leaf.NotAfter)
	case errors.Is(err, fs.ErrNotExist):
		// First use (or a half-finished first use): generate.
	case errors.Is(err, fs.ErrPermission):
		return tls.Certificate{}, info, fmt.Errorf("load self-signed certificate: %w", err)
	default:
		logger.Warn("self-signed IMAP certificate unusable; generating a new one (its fingerprint changes)",
			"cert", info.CertFile, "err", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, info, fmt.Errorf("create data directory: %w", err)
	}
	certPEM, keyPEM, err := generateSelfSigned(names, time.Now())
	if err != nil {
		return tls.Certificate{}, info, err
	}
	// The key first: a crash between the two leaves a pair that does not
	// match, which the next start replaces.
	if err := writeFileAtomic(info.KeyFile, keyPEM); err != nil {
		return tls.Certificate{}, info, fmt.Errorf("write self-signed key: %w", err)
	}
	if err := writeFileAtomic(info.CertFile, certPEM); err != nil {
		return tls.Certificate{}, info, fmt.Errorf("write self-signed certificate: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, info, fmt.Errorf("load generated certificate: %w", err)
	}
	info = describeCert(info, cert)
	info.Created = true
	return cert, info, nil
}

// describeCert fills info from the leaf of cert.
func describeCert(info AutoCertInfo, cert tls.Certificate) AutoCertInfo {
	leaf := cert.Leaf
	info.Fingerprint = Fingerprint(leaf.Raw)
	info.NotAfter = leaf.NotAfter
	info.Names = slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, ip.String())
	}
	return info
}

// Fingerprint formats the SHA-256 of a DER certificate as colon-separated
// upper-case hex pairs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// generateSelfSigned makes an ECDSA P-256 certificate for names, valid from
// an hour before now for AutoCertValidity, and returns it and its PKCS #8
// key as PEM.
func generateSelfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "popbridge self-signed", Organization: []string{"popbridge"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(AutoCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

// writeFileAtomic writes data to path with mode 0600 through a temporary
// file in the same directory, fsynced and renamed into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// autoCertNames lists the names a generated certificate covers: the host
// name (and its first label when it is qualified), localhost, the loopback
// addresses, the IP addresses the IMAP listeners are bound to when they
// name one, and, when a listener takes every address (0.0.0.0, [::] or
// ":993"), the host's own unicast addresses (its LAN addresses), so that
// clients on the network that connect by IP can verify it.
func (c *Config) autoCertNames() []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if h, err := os.Hostname(); err == nil && validHostname(h) {
		h = strings.ToLower(h)
		add(h)
		if short, _, ok := strings.Cut(h, "."); ok {
			add(short)
		}
	}
	add("localhost")
	add("127.0.0.1")
	add("::1")
	for _, l := range []string{c.IMAP.Listen, c.IMAP.ListenTLS} {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		switch ip := net.ParseIP(host); {
		case host == "" || ip != nil && ip.IsUnspecified():
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range hostAddrs(addrs) {
					add(a)
				}
			}
		case ip != nil:
			add(ip.String())
		case validHostname(host):
			add(strings.ToLower(host))
		}
	}
	return names
}

// hostAddrs returns the unicast addresses among a host's interface
// addresses, loopback and link-local ones left out (link-local IPv6
// addresses need a zone no certificate can name).
func hostAddrs(addrs []net.Addr) []string {
	var out []string
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if ip != nil && ip.IsGlobalUnicast() {
			out = append(out, ip.String())
		}
	}
	return out
}

// AutoCertificate loads, or generates on first use, the self-signed
// certificate of a configuration with tls_cert = "auto", in its data_dir
// (see [LoadAutoCert]). `popbridge check` uses it to print the fingerprint
// before the first `serve`.
func (c *Config) AutoCertificate(logger *slog.Logger) (AutoCertInfo, error) {
	if !c.IMAP.TLSAuto() {
		return AutoCertInfo{}, errors.New("auto certificate: tls_cert is not \"auto\"")
	}
	_, info, err := LoadAutoCert(c.Path(c.DataDir), c.autoCertNames(), logger)
	return info, err
}
