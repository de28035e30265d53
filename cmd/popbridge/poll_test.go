package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/poller"
)

func TestProgressBar(t *testing.T) {
	var b strings.Builder
	p := &progressBar{w: &b}
	p.update("work", 0, 4)
	p.update("work", 1, 4) // within 50ms of the last draw: skipped
	p.update("work", 4, 4) // the end is always drawn
	p.finish()
	got := b.String()
	want := "\rwork             [------------------------------] 0/4 " +
		"\rwork             [##############################] 4/4 \n"
	if got != want {
		t.Errorf("progress output\n%q\nwant\n%q", got, want)
	}
	// Nothing drawn, nothing finished.
	var empty strings.Builder
	(&progressBar{w: &empty}).finish()
	if empty.Len() != 0 {
		t.Errorf("finish without updates wrote %q", empty.String())
	}
}

func TestSummary(t *testing.T) {
	got := summary([]poller.Result{{Account: "a", Fetched: 3, Bytes: 2500, Skipped: 1}, {Account: "b", Fetched: 2, Bytes: 1_500_000, Deleted: 2}}, 1234*time.Millisecond)
	want := "poll: 2 account(s), fetched 5 messages (1.5 MB), skipped 1, deleted 2 in 1.234s"
	if got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

// runCmd runs the program once with args and returns its exit code, stdout
// and stderr.
func runCmd(args ...string) (int, string, string) {
	out, errb := &syncBuffer{}, &syncBuffer{}
	a := &app{stdin: strings.NewReader(""), stdout: out, stderr: errb}
	code := a.run(context.Background(), args)
	return code, out.String(), errb.String()
}

// lineWith returns the first line of s that starts with prefix and
// contains sub.
func lineWith(s, prefix, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestStatusAndPollWhileServing runs `status` and `poll` against the data
// directory of a running `serve`: status reads it (read-only store), poll
// is refused and says how to make the service poll instead.
func TestStatusAndPollWhileServing(t *testing.T) {
	up := newUpstream(t, "bob", "bobpw", 3, 800)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, acct{name: "home", up: up, username: "bob", password: "bobpw"})
	dataDir := filepath.Join(dir, "data")

	// Before anything ran there is nothing to read, and status says so.
	code, _, errs := runCmd("status", "-config", cfg)
	if code != exitFailure || !strings.Contains(errs, "no data in "+dataDir+" yet") {
		t.Errorf("status before any run: exit %d, stderr:\n%s", code, errs)
	}

	r := start(t, "serve", "-config", cfg)
	r.signal(t, syscall.SIGUSR1) // poll now rather than after the start-up jitter
	var out string
	// The poller records the account's status after storing the messages:
	// wait for both.
	eventually(t, 20*time.Second, "status showing the finished poll", func() bool {
		code, o, e := runCmd("status", "-config", cfg)
		if code != exitOK {
			t.Fatalf("status while serving: exit %d, stderr:\n%s", code, e)
		}
		out = o
		return !strings.Contains(lineWith(o, "home ", "alice"), "never")
	})
	t.Logf("status while serving:\n%s", out)
	if f := strings.Fields(lineWith(out, "home ", "alice")); len(f) < 9 || !slices.Contains(f, "ok") || f[len(f)-5] != "3" || f[len(f)-1] != "3" { // ... ok FETCHED BYTES(2 fields) SKIPPED ON-SERVER
		t.Errorf("account line %q: want result ok, fetched 3, 3 on server", lineWith(out, "home ", "alice"))
	}
	if f := strings.Fields(lineWith(out, "alice", "INBOX")); len(f) < 3 || f[2] != "3" {
		t.Errorf("INBOX line %q, want 3 messages", lineWith(out, "alice", "INBOX"))
	}

	code, pout, errs := runCmd("poll", "-config", cfg)
	if code != exitFailure {
		t.Fatalf("poll while serving: exit %d, want %d; stdout:\n%s", code, exitFailure, pout)
	}
	t.Logf("poll while serving, stderr:\n%s", errs)
	pid := os.Getpid() // serve runs in this process
	for _, want := range []string{
		"data directory " + dataDir + " is in use",
		fmt.Sprintf("(pid %d)", pid),
		fmt.Sprintf("kill -USR1 %d", pid),
		"systemctl kill -s USR1 popbridge",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("poll error lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(pout, "poll: 0 account(s)") {
		t.Errorf("refused poll printed a summary:\n%s", pout)
	}

	// Once serve has stopped, poll owns the directory again.
	if code := r.stop(t); code != exitOK {
		t.Fatalf("serve exit %d:\n%s", code, r.stderr.String())
	}
	up.AddMessage(testMessage(4, 800))
	if code, o, e := runCmd("poll", "-config", cfg); code != exitOK || !strings.Contains(o, "fetched 1 messages") {
		t.Errorf("poll after serve stopped: exit %d\n%s%s", code, o, e)
	}
}

// TestProgressBarLogLines: a log line written while the bar is on screen
// clears the bar's line first and the bar is redrawn after it; once the
// bar is finished, log lines pass through untouched.
func TestProgressBarLogLines(t *testing.T) {
	var term strings.Builder // stdout and stderr on one terminal
	bar := &progressBar{w: &term}
	logw := bar.logWriter(&term)
	bar.update("work", 3, 10)
	fmt.Fprint(logw, "level=WARN msg=\"message larger than max_message_size\"\n")
	bar.update("work", 10, 10)
	bar.finish()
	fmt.Fprint(logw, "level=INFO msg=done\n")
	barLine := func(done int) string {
		filled := done * 30 / 10
		return fmt.Sprintf("%-16s [%s%s] %d/10 ", "work", strings.Repeat("#", filled), strings.Repeat("-", 30-filled), done)
	}
	want := "\r" + barLine(3) +
		"\r\x1b[K" + "level=WARN msg=\"message larger than max_message_size\"\n" + "\r" + barLine(3) +
		"\r" + barLine(10) + "\n" +
		"level=INFO msg=done\n"
	if got := term.String(); got != want {
		t.Errorf("terminal got\n%q\nwant\n%q", got, want)
	}
}

// TestPollUnknownAccountOnePrefix: the error names the command once.
func TestPollUnknownAccountOnePrefix(t *testing.T) {
	up := newUpstream(t, "bob", "pw", 0, 0)
	cfg := writeConfig(t, t.TempDir(), acct{name: "home", up: up, username: "bob", password: "pw"})
	code, _, errs := runCmd("poll", "-config", cfg, "-account", "nope")
	if want := "popbridge poll: no account \"nope\" (configured: home)\n"; code != 1 || errs != want {
		t.Errorf("exit %d, stderr %q, want %q", code, errs, want)
	}
}
