package poller

import (
	"bufio"
	"bytes"
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

// meteredConn is the connection go-pop3 reads and writes. It puts a
// deadline on every Read and Write (the sooner of now+ioTimeout and, during
// the login, the login's absolute deadline), fails a response that brings
// fewer than slowBytes in a slowWindow (a slow drip), counts bytes against
// the current response's budget and line-length limit, replays the
// greeting that was read before go-pop3 got the connection, and remembers
// the first error, after which it refuses all I/O: a connection that
// failed once is never trusted again.
//
// It reads the socket in 64 KiB chunks and accounts for bytes as it hands
// them up (to go-pop3 one line at a time, or a whole message body through
// readBody), so budgets and line limits apply to what is consumed.
//
// It is used by one goroutine at a time (the session's caller); only the
// raw connection's Close may be called concurrently (ctx cancellation).
type meteredConn struct {
	net.Conn           // TLS or TCP
	raw       net.Conn // the TCP connection, closed by Abort and on ctx.Done
	ioTimeout time.Duration

	prefix   []byte    // replayed before the connection's own bytes
	buf      []byte    // read from Conn, not yet handed up: buf[r:w]
	r, w     int       //
	pending  error     // error returned with the bytes in buf
	deadline time.Time // absolute deadline of the current response; zero: none
	// The slow-drip guard: bytes received since winStart (zero: the
	// current response has not read the socket yet).
	slowWindow time.Duration
	slowBytes  int64
	winStart   time.Time
	winBytes   int64
	read       int64 // bytes handed up so far
	budget     int64 // bytes allowed for the current response
	limit      int64 // read may not exceed this; < 0: no limit
	line       int64 // length of the current (unterminated) line
	maxLine    int64 // > 0: longest line allowed
	overflow   error // what an overrun of limit or maxLine wraps
	err        error // first I/O error; sticky

	capturing bool
	capture   []byte // first bytes read since capture started
}

func newMeteredConn(c, raw net.Conn, cfg *sessionConfig, prefix []byte) *meteredConn {
	return &meteredConn{Conn: c, raw: raw, ioTimeout: cfg.IOTimeout, slowWindow: cfg.SlowWindow, slowBytes: cfg.SlowBytes,
		prefix: prefix, limit: -1, overflow: ErrProtocol}
}

// slowError is a response that arrives too slowly: fewer than want bytes
// in window. It is a timeout (net.Error), like a stall.
type slowError struct {
	got, want int64
	window    time.Duration
}

func (e *slowError) Error() string {
	return fmt.Sprintf("response too slow: %d bytes in %v, at least %d wanted", e.got, e.window, e.want)
}

// Timeout implements net.Error.
func (e *slowError) Timeout() bool { return true }

// Temporary implements net.Error.
func (e *slowError) Temporary() bool { return true }

// expect sets the budget for the next response: at most budget more bytes
// from the connection, lines of at most maxLine bytes (0: no limit), all
// before deadline (zero: no absolute deadline). Exceeding the budget or the
// line limit fails with overflow (ErrMessageTooLarge for message data,
// ErrProtocol for protocol lines). The slow-drip window starts afresh with
// the response's first read of the socket.
func (c *meteredConn) expect(budget, maxLine int64, deadline time.Time, overflow error) {
	c.budget = budget
	c.limit = c.read + budget
	c.maxLine = maxLine
	c.deadline = deadline
	c.overflow = overflow
	c.winStart, c.winBytes = time.Time{}, 0
}

func (c *meteredConn) next() time.Time {
	return c.nextFrom(time.Now())
}

func (c *meteredConn) nextFrom(now time.Time) time.Time {
	d := now.Add(c.ioTimeout)
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		d = c.deadline
	}
	return d
}

func (c *meteredConn) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return c.err
}

// fill makes sure buf holds unread bytes, reading the socket if needed.
func (c *meteredConn) fill() error {
	if c.err != nil {
		return c.err
	}
	if c.r < c.w {
		return nil
	}
	if c.pending != nil {
		return c.fail(c.pending)
	}
	if c.buf == nil {
		c.buf = make([]byte, readBufSize)
	}
	now := time.Now()
	if c.slowWindow > 0 {
		switch {
		case c.winStart.IsZero():
			c.winStart = now
		case now.Sub(c.winStart) >= c.slowWindow:
			if c.winBytes < c.slowBytes {
				return c.fail(&slowError{got: c.winBytes, want: c.slowBytes, window: now.Sub(c.winStart).Round(time.Millisecond)})
			}
			c.winStart, c.winBytes = now, 0
		}
	}
	if err := c.Conn.SetReadDeadline(c.nextFrom(now)); err != nil {
		return c.fail(err)
	}
	n, err := c.Conn.Read(c.buf)
	c.r, c.w = 0, n
	c.winBytes += int64(n)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			err = fmt.Errorf("response not complete by its deadline: %w", err)
		}
		if n == 0 {
			return c.fail(err)
		}
		c.pending = err
	}
	return nil
}

// Read implements net.Conn for go-pop3. It hands up at most one line per
// call, so go-pop3's bufio.Reader never holds bytes past the line it was
// asked for: after each ReadOne or ReadAll returns, the rest of the stream
// is still here, and readBody can take a message body directly.
func (c *meteredConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	var src []byte
	if len(c.prefix) > 0 {
		src = c.prefix
	} else {
		if err := c.fill(); err != nil {
			return 0, err
		}
		src = c.buf[c.r:c.w]
	}
	if i := bytes.IndexByte(src, '\n'); i >= 0 {
		src = src[:i+1]
	}
	if c.limit >= 0 {
		room := max(c.limit-c.read, 0)
		if int64(len(src)) > room+1 {
			src = src[:room+1] // one byte past the budget is enough to notice
		}
	}
	n := copy(p, src)
	if n == 0 {
		return 0, nil
	}
	if len(c.prefix) > 0 {
		c.prefix = c.prefix[n:]
	} else {
		c.r += n
	}
	b := p[:n]
	c.read += int64(n)
	if c.capturing && len(c.capture) < 64 {
		c.capture = append(c.capture, b[:min(n, 64-len(c.capture))]...)
	}
	c.line += int64(n) // Read never hands up past a line end
	if c.maxLine > 0 && c.line > c.maxLine {
		return 0, c.fail(fmt.Errorf("line longer than %d bytes: %w", c.maxLine, c.overflow))
	}
	if b[n-1] == '\n' {
		c.line = 0
	}
	if c.limit >= 0 && c.read > c.limit {
		return 0, c.fail(fmt.Errorf("response longer than %d bytes: %w", c.budget, c.overflow))
	}
	return n, nil
}

// readBody reads a multi-line response body (after its status line) up to
// and including the terminating "." line, straight from the socket buffer,
// and returns it with the dot-stuffing removed and every line ending as
// CRLF (a bare LF becomes CRLF, as go-pop3's ReadAll does). hint is the
// expected size, used only to size the result. The body counts against the
// current budget; an overrun fails with the budget's overflow error.
func (c *meteredConn) readBody(hint int64) ([]byte, error) {
	const (
		lineStart = iota // at the start of a line
		dot              // a "." at the start of a line
		dotCR            // ".\r" at the start of a line
		inLine           // inside a line
	)
	hint = min(max(hint, 0), 16<<20, max(c.limit-c.read, 0))
	out := make([]byte, 0, hint+hint/32+512)
	state, prevCR := lineStart, false
	for {
		if err := c.fill(); err != nil {
			return nil, err
		}
		b := c.buf[c.r:c.w]
		if c.limit >= 0 {
			if room := max(c.limit-c.read, 0); int64(len(b)) > room+1 {
				b = b[:room+1]
			}
		}
		i, done := 0, false
		for i < len(b) && !done {
			switch state {
			case lineStart:
				state, prevCR = inLine, false
				if b[i] == '.' {
					i++
					state = dot
				}
			case dot:
				switch b[i] {
				case '\r':
					i++
					state = dotCR
				case '\n':
					i++
					done = true
				default:
					state = inLine // the dot was stuffing
				}
			case dotCR:
				if b[i] == '\n' {
					i++
					done = true
					break
				}
				out = append(out, '\r')
				state, prevCR = inLine, true
			case inLine:
				j := bytes.IndexByte(b[i:], '\n')
				if j < 0 {
					out = append(out, b[i:]...)
					prevCR = b[len(b)-1] == '\r'
					i = len(b)
					break
				}
				out = append(out, b[i:i+j]...)
				if (j == 0 && !prevCR) || (j > 0 && b[i+j-1] != '\r') {
					out = append(out, '\r')
				}
				out = append(out, '\n')
				i += j + 1
				state = lineStart
			}
		}
		c.r += i
		c.read += int64(i)
		if c.limit >= 0 && c.read > c.limit {
			return nil, c.fail(fmt.Errorf("response longer than %d bytes: %w", c.budget, c.overflow))
		}
		if done {
			c.line = 0
			return out, nil
		}
	}
}

// Write implements net.Conn.
func (c *meteredConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if err := c.Conn.SetWriteDeadline(c.next()); err != nil {
		return 0, c.fail(err)
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, c.fail(err)
	}
	return n, nil
}

// Close closes the raw connection (and with it any TLS layer).
func (c *meteredConn) Close() error { return c.raw.Close() }

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
