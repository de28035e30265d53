package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRenameWithPreviousNames: renaming an account alone leaves its ledger
// behind (check says so and how to fix it); with previous_names, check says
// what the start will do, and the next poll fetches nothing again.
func TestRenameWithPreviousNames(t *testing.T) {
	up := newUpstream(t, "bob", "pw", 3, 300)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, acct{name: "old", up: up, username: "bob", password: "pw"})
	if code, out, errs := runCmd("poll", "-config", cfg); code != 0 {
		t.Fatalf("first poll: exit %d\n%s%s", code, out, errs)
	}
	retrs := up.Count("RETR")
	if retrs != 3 {
		t.Fatalf("first poll RETR %d messages, want 3", retrs)
	}

	// Renamed without previous_names: check warns.
	writeConfig(t, dir, acct{name: "new", up: up, username: "bob", password: "pw"})
	code, out, errs := runCmd("check", "-config", cfg)
	if code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	want := `note  ledger: 3 rows for account "old", which is not configured: if an [[account]] was renamed from "old", add previous_names = ["old"] to it, or its mail is fetched again as new`
	if !strings.Contains(out, want) {
		t.Errorf("check output lacks\n%s\ngot:\n%s", want, out)
	}

	// With previous_names: check says what happens, and poll fetches nothing.
	writeConfig(t, dir, acct{name: "new", up: up, username: "bob", password: "pw", extra: `previous_names = ["old"]`})
	code, out, errs = runCmd("check", "-config", cfg)
	if code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	want = `note  rename: account "new" takes over the 3 ledger rows of "old" (previous_names) at the next start; its mail is not fetched again`
	if !strings.Contains(out, want) {
		t.Errorf("check output lacks\n%s\ngot:\n%s", want, out)
	}
	if code, out, errs := runCmd("poll", "-config", cfg); code != 0 {
		t.Fatalf("poll after rename: exit %d\n%s%s", code, out, errs)
	}
	if got := up.Count("RETR"); got != retrs {
		t.Errorf("poll after the rename fetched %d messages again", got-retrs)
	}
	code, out, _ = runCmd("check", "-config", cfg)
	if code != 0 || strings.Contains(out, "note ") {
		t.Errorf("check after the rename was applied: exit %d, notes left:\n%s", code, out)
	}
	code, out, _ = runCmd("status", "-config", cfg)
	if code != 0 || strings.Contains(out, "old") {
		t.Errorf("status after the rename still lists the old name (exit %d):\n%s", code, out)
	}
}

// TestSameMailboxRefused: two accounts on one upstream mailbox are refused
// by check and serve, naming both places in the file.
func TestSameMailboxRefused(t *testing.T) {
	up := newUpstream(t, "bob", "pw", 0, 0)
	dir := t.TempDir()
	cfg := writeConfig(t, dir,
		acct{name: "first", up: up, username: "bob", password: "pw"},
		acct{name: "second", up: up, username: "bob", password: "pw"})
	for _, cmd := range []string{"check", "serve"} {
		code, _, errs := runCmd(cmd, "-config", cfg)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", cmd, code)
		}
		// Line numbers of the two username keys in writeConfig's layout.
		lines := strings.Split(string(mustRead(t, cfg)), "\n")
		var at []int
		for i, l := range lines {
			if strings.HasPrefix(l, "username = ") {
				at = append(at, i+1)
			}
		}
		want := cfg + ":" + itoa(at[1]) + `: account "second": username: bob@` + up.Host() + ":" + itoa(up.Port()) +
			` is also fetched by account "first" (` + cfg + ":" + itoa(at[0]) + `): two accounts on one upstream mailbox would store every message twice; remove one of them`
		if !strings.Contains(errs, want) {
			t.Errorf("%s: error lacks\n%s\ngot:\n%s", cmd, want, errs)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("serve created the data directory for a refused configuration")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCheckColumnsAligned: check's result lines line up whatever the
// lengths of account names and servers.
func TestCheckColumnsAligned(t *testing.T) {
	up := newUpstream(t, "bob", "pw", 0, 0)
	up2 := newUpstream(t, "bob", "pw", 0, 0)
	cfg := writeConfig(t, t.TempDir(),
		acct{name: "a", up: up, username: "bob", password: "pw"},
		acct{name: "a-much-longer-name", up: up2, username: "bob", password: "wrong"})
	_, out, _ := runCmd("check", "-config", cfg)
	short, long := lineWith(out, "ok    a ", ""), lineWith(out, "FAIL  a-much-longer-name", "")
	if short == "" || long == "" {
		t.Fatalf("missing lines:\n%s", out)
	}
	col := func(l, s string) int { return strings.Index(l, s) }
	if a, b := col(short, up.Addr()), col(long, up2.Addr()); a != b || a < 0 {
		t.Errorf("server column at %d and %d:\n%s\n%s", a, b, short, long)
	}
	if a, b := col(short, "login ok"), col(long, `account "a-much-longer-name"`); a != b {
		t.Errorf("result column at %d and %d:\n%s\n%s", a, b, short, long)
	}
}
