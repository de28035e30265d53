package imapfront

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestBackendLoggerLevels: imapserver's lines about a client that hung up
// go to debug level; other errors stay at error level, and panics are
// counted.
func TestBackendLoggerLevels(t *testing.T) {
	tests := []struct {
		name      string
		format    string
		err       error
		wantLevel string
	}{
		{"broken pipe", "failed to read command: %v", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, "DEBUG"},
		{"connection reset", "failed to read command: %v", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "DEBUG"},
		{"eof", "failed to read command: %v", io.EOF, "DEBUG"},
		{"deadline", "failed to read command: %v", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), "DEBUG"},
		{"closed", "failed to write: %v", net.ErrClosed, "DEBUG"},
		{"other error", "handling FETCH command: %v", errors.New("disk on fire"), "ERROR"},
		{"panic", "panic serving %v: %v", errors.New("boom"), "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := &Server{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			h := hooksOf(t, s)
			args := []any{tt.err}
			if strings.Count(tt.format, "%v") == 2 {
				args = []any{"127.0.0.1:1", tt.err}
			}
			backendLogger{s}.Printf(tt.format, args...)
			if !strings.Contains(buf.String(), "level="+tt.wantLevel) {
				t.Errorf("logged %q, want level %s", buf.String(), tt.wantLevel)
			}
			wantPanics := int64(0)
			if tt.name == "panic" {
				wantPanics = 1
			}
			if got := h.panics.Load(); got != wantPanics {
				t.Errorf("panics = %d, want %d", got, wantPanics)
			}
		})
	}
}

// TestBackendLoggerKeysOnce: a line from imapserver carries each key once,
// also when the server's logger already names its component.
func TestBackendLoggerKeysOnce(t *testing.T) {
	var buf bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&buf, nil)).With("component", "imap")}
	backendLogger{s}.Printf("handling FETCH command: %v", errors.New("disk on fire"))
	line := buf.String()
	if n := strings.Count(line, "component="); n != 1 {
		t.Errorf("%q has component %d times", line, n)
	}
	if !strings.Contains(line, "source=go-imap") {
		t.Errorf("%q does not say it came from go-imap", line)
	}
}
