package poller

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
)

// The protocol trace of an account with Trace set: every command popbridge
// sends and every status and listing line the server answers, logged at
// info level as "pop3 trace" with dir "C" (client) or "S" (server). Secrets
// are redacted (PASS, APOP, AUTH and its continuation lines), and message
// bodies never pass through it: RETR and TOP bodies are read beside it
// (meteredConn.readBody), so the trace shows their status line only. The
// exchange before TLS (greeting, CAPA, STLS) happens before it starts.

// traced returns c wrapped to log the exchange when a.Trace is set, else c.
func traced(c net.Conn, a Account, cfg *sessionConfig) net.Conn {
	if !a.Trace {
		return c
	}
	return &traceConn{Conn: c, log: cfg.Logger.With("account", a.Name)}
}

type traceConn struct {
	net.Conn
	log        *slog.Logger
	rbuf, wbuf []byte
	inAuth     bool // an AUTH without initial response is waiting for its continuation
}

func (c *traceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rbuf = c.emit(append(c.rbuf, p[:n]...), "S")
	return n, err
}

func (c *traceConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wbuf = c.emit(append(c.wbuf, p[:n]...), "C")
	return n, err
}

// emit logs the complete lines in buf and returns what is left.
func (c *traceConn) emit(buf []byte, dir string) []byte {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return buf
		}
		line := strings.TrimRight(string(buf[:i]), "\r")
		buf = buf[i+1:]
		if dir == "C" {
			line = c.redact(line)
		}
		c.log.Info("pop3 trace", "dir", dir, "line", line)
	}
}

// redact hides the secrets of a client line.
func (c *traceConn) redact(line string) string {
	if c.inAuth {
		c.inAuth = false
		return "*** (redacted)"
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return line
	}
	switch strings.ToUpper(f[0]) {
	case "PASS":
		return "PASS *** (redacted)"
	case "APOP":
		if len(f) > 1 {
			return "APOP " + f[1] + " *** (redacted)"
		}
	case "AUTH":
		if len(f) > 2 {
			return "AUTH " + f[1] + " *** (redacted)"
		}
		c.inAuth = len(f) == 2
	}
	return line
}
