package bridge

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/config/*.golden")

const testHash = "$2a$10$abcdefghijklmnopqrstuu5Yj8n8mC0cOXtaLq7N8Xxg3iBq0mQ7e"

// TestLoadGolden loads every testdata/config/*.toml and compares the error
// text (or "ok") with the .golden file next to it.
func TestLoadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file, nil)
			got := "ok\n"
			if err != nil {
				got = err.Error() + "\n"
			}
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestLoadErrorsHaveLines checks that every error of the bad configs names
// file:line and that kinds match with errors.Is.
func TestLoadErrorsHaveLines(t *testing.T) {
	tests := []struct {
		file  string
		kinds []error
		lines []int
	}{
		{"bad-tls-mode.toml", []error{ErrInvalidValue}, []int{18}},
		{"syntax.toml", []error{ErrSyntax}, []int{4}},
		{"wrong-type.toml", []error{ErrSyntax}, []int{11}},
		{"unknown-keys.toml", []error{ErrUnknownKey, ErrUnknownKey, ErrUnknownKey, ErrUnknownKey, ErrUnknownKey}, []int{2, 6, 11, 26, 27}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata/config", tt.file), nil)
			ces := ConfigErrors(err)
			if len(ces) != len(tt.kinds) {
				t.Fatalf("got %d errors, want %d: %v", len(ces), len(tt.kinds), err)
			}
			for i, ce := range ces {
				if !errors.Is(ce, tt.kinds[i]) {
					t.Errorf("error %d %q: not %v", i, ce, tt.kinds[i])
				}
				if ce.Line != tt.lines[i] {
					t.Errorf("error %d %q: line %d, want %d", i, ce, ce.Line, tt.lines[i])
				}
			}
		})
	}
}

func TestAccountErrorExample(t *testing.T) {
	_, err := Load("testdata/config/bad-tls-mode.toml", nil)
	want := `testdata/config/bad-tls-mode.toml:18: account "work": tls: "ssl" is not one of implicit, starttls, none`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func parseValid(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse(strings.NewReader(src), "test.toml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := parseValid(t, `
data_dir = "data"
[[user]]
name = "alice"
password_hash = "`+testHash+`"
[[account]]
name = "a"
user = "alice"
host = "pop.example.com"
username = "u"
password = "p"
[[account]]
name = "b"
user = "alice"
host = "pop.example.com"
tls = "starttls"
username = "u"
password = "p"
leave_on_server = false
`)
	if c.IMAP.Listen != "127.0.0.1:1143" || c.HTTP.Listen != "127.0.0.1:9143" || c.IMAP.ListenTLS != "" {
		t.Errorf("listen defaults: %+v %+v", c.IMAP, c.HTTP)
	}
	a, b := c.Accounts[0], c.Accounts[1]
	if a.Port != 995 || a.TLS != "implicit" || a.Auth != "user" || a.Folder != "INBOX" ||
		a.PollInterval.Value != 5*time.Minute || a.MaxMessageSize.Bytes != 50_000_000 || !a.LeaveOnServer ||
		a.DeleteAfter.Value != 0 || a.DeleteOnExpunge {
		t.Errorf("account defaults: %+v", a)
	}
	if b.Port != 110 || b.LeaveOnServer {
		t.Errorf("starttls port or explicit leave_on_server=false not kept: %+v", b)
	}
	if got := c.Path(c.DataDir); got != "data" {
		t.Errorf("data dir %q", got)
	}
}

// TestBenchConfigLoads loads the exact config the benchmark driver writes
// (bench/README.md, "Pointing the workloads at popbridge").
func TestBenchConfigLoads(t *testing.T) {
	src := `data_dir = "/tmp/bench-run/pop/popbridge/data"

[imap]
listen = "127.0.0.1:21993"
allow_plaintext_auth = true

[http]
listen = "127.0.0.1:21994"

[[user]]
name = "bench"
password_hash = "` + testHash + `"

[[account]]
name = "dovecot-bench"
user = "bench"
host = "127.0.0.1"
port = 21110
tls = "none"
username = "bench"
password = "benchpass"
auth = "user"
folder = "INBOX"
leave_on_server = true
delete_after = "0"
`
	path := filepath.Join(t.TempDir(), "popbridge.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c, err := Load(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("bench config does not load: %v", err)
	}
	a := c.Accounts[0]
	if a.Port != 21110 || a.TLS != "none" || !c.IMAP.AllowPlaintextAuth || a.Password.Reveal() != "benchpass" {
		t.Errorf("decoded %+v", a)
	}
	// 0644 with a plain password draws a warning naming the account, not the password.
	if !strings.Contains(logs.String(), "plain passwords") || !strings.Contains(logs.String(), "dovecot-bench") {
		t.Errorf("no permission warning: %q", logs.String())
	}
	if strings.Contains(logs.String(), "benchpass") {
		t.Errorf("warning leaks the password: %q", logs.String())
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := Load(path, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("warning for a 0600 file: %q", logs.String())
	}
}

// TestExampleConfig checks that config.toml.example parses and validates
// once its placeholder hash is real, and that it mentions every option.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(bytes.NewReader(b), "config.toml.example")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	// The example's password file does not exist here; everything else must validate.
	for _, ce := range ConfigErrors(c.Validate()) {
		if ce.Field != "password_file" {
			t.Errorf("example does not validate: %v", ce)
		}
	}
	for _, key := range append(append(append(append(tomlKeysOf[IMAPConfig](), tomlKeysOf[HTTPConfig]()...),
		tomlKeysOf[PollerConfig]()...), tomlKeysOf[UserConfig]()...), tomlKeysOf[AccountConfig]()...) {
		if !regexp.MustCompile(`(?m)^#?\s*` + key + ` = `).Match(b) {
			t.Errorf("example does not mention %q", key)
		}
	}
}

func tomlKeysOf[T any]() []string { return tomlKeys(reflect.TypeFor[T]()) }

// TestPollerDefaults: without a [poller] table the caps are 20 and 10; a
// per-host cap only written above the total is refused, the default one
// under a small total is not.
func TestPollerDefaults(t *testing.T) {
	c, err := Parse(strings.NewReader("data_dir = \"d\"\n"), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Poller.MaxConnections != 20 || c.Poller.MaxConnectionsPerHost != 10 {
		t.Errorf("defaults %+v, want 20 and 10", c.Poller)
	}
	c, err = Parse(strings.NewReader("data_dir = \"d\"\n[poller]\nmax_connections = 1\n"), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("max_connections = 1 with the default per-host cap: %v", err)
	}
	if m, ph := c.Poller.pollerLimits(); m != 1 || ph != 10 {
		t.Errorf("poller limits %d/%d, want 1/10", m, ph)
	}
	c.Poller = PollerConfig{}
	if m, ph := c.Poller.pollerLimits(); m >= 0 || ph >= 0 {
		t.Errorf("0 (no limit) became %d/%d for the poller, want negative (no cap)", m, ph)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		bad  bool
	}{
		{"seconds", "90s", 90 * time.Second, false},
		{"minutes", "5m", 5 * time.Minute, false},
		{"compound", "1h30m", 90 * time.Minute, false},
		{"days", "14d", 14 * 24 * time.Hour, false},
		{"fractional days", "1.5d", 36 * time.Hour, false},
		{"days and hours", "1d12h", 36 * time.Hour, false},
		{"zero", "0", 0, false},
		{"no unit", "300", 0, true},
		{"negative", "-5m", 0, true},
		{"words", "fortnight", 0, true},
		{"empty", "", 0, true},
		{"days then negative", "1d-1h", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		bad  bool
	}{
		{"bytes", "1048576", 1048576, false},
		{"MB", "50MB", 50_000_000, false},
		{"GiB fraction", "1.5GiB", 1610612736, false},
		{"KiB spaced", "512 KiB", 524288, false},
		{"lower case", "10mb", 10_000_000, false},
		{"unknown unit", "50 megs", 0, true},
		{"no number", "MB", 0, true},
		{"negative", "-1", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("ParseSize(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	a := AccountConfig{Name: "x", Password: s}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("acct", "secret", s, "account", a)
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %d", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", a, a, a), logs.String(),
	}
	if b, err := s.MarshalText(); err != nil || string(b) != "[redacted]" {
		t.Errorf("MarshalText = %q", b)
	}
	for _, out := range outs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal lost the value")
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
		bad                 bool
	}{
		{"trailing newline", "s3cret\n", "s3cret", false},
		{"crlf", "s3cret\r\n", "s3cret", false},
		{"only one newline trimmed", "s3cret\n\n", "s3cret\n", false},
		{"no newline", "s3cret", "s3cret", false},
		{"empty", "\n", "", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadPasswordFile(p)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("got %q, %v", got, err)
			}
		})
	}
	// Read at use time: a rotated file is picked up.
	c := &Config{File: filepath.Join(dir, "config.toml")}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fn := c.SecretFunc(AccountConfig{PasswordFile: "pw"})
	if got, _ := fn(context.Background()); got != "one" {
		t.Errorf("first read %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := fn(context.Background()); got != "two" {
		t.Errorf("after rotation %q", got)
	}
}

func TestPasswordCommand(t *testing.T) {
	ctx := context.Background()
	got, err := RunPasswordCommand(ctx, "printf 'tok3n\\n\\n'", t.TempDir(), 0)
	if err != nil || got != "tok3n" {
		t.Errorf("got %q, %v", got, err)
	}
	// Failure: stderr in the error, stdout (possibly a secret) never.
	_, err = RunPasswordCommand(ctx, "echo leakedsecret; echo 'vault sealed' >&2; exit 3", t.TempDir(), 0)
	if err == nil || !strings.Contains(err.Error(), "vault sealed") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error %v lacks stderr or status", err)
	}
	if err != nil && strings.Contains(err.Error(), "leakedsecret") {
		t.Errorf("error leaks stdout: %v", err)
	}
	start := time.Now()
	_, err = RunPasswordCommand(ctx, "sleep 30", t.TempDir(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("timeout error = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
	if _, err := RunPasswordCommand(ctx, "true", t.TempDir(), 0); err == nil {
		t.Error("empty output accepted")
	}
}

func TestScanPositions(t *testing.T) {
	src := `# comment
a = 1
s = """multi
line = "not a key"
"""
arr = [
  1, # c
  2,
]
[t]
"quoted key" = 'x'
d.e = 3
[[arr2]]
k = 1
[[arr2]]
k = 2
inl = { x = 1, y = [1,
  2] }
after = 1
`
	p := scanPositions(src)
	want := map[string]int{
		"a": 2, "s": 3, "arr": 6, "t": 10, "t.quoted key": 11, "t.d.e": 12,
		"arr2[0]": 13, "arr2[0].k": 14, "arr2[1]": 15, "arr2[1].k": 16, "arr2[1].inl": 17, "arr2[1].after": 19,
	}
	for path, line := range want {
		if got := p.line(path); got != line {
			t.Errorf("line(%q) = %d, want %d", path, got, line)
		}
	}
	if got := p.line("arr2[1].missing"); got != 15 {
		t.Errorf("missing key falls back to its table: %d", got)
	}
}
