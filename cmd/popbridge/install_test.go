package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// TestInstallAsDocumented follows docs/OPERATIONS.md's install steps as
// written, in a scratch root instead of /, then starts `popbridge serve`
// the way docs/popbridge.service does: its ExecStart command line, as its
// unprivileged User=/Group=, with its UMask= and the StateDirectory=
// systemd would create. The service must read its configuration and
// password file, write its data directory, serve IMAP (greeting, login,
// the upstream's mail in INBOX) and /healthz. It needs root (to install
// files owned by another group and to start the service as another user),
// as in CI; elsewhere it is skipped.
func TestInstallAsDocumented(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs files for another group and starts the service as another user")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	unitText := readFile(t, filepath.Join(repo, "docs", "popbridge.service"))
	unit := parseUnit(unitText)
	steps := installSteps(t, readFile(t, filepath.Join(repo, "docs", "OPERATIONS.md")))

	// The unit's user and group: the steps create them with adduser; here
	// they are numeric ids no account uses, so the host's /etc/passwd is
	// left alone.
	userName, groupName := unit.get("User"), unit.get("Group")
	if userName == "" || groupName == "" || unit.get("DynamicUser") != "" {
		t.Fatalf("unit: want a static User= and Group= (the install steps create them), got User=%q Group=%q DynamicUser=%q",
			userName, groupName, unit.get("DynamicUser"))
	}
	uid, gid := unusedID(t, "/etc/passwd"), unusedID(t, "/etc/group")

	// A scratch root every user may traverse (the service user must reach
	// /etc/popbridge inside it).
	root, err := os.MkdirTemp("", "popbridge-install-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// The source tree the steps run in: the example config, the unit and
	// a binary built from this tree.
	src := t.TempDir()
	for _, f := range []string{"config.toml.example", "docs/popbridge.service"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), []byte(readFile(t, filepath.Join(repo, f))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command(goTool, "build", "-o", filepath.Join(src, "popbridge"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The directories a Debian system has, which the steps install into.
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Run the documented steps, with every absolute path moved into the
	// scratch root and the user and group names replaced by their ids.
	var script strings.Builder
	script.WriteString("set -ex\n")
	for _, line := range steps {
		switch {
		case strings.HasPrefix(line, "go build"):
			continue // built above, with the test's toolchain
		case strings.HasPrefix(line, "adduser "):
			if !strings.Contains(line, " --group ") || !strings.HasSuffix(line, " "+userName) || userName != groupName {
				t.Fatalf("install step %q does not create user and group %q/%q of the unit", line, userName, groupName)
			}
			continue // stood in for by uid and gid
		}
		line = rootPaths(line, root)
		line = strings.ReplaceAll(line, "-g "+groupName+" ", "-g "+strconv.Itoa(gid)+" ")
		line = strings.ReplaceAll(line, "-o "+userName+" ", "-o "+strconv.Itoa(uid)+" ")
		script.WriteString(line + "\n")
	}
	sh := exec.Command("sh", "-c", script.String())
	sh.Dir = src
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("install steps failed: %v\n%s", err, out)
	}
	installed := parseUnit(readFile(t, filepath.Join(root, "etc/systemd/system/popbridge.service")))
	if installed.get("ExecStart") != unit.get("ExecStart") {
		t.Fatalf("installed unit differs from docs/popbridge.service")
	}

	// What systemd does before ExecStart: the state directory, owned by
	// the service user, with StateDirectoryMode=.
	stateMode, err := strconv.ParseUint(unit.get("StateDirectoryMode"), 8, 32)
	if err != nil {
		t.Fatalf("StateDirectoryMode=%q: %v", unit.get("StateDirectoryMode"), err)
	}
	stateDir := filepath.Join(root, "var/lib", unit.get("StateDirectory"))
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stateDir, os.FileMode(stateMode)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(stateDir, uid, gid); err != nil {
		t.Fatal(err)
	}

	// The operator's edits: an upstream on loopback, its password in the
	// password file, ports chosen by the system. Written in place, as an
	// editor does, so owner and mode stay as installed.
	up := newUpstream(t, "alice@example.com", "upstream-secret", 3, 500)
	cfgPath := filepath.Join(root, "etc/popbridge/config.toml")
	cfg := readFile(t, cfgPath)
	for _, r := range []struct{ re, repl string }{
		{`(?m)^listen = "127\.0\.0\.1:1143"$`, `listen = "127.0.0.1:0"`},
		{`(?m)^listen = "127\.0\.0\.1:9143"$`, `listen = "127.0.0.1:0"`},
		{`(?m)^host = "pop\.example\.com"$`, fmt.Sprintf("host = %q", up.Host())}, // [[account]]; [provider] stays off
		{`(?m)^port = 995$`, fmt.Sprintf("port = %d", up.Port())},
		{`(?m)^tls = "implicit"$`, `tls = "none"`},
		{`(?m)^poll_interval = .*$`, `poll_interval = "1h"`},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(cfg) {
			t.Fatalf("config.toml.example has no line matching %s", r.re)
		}
		cfg = re.ReplaceAllString(cfg, r.repl)
	}
	if !strings.Contains(cfg, `data_dir = "`+root+`/var/lib/popbridge"`) {
		t.Fatalf("the install steps did not set data_dir to the state directory:\n%s", cfg)
	}
	writeInPlace(t, cfgPath, cfg)
	writeInPlace(t, filepath.Join(root, "etc/popbridge/work.password"), "upstream-secret\n")

	// ExecStart, as the unit's user, with the unit's umask.
	argv := strings.Fields(unit.get("ExecStart"))
	for i := range argv {
		argv[i] = rootPaths(argv[i], root)
	}
	umask := unit.get("UMask")
	if umask == "" {
		t.Fatal("unit has no UMask=")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", `umask "$0" && exec "$@"`, umask}, argv...)...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var logDone chan struct{} // set once the log is forwarded to t.Log
	logc := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logc <- sc.Text()
		}
		close(logc)
		exited <- cmd.Wait()
	}()
	defer func() {
		cancel()
		<-exited
		if logDone != nil {
			<-logDone
		}
	}()

	// The service says where it listens once it is ready (JSON log lines,
	// as the unit asks with -log-format json).
	var running struct{ Msg, IMAP, HTTP string }
	var logged []string
	for running.Msg != "popbridge running" {
		line, ok := <-logc
		if !ok {
			t.Fatalf("popbridge serve exited before it was ready:\n%s", strings.Join(logged, "\n"))
		}
		logged = append(logged, line)
		var rec struct {
			Msg  string `json:"msg"`
			IMAP string `json:"imap"`
			HTTP string `json:"http"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			continue // a start-up error on stderr; shown when serve exits
		}
		running.Msg, running.IMAP, running.HTTP = rec.Msg, rec.IMAP, rec.HTTP
	}
	logDone = make(chan struct{})
	go func() {
		defer close(logDone)
		for line := range logc {
			t.Log(line)
		}
	}()

	// It runs as the unit's user.
	status := readFile(t, fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if want := fmt.Sprintf("Uid:\t%d\t%d", uid, uid); !strings.Contains(status, want) {
		t.Fatalf("serve does not run as uid %d:\n%s", uid, status)
	}

	// IMAP: greeting, login with the example's user, the upstream's mail.
	counts := make(chan uint32, 16)
	c, err := imapclient.DialInsecure(running.IMAP, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					counts <- *data.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatalf("IMAP dial %s: %v", running.IMAP, err)
	}
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		t.Fatalf("IMAP greeting: %v", err)
	}
	if err := c.Login("alice", "change me").Wait(); err != nil {
		t.Fatalf("LOGIN with the example's password: %v", err)
	}
	// The first poll runs at start: its mail is in INBOX, or arrives
	// while we IDLE (bounded by ctx).
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages < 3 {
		idle, err := c.Idle()
		if err != nil {
			t.Fatal(err)
		}
		n := sel.NumMessages
		for n < 3 {
			select {
			case n = <-counts:
			case <-ctx.Done():
				t.Fatalf("INBOX has %d messages, want the upstream's 3 (password_file not read?)", n)
			}
		}
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	// /healthz answers 200.
	resp, err := http.Get("http://" + running.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s\n%s", resp.Status, body)
	}

	// The store is in the state directory, private to the service user.
	fi, err := os.Stat(filepath.Join(stateDir, "popbridge.db"))
	if err != nil {
		t.Fatalf("no database in the state directory: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("popbridge.db: owner %d mode %v, want owner %d and no group/other access", st.Uid, fi.Mode().Perm(), uid)
	}

	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		verifyUnit(t, sa, unitText, filepath.Join(src, "popbridge"))
	}
}

// unit is a systemd unit file's settings, by key (the last value wins,
// as for the settings this test reads).
type unit map[string]string

func (u unit) get(k string) string { return u[k] }

func parseUnit(text string) unit {
	u := unit{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			u[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return u
}

// installSteps returns the command lines of the sh block that follows
// "<!-- install-steps -->" in OPERATIONS.md.
func installSteps(t *testing.T, doc string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "<!-- install-steps -->\n```sh\n")
	if !ok {
		t.Fatal("OPERATIONS.md has no install-steps sh block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("OPERATIONS.md: install-steps block is not closed")
	}
	var steps []string
	for _, l := range strings.Split(block, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			steps = append(steps, l)
		}
	}
	if len(steps) < 5 {
		t.Fatalf("install-steps block has %d lines", len(steps))
	}
	return steps
}

var absPath = regexp.MustCompile(`(^|[\s"'|=])(/etc/|/usr/local/bin/|/var/lib/)`)

// rootPaths moves the absolute paths of an installation into root.
func rootPaths(s, root string) string {
	return absPath.ReplaceAllString(s, "${1}"+root+"${2}")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeInPlace replaces a file's content, keeping its owner and mode.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// unusedID returns an id in the system range that no entry of the
// passwd or group file db uses.
func unusedID(t *testing.T, db string) int {
	t.Helper()
	used := map[int]bool{}
	for _, l := range strings.Split(readFile(t, db), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 {
			if n, err := strconv.Atoi(f[2]); err == nil {
				used[n] = true
			}
		}
	}
	for id := 61000; id < 62000; id++ {
		if !used[id] {
			return id
		}
	}
	t.Fatalf("no unused id in %s", db)
	return 0
}

// verifyUnit runs systemd-analyze verify on the unit, its ExecStart
// pointing at bin (the unit's own path is not installed on this host).
func verifyUnit(t *testing.T, sa, text, bin string) {
	t.Helper()
	dir := t.TempDir()
	text = strings.ReplaceAll(text, "/usr/local/bin/popbridge", bin)
	path := filepath.Join(dir, "popbridge.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "popbridge.service") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}
