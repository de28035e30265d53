package imapfront

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The IMAP protocol trace of a user (User.Trace): once the user has logged
// in, every line the client sends (dir C) and the server writes (dir S) is
// logged at info level as "imap trace", for the operator chasing an odd
// client. Credentials and message data are never logged: a literal's bytes
// (APPEND's message, FETCH's body sections, any other literal) are passed
// over and only their size is named, LOGIN's and AUTHENTICATE's arguments
// and SASL responses are replaced by a placeholder, and a line is cut after
// traceMaxLine bytes.
//
// The trace works on plaintext and implicit-TLS connections. After
// STARTTLS the bytes this layer sees are ciphertext (go-imap's imapserver
// wraps the connection in its own TLS layer), so such a session logs one
// line saying the trace is not available instead.

// traceMaxLine bounds the part of a line the trace logs.
const traceMaxLine = 1024

// imapTrace traces one connection's two directions.
type imapTrace struct {
	log *slog.Logger
	// mu serialises the client side (the reading goroutine) with the
	// server side (imapserver's writers).
	mu             sync.Mutex
	cli, srv       traceDir
	authInProgress atomic.Bool // an AUTHENTICATE exchange: client lines are SASL data
}

// startTrace starts tracing c for user when the user is traced.
func (c *connState) startTrace(log *slog.Logger, user string) {
	m := c.srv.traced.Load()
	if m == nil || !(*m)[user] {
		return
	}
	if c.tlsUp.Load() {
		log.Info("imap trace not available on a STARTTLS connection (the bytes are encrypted below the tracer); use the implicit-TLS listener or plaintext on loopback")
		return
	}
	t := &imapTrace{log: log}
	t.cli.dir, t.srv.dir = "C", "S"
	c.trace.Store(t)
}

// client traces bytes read from the client.
func (t *imapTrace) client(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cli.feed(p, func(line string) { t.emit("C", t.redactClient(line)) })
}

// server traces bytes imapserver writes.
func (t *imapTrace) server(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.srv.feed(p, func(line string) {
		if line != "" && line[0] != '*' && line[0] != '+' {
			t.authInProgress.Store(false) // a tagged response ends an exchange
		}
		t.emit("S", line)
	})
}

func (t *imapTrace) emit(dir, line string) {
	t.log.Info("imap trace", "dir", dir, "line", line)
}

// redactClient hides the credentials of a client line.
func (t *imapTrace) redactClient(line string) string {
	if t.authInProgress.Load() {
		return "[SASL response not traced]"
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	switch strings.ToUpper(f[1]) {
	case "LOGIN":
		return f[0] + " " + f[1] + " [credentials not traced]"
	case "AUTHENTICATE":
		t.authInProgress.Store(true)
		mech := ""
		if len(f) > 2 {
			mech = " " + f[2]
		}
		return f[0] + " " + f[1] + mech + " [credentials not traced]"
	}
	return line
}

// traceDir splits one direction's bytes into lines, passing over
// literals.
type traceDir struct {
	dir  string
	line []byte
	cut  int   // bytes of the current line not kept (over traceMaxLine)
	skip int64 // literal bytes still to pass over
}

// feed consumes p, calling emit for every complete line (without CRLF).
// A line announcing a literal is emitted with the literal's size; the
// literal's bytes are not.
func (d *traceDir) feed(p []byte, emit func(string)) {
	for len(p) > 0 {
		if d.skip > 0 {
			n := min(d.skip, int64(len(p)))
			d.skip -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		if room := traceMaxLine - len(d.line); room > 0 {
			k := min(room, len(chunk))
			d.line = append(d.line, chunk[:k]...)
			d.cut += len(chunk) - k
		} else {
			d.cut += len(chunk)
		}
		if i < 0 {
			return // the line goes on in the next write
		}
		full := bytes.TrimRight(d.line, "\r\n")
		text := string(full)
		if d.cut == 0 {
			if n, _, ok := literalAtEnd(full); ok {
				d.skip = n
				text += " [" + strconv.FormatInt(n, 10) + " bytes not traced]"
			}
		} else {
			text += " [" + strconv.Itoa(d.cut) + " more bytes not traced]"
		}
		d.line, d.cut = d.line[:0], 0
		emit(text)
	}
}
