package poller

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	pop3 "github.com/knadh/go-pop3"
)

// Connection failures that say what to do. When connect fails in a way a
// setting explains (plain POP3 against a TLS port or the reverse, a
// certificate that does not verify, a server without STLS), diagnose
// sets the AccountError's Hint, found where needed by a short second
// connection (a probe) that sends no credentials. The hint is part of the
// error's text, so it reaches `popbridge check`, the log and `status`.

const (
	// greetingTimeout is how long a server may take to greet (POP3 servers
	// greet at once). A server that says nothing is often a TLS server
	// waiting for our handshake.
	greetingTimeout = 10 * time.Second
	// probeTimeout bounds one diagnostic probe (at most DialTimeout).
	probeTimeout = 5 * time.Second
	// implicitTLSPort is where a server without STLS is probed for
	// implicit TLS.
	implicitTLSPort = 995
)

// greetingDeadline is the read deadline for the greeting: greetingTimeout
// from now (at most the connection's deadline, and at most DialTimeout,
// which tests shorten).
func greetingDeadline(deadline time.Time, cfg *sessionConfig) time.Time {
	d := time.Now().Add(min(greetingTimeout, cfg.DialTimeout))
	if !deadline.IsZero() && deadline.Before(d) {
		return deadline
	}
	return d
}

// connect is connectOnce with a hint on the errors a setting explains.
func connect(ctx context.Context, a Account, cfg *sessionConfig) (*pop3.Conn, *meteredConn, string, error) {
	pc, mc, greeting, err := connectOnce(ctx, a, cfg)
	if err != nil {
		err = diagnose(ctx, a, cfg, err, implicitTLSPort)
	}
	return pc, mc, greeting, err
}

// diagnose returns err with its Hint set when the failure is one a
// setting explains. tlsPort is the port probed for implicit TLS when the
// server lacks STLS.
func diagnose(ctx context.Context, a Account, cfg *sessionConfig, err error, tlsPort int) error {
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Hint != "" || ctx.Err() != nil {
		return err
	}
	addr := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	var (
		rhe tls.RecordHeaderError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
	)
	switch {
	case ae.Op == "greeting" && a.TLS != "implicit" && isTimeout(err):
		if probeImplicitTLS(ctx, a, cfg, addr) {
			ae.Hint = fmt.Sprintf("no POP3 greeting from %s, but it answers a TLS handshake: this port uses TLS from the first byte; set tls = \"implicit\"", addr)
		} else {
			ae.Hint = fmt.Sprintf("no POP3 greeting from %s within %s: check host and port (POP3 is port 110 with tls = \"starttls\" or \"none\", port 995 with tls = \"implicit\")", addr, min(greetingTimeout, cfg.DialTimeout))
		}
	case ae.Op == "tls" && errors.As(err, &rhe) && looksLikePOP3(rhe.RecordHeader[:]):
		switch stls, perr := probeSTLS(ctx, cfg, addr); {
		case perr == nil && stls:
			ae.Hint = fmt.Sprintf("%s sent a plain POP3 greeting, not TLS, and offers STLS: set tls = \"starttls\" (or port = 995 with tls = \"implicit\")", addr)
		case perr == nil:
			ae.Hint = fmt.Sprintf("%s sent a plain POP3 greeting, not TLS, and offers no STLS: use the server's TLS port (usually 995) with tls = \"implicit\"; tls = \"none\" sends the password unencrypted", addr)
		default:
			ae.Hint = fmt.Sprintf("%s sent a plain POP3 greeting, not TLS: this port does not use implicit TLS; set tls = \"starttls\", or use port 995 with tls = \"implicit\"", addr)
		}
	case errors.Is(err, ErrSTLSUnavailable):
		tlsAddr := net.JoinHostPort(a.Host, strconv.Itoa(tlsPort))
		if tlsPort != a.Port && probeVerifiedTLS(ctx, a, cfg, tlsAddr) {
			ae.Hint = fmt.Sprintf("the server does not offer STLS on port %d, but implicit TLS on port %d works: set tls = \"implicit\" and port = %d", a.Port, tlsPort, tlsPort)
		} else {
			ae.Hint = fmt.Sprintf("the server does not offer STLS on port %d and no verified implicit TLS was found on port %d: ask the provider for its TLS port (then tls = \"implicit\"); tls = \"none\" works but sends the password unencrypted, only for a trusted network", a.Port, tlsPort)
		}
	case errors.As(err, &ua):
		if a.TLSCAFile != "" {
			ae.Hint = fmt.Sprintf("the server's certificate is not signed by a CA this system trusts nor by tls_ca_file %s: set tls_ca_file to the CA that signed it", a.TLSCAFile)
		} else {
			ae.Hint = "the server's certificate is not signed by a CA this system trusts: for a private or self-signed CA, set tls_ca_file to its PEM file (tls_skip_verify = true only for testing)"
		}
	case errors.As(err, &he):
		names := he.Certificate.DNSNames
		for _, ip := range he.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		ae.Hint = fmt.Sprintf("the server's certificate is for %s, not %q: set host to one of those names", strings.Join(names, ", "), a.Host)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		ae.Hint = "the server's certificate has expired or is not valid yet: tell the provider, and check this machine's clock"
	}
	return err
}

// isTimeout reports whether err is a read deadline or timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// looksLikePOP3 reports whether the first bytes of a TLS record header
// are a POP3 status line.
func looksLikePOP3(b []byte) bool {
	s := string(b)
	return strings.HasPrefix(s, "+OK") || strings.HasPrefix(s, "-ERR")
}

// probeDial opens a probe connection with the session's dialer.
func probeDial(ctx context.Context, cfg *sessionConfig, addr string) (net.Conn, context.CancelFunc, error) {
	pctx, cancel := context.WithTimeout(ctx, min(probeTimeout, cfg.DialTimeout))
	c, err := cfg.Dial(pctx, "tcp", addr)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	stop := context.AfterFunc(pctx, func() { c.Close() })
	deadline, _ := pctx.Deadline()
	c.SetDeadline(deadline)
	return c, func() { stop(); c.Close(); cancel() }, nil
}

// probeImplicitTLS reports whether addr completes a TLS handshake, the
// certificate unchecked: only the protocol matters here.
func probeImplicitTLS(ctx context.Context, a Account, cfg *sessionConfig, addr string) bool {
	c, done, err := probeDial(ctx, cfg, addr)
	if err != nil {
		return false
	}
	defer done()
	tc := tls.Client(c, &tls.Config{ServerName: a.Host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10})
	return tc.Handshake() == nil
}

// probeVerifiedTLS reports whether addr completes a TLS handshake that
// verifies as the account's TLS settings ask, and then greets with +OK.
func probeVerifiedTLS(ctx context.Context, a Account, cfg *sessionConfig, addr string) bool {
	tcfg, err := tlsConfig(a, cfg.Logger)
	if err != nil {
		return false
	}
	c, done, err := probeDial(ctx, cfg, addr)
	if err != nil {
		return false
	}
	defer done()
	tc := tls.Client(c, tcfg)
	if tc.Handshake() != nil {
		return false
	}
	line, err := readStatus(bufio.NewReader(tc))
	if err == nil {
		io.WriteString(tc, "QUIT\r\n")
	}
	return err == nil && strings.HasPrefix(line, "+OK")
}

// probeSTLS connects to addr in plaintext and reports whether its CAPA
// lists STLS.
func probeSTLS(ctx context.Context, cfg *sessionConfig, addr string) (bool, error) {
	c, done, err := probeDial(ctx, cfg, addr)
	if err != nil {
		return false, err
	}
	defer done()
	br := bufio.NewReader(c)
	greeting, err := readStatus(br)
	if err != nil {
		return false, err
	}
	if !strings.HasPrefix(greeting, "+OK") {
		return false, fmt.Errorf("greeting %q: %w", greeting, ErrProtocol)
	}
	caps, ok, err := preTLSCapa(c, br)
	if err != nil {
		return false, err
	}
	io.WriteString(c, "QUIT\r\n")
	return ok && caps.STLS, nil
}
