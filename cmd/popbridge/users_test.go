package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUsers: a provider user created by an IMAP login against the POP
// server is listed by `popbridge users` (with its messages), and
// `users -remove NAME -yes` (serve stopped) deletes its local data; without
// -yes nothing is removed; a [[user]] cannot be removed this way.
func TestUsers(t *testing.T) {
	up := newUpstream(t, "bob@example.net", "bob-pop-pw", 3, 500)
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[provider]\nhost = %q\nport = %d\ntls = \"none\"\npoll_interval = \"1h\"\n", up.Host(), up.Port())
	f.Close()

	r := start(t, "serve", "-config", cfg)
	c := dialIMAP(t, r.b.Addrs().IMAP.String(), "bob@example.net", "bob-pop-pw", nil)
	eventually(t, 20*time.Second, "bob's 3 messages", func() bool { return inboxCount(t, c) == 3 })
	c.Close()
	if code := r.stop(t); code != 0 {
		t.Fatalf("serve exit %d: %s", code, r.stderr.String())
	}

	run := func(args ...string) (int, string, string) {
		out, errb := &syncBuffer{}, &syncBuffer{}
		a := &app{stdin: strings.NewReader(""), stdout: out, stderr: errb}
		code := a.run(context.Background(), append([]string{"users", "-config", cfg}, args...))
		return code, out.String(), errb.String()
	}
	code, out, errs := run()
	if code != 0 || !strings.Contains(out, "bob@example.net") || !strings.Contains(out, "active") {
		t.Fatalf("users: exit %d\n%s%s", code, out, errs)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "bob@example.net") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 2 || !strings.Contains(line, " 3 ") {
		t.Errorf("bob's line %q: want 3 messages", line)
	}
	if code, _, errs := run("-remove", "bob@example.net"); code != exitUsage || !strings.Contains(errs, "-yes") {
		t.Errorf("-remove without -yes: exit %d: %s", code, errs)
	}
	if code, _, errs := run("-remove", "alice", "-yes"); code == 0 || !strings.Contains(errs, "[[user]]") {
		t.Errorf("-remove of a [[user]]: exit %d: %s", code, errs)
	}
	if code, out, errs := run("-remove", "bob@example.net", "-yes"); code != 0 {
		t.Fatalf("-remove: exit %d: %s%s", code, out, errs)
	}
	if code, out, _ := run(); code != 0 || strings.Contains(out, "bob@example.net") {
		t.Errorf("bob still listed after -remove:\n%s", out)
	}
	if code, _, errs := run("-remove", "bob@example.net", "-yes"); code == 0 || !strings.Contains(errs, "not a provider user") {
		t.Errorf("second -remove: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "provider.key")); err != nil {
		t.Errorf("key_file next to the config: %v", err)
	}
	// Nothing upstream changed.
	if n := len(up.Messages()); n != 3 {
		t.Errorf("upstream holds %d messages, want 3", n)
	}
}
