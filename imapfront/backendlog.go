package imapfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
)

// backendLogger is imapserver's logger: its lines go to the server's log at
// error level, and the panics it recovered are counted. A line about a
// client that hung up or went silent (EOF, reset, broken pipe, timeout) is
// part of normal operation and goes to debug level, so it does not drown
// real errors.
type backendLogger struct{ s *Server }

// Printf implements imapserver.Logger.
func (l backendLogger) Printf(format string, args ...any) {
	if strings.HasPrefix(format, "panic") {
		l.s.countPanic()
	}
	level := slog.LevelError
	for _, a := range args {
		if err, ok := a.(error); ok && (isHangUp(err) || isParseError(err)) {
			level = slog.LevelDebug
		}
	}
	// "source", not "component": the logger bridge hands over already
	// names the component (imap), and a key twice in one line confuses
	// log processors.
	l.s.log.Log(context.Background(), level, fmt.Sprintf(format, args...), "source", "go-imap")
}

// isParseError reports whether err is one of the client syntax errors
// that imapserver reports as internal errors (see connState.fixServerBug):
// the client's mistake, not the server's, so not logged as an error.
func isParseError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "utf7: ") || strings.Contains(msg, "imap: bad number set value") ||
		strings.Contains(msg, "imapwire: max size exceeded")
}

// isHangUp reports whether err only says that the client went away or
// stayed silent past a deadline.
func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
