package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret is a password or token from the configuration. It prints, logs and
// marshals as "[redacted]" (every fmt verb, %#v included, and slog), so a
// Config can be logged or dumped without leaking it. [Secret.Reveal] gives
// the value to the one place that sends it upstream.
type Secret struct {
	value string
}

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// GoString returns a redacted Go expression.
func (s Secret) GoString() string { return `bridge.Secret("` + s.String() + `")` }

// Format implements fmt.Formatter so that no verb prints the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, s.String())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler; it writes "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Secret) UnmarshalText(b []byte) error {
	s.value = string(b)
	return nil
}

// DefaultSecretTimeout bounds a password_command run.
const DefaultSecretTimeout = 30 * time.Second

// maxSecretOutput bounds what is read from a password file or command.
const maxSecretOutput = 64 << 10

// ReadPasswordFile reads a password file at use time, so a rotated file is
// picked up at the next login. One trailing newline ("\n" or "\r\n") is
// removed; an empty result is an error. The error never holds file content.
func ReadPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read password_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretOutput+1))
	if err != nil {
		return "", fmt.Errorf("read password_file: %w", err)
	}
	if len(b) > maxSecretOutput {
		return "", fmt.Errorf("read password_file %s: larger than %d bytes", path, maxSecretOutput)
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "", fmt.Errorf("read password_file %s: file is empty", path)
	}
	return s, nil
}

// RunPasswordCommand runs command with `sh -c` in dir and returns its
// standard output without trailing newlines. It is stopped after timeout
// (0: DefaultSecretTimeout) or when ctx is done. On failure the error holds
// the exit status and the command's standard error (shortened), never its
// standard output.
func RunPasswordCommand(ctx context.Context, command, dir string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = DefaultSecretTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	cmd.Stdin = nil
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxSecretOutput, 512
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Do not wait forever for grandchildren that keep the pipes open.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		if msg != "" {
			return "", fmt.Errorf("run password_command: %w (stderr: %s)", err, msg)
		}
		return "", fmt.Errorf("run password_command: %w", err)
	}
	if stdout.overflow {
		return "", fmt.Errorf("run password_command: output larger than %d bytes", maxSecretOutput)
	}
	s := strings.TrimRight(stdout.String(), "\r\n")
	if s == "" {
		return "", errors.New("run password_command: empty output")
	}
	return s, nil
}

// limitedBuffer keeps the first max bytes written and discards the rest.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// SecretFunc returns a function that yields the account's password or
// token at use time: the configured password, the content of
// password_file (resolved against the configuration's directory), or the
// output of password_command (run in that directory).
func (c *Config) SecretFunc(a AccountConfig) func(ctx context.Context) (string, error) {
	switch {
	case a.PasswordFile != "":
		path := c.Path(a.PasswordFile)
		return func(context.Context) (string, error) { return ReadPasswordFile(path) }
	case a.PasswordCommand != "":
		command, dir := a.PasswordCommand, c.baseDir()
		return func(ctx context.Context) (string, error) {
			return RunPasswordCommand(ctx, command, dir, DefaultSecretTimeout)
		}
	default:
		pw := a.Password
		return func(context.Context) (string, error) {
			if pw.IsZero() {
				return "", errors.New("no password configured")
			}
			return pw.Reveal(), nil
		}
	}
}
