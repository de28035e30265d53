package poller

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	pop3 "github.com/knadh/go-pop3"
)

// Session defaults; sessionConfig overrides them (tests use short ones).
const (
	defaultDialTimeout = 30 * time.Second
	defaultIOTimeout   = 60 * time.Second
	defaultSlowWindow  = 2 * time.Minute
	defaultSlowBytes   = 4 << 10 // per defaultSlowWindow: about 34 bytes/s
	defaultWindow      = 32
	maxStatusLine      = 8 << 10 // greeting, +OK/-ERR lines, CAPA lines
	maxCapaBytes       = 64 << 10
	readBufSize        = 64 << 10
)

// sessionConfig tunes a session. Zero fields take the defaults above.
type sessionConfig struct {
	// Dial opens the TCP connection; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds connect, TLS handshake, greeting, STLS and login.
	DialTimeout time.Duration
	// IOTimeout bounds every single read and write: a server that sends
	// nothing for this long has stalled.
	IOTimeout time.Duration
	// SlowWindow and SlowBytes are the guard against slow-drip servers: a
	// response still arriving after SlowWindow must have brought at least
	// SlowBytes in each SlowWindow so far (defaults 2 min and 4 KiB, about
	// 34 bytes/s), or it has stalled too. There is no limit on a
	// response's total time: a slow but steady server (1 KB/s) delivers a
	// message of any size.
	SlowWindow time.Duration
	SlowBytes  int64
	// Window is the most RETR/TOP/DELE commands in flight when the server
	// advertises PIPELINING (at most 32).
	Window int
}

func (c *sessionConfig) setDefaults() {
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = defaultIOTimeout
	}
	if c.SlowWindow <= 0 {
		c.SlowWindow = defaultSlowWindow
	}
	if c.SlowBytes <= 0 {
		c.SlowBytes = defaultSlowBytes
	}
	if c.Window <= 0 || c.Window > defaultWindow {
		c.Window = defaultWindow
	}
}

// handoff is the go-pop3 Dialer: it hands go-pop3 the connection that
// openSession has already dialed, secured and read the greeting from.
type handoff struct{ c net.Conn }

// Dial implements pop3.Dialer.
func (h *handoff) Dial(network, addr string) (net.Conn, error) {
	c := h.c
	if c == nil {
		return nil, errors.New("dialer used twice")
	}
	h.c = nil
	return c, nil
}

// tlsConfig builds the client TLS configuration for an account: system
// roots plus TLSCAFile, TLS 1.2 minimum, server name from Host.
func tlsConfig(a Account, log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: a.Host, MinVersion: tls.VersionTLS12}
	if a.TLSCAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(a.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls_ca_file: %w (%w)", err, ErrBadConfig)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read tls_ca_file %s: no PEM certificates found: %w", a.TLSCAFile, ErrBadConfig)
		}
		cfg.RootCAs = pool
	}
	if a.TLSSkipVerify {
		cfg.InsecureSkipVerify = true
		log.Warn("TLS certificate verification disabled for upstream (tls_skip_verify)", "host", a.Host)
	}
	return cfg, nil
}

// readStatus reads one line of at most maxStatusLine bytes without its line
// end.
func readStatus(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxStatusLine {
			return "", fmt.Errorf("status line longer than %d bytes: %w", maxStatusLine, ErrProtocol)
		}
		if err == nil {
			return strings.TrimRight(string(buf), "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// preTLSCapa sends CAPA before STLS and returns the capabilities; ok is
// false if the server answered -ERR.
func preTLSCapa(c net.Conn, br *bufio.Reader) (caps capabilities, ok bool, err error) {
	if _, err := io.WriteString(c, "CAPA\r\n"); err != nil {
		return caps, false, err
	}
	st, err := readStatus(br)
	if err != nil {
		return caps, false, err
	}
	if strings.HasPrefix(st, "-ERR") {
		return caps, false, nil
	}
	if !strings.HasPrefix(st, "+OK") {
		return caps, false, fmt.Errorf("CAPA reply %q: %w", st, ErrProtocol)
	}
	var lines []string
	total := 0
	for {
		l, err := readStatus(br)
		if err != nil {
			return caps, false, err
		}
		if l == "." {
			return parseCapa(lines), true, nil
		}
		if total += len(l); total > maxCapaBytes {
			return caps, false, fmt.Errorf("CAPA response over %d bytes: %w", maxCapaBytes, ErrProtocol)
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// connectOnce dials, secures the connection as the account asks (implicit
// TLS, STLS, or none), reads the greeting and hands the connection to
// go-pop3. It returns the go-pop3 connection, the metered connection under
// it and the greeting line. connect (diagnose.go) wraps it.
func connectOnce(ctx context.Context, a Account, cfg *sessionConfig) (*pop3.Conn, *meteredConn, string, error) {
	addr := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	switch a.TLS {
	case "implicit", "starttls", "none":
	default:
		return nil, nil, "", opErr(a, "dial", fmt.Errorf("unknown tls mode %q (want implicit, starttls or none): %w", a.TLS, ErrBadConfig))
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	deadline, _ := dctx.Deadline() // the sooner of ctx's and DialTimeout

	var tcfg *tls.Config
	if a.TLS != "none" {
		var err error
		if tcfg, err = tlsConfig(a, cfg.Logger); err != nil {
			return nil, nil, "", opErr(a, "tls", err)
		}
	}
	raw, err := cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, "", opErr(a, "dial", err)
	}
	ok := false
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	defer func() {
		stop()
		if !ok {
			raw.Close()
		}
	}()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, nil, "", opErr(a, "dial", err)
	}
	ctxErr := func(op string, err error) error {
		if cerr := dctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		ae := opErr(a, op, err)
		if op == "tls" {
			ae.Temporary = transient(err)
		}
		return ae
	}

	var conn net.Conn = raw
	if a.TLS == "implicit" {
		tc := tls.Client(raw, tcfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, nil, "", ctxErr("tls", err)
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, 512)
	if err := raw.SetReadDeadline(greetingDeadline(deadline, cfg)); err != nil {
		return nil, nil, "", opErr(a, "dial", err)
	}
	greeting, err := readStatus(br)
	if err != nil {
		return nil, nil, "", ctxErr("greeting", err)
	}
	if err := raw.SetReadDeadline(deadline); err != nil {
		return nil, nil, "", opErr(a, "dial", err)
	}
	if !strings.HasPrefix(greeting, "+OK") {
		if strings.HasPrefix(greeting, "-ERR") {
			return nil, nil, "", replyErr(a, "greeting", greeting)
		}
		return nil, nil, "", opErr(a, "greeting", fmt.Errorf("greeting %q: %w", greeting, ErrProtocol))
	}
	var prefix []byte
	switch a.TLS {
	case "starttls":
		caps, capaOK, err := preTLSCapa(conn, br)
		if err != nil {
			return nil, nil, "", ctxErr("capa", err)
		}
		if capaOK && !caps.STLS {
			return nil, nil, "", opErr(a, "stls", ErrSTLSUnavailable)
		}
		// A server without CAPA may still know STLS; its reply decides.
		if _, err := io.WriteString(conn, "STLS\r\n"); err != nil {
			return nil, nil, "", ctxErr("stls", err)
		}
		st, err := readStatus(br)
		if err != nil {
			return nil, nil, "", ctxErr("stls", err)
		}
		if !strings.HasPrefix(st, "+OK") {
			e := &AccountError{Account: a.Name, Op: "stls", Reply: st, Err: ErrSTLSUnavailable}
			return nil, nil, "", e
		}
		if br.Buffered() != 0 {
			return nil, nil, "", opErr(a, "stls", ErrPlaintextInjection)
		}
		tc := tls.Client(raw, tcfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, nil, "", ctxErr("tls", err)
		}
		conn = tc
		prefix = []byte(greeting + "\r\n")
	default:
		// Replay the greeting and whatever came with it.
		rest, _ := br.Peek(br.Buffered())
		prefix = append([]byte(greeting+"\r\n"), rest...)
	}
	mc := newMeteredConn(conn, raw, cfg, prefix)
	mc.expect(maxStatusLine+4096, maxStatusLine, deadline, ErrProtocol)
	client := pop3.New(pop3.Opt{Host: a.Host, Port: a.Port, Dialer: &handoff{c: traced(mc, a, cfg)}})
	pc, err := client.NewConn()
	if err != nil {
		return nil, nil, "", ctxErr("greeting", err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, nil, "", opErr(a, "dial", err)
	}
	if a.TLS != "none" {
		if tc, isTLS := conn.(*tls.Conn); isTLS {
			st := tc.ConnectionState()
			cfg.Logger.Debug("upstream connected", "addr", addr,
				"tls", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
		}
	} else {
		cfg.Logger.Debug("upstream connected without TLS", "addr", addr)
	}
	ok = true
	return pc, mc, greeting, nil
}

// transient reports whether a failed TLS handshake may succeed later: the
// connection broke or timed out. Anything else (certificate, protocol
// version, cipher, an alert from the server, plaintext instead of TLS) is a
// configuration problem that retrying will not fix.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// opErr wraps a non-reply error for account a.
func opErr(a Account, op string, err error) *AccountError {
	return &AccountError{Account: a.Name, Op: op, Temporary: classifyErr(err), Err: err}
}

// replyErr wraps a server -ERR reply for account a.
func replyErr(a Account, op, reply string) *AccountError {
	return &AccountError{Account: a.Name, Op: op, Reply: reply, Temporary: classifyReply(op, reply), Err: &replyError{line: reply}}
}
