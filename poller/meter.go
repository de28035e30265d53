package poller

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

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
