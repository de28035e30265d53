package imapfront

import (
	"strings"
	"testing"
)

// TestIsolation: another user's mailbox names and UIDs are never reachable.
func TestIsolation(t *testing.T) {
	env := newEnv(t)
	env.deliver("bob", "INBOX", msg("bob secret"))
	bob := env.rawLogin("bob")
	bob.ok("CREATE BobOnly")
	env.deliver("alice", "INBOX", msg("alice mail"))

	a := env.rawLogin("alice")
	tests := []struct{ name, cmd, wantPrefix string }{
		{"select other's mailbox", "SELECT BobOnly", "NO"},
		{"status other's mailbox", "STATUS BobOnly (MESSAGES)", "NO"},
		{"select with path escape", `SELECT "../bob/INBOX"`, "NO"},
		{"delete other's mailbox", "DELETE BobOnly", "NO"},
		{"rename other's mailbox", "RENAME BobOnly Mine", "NO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, st := a.cmd("%s", tt.cmd); !strings.HasPrefix(st, tt.wantPrefix) {
				t.Fatalf("%s: %s", tt.cmd, st)
			}
		})
	}
	if u := a.ok(`LIST "" "*"`); len(grep(u, "BobOnly")) != 0 {
		t.Fatalf("LIST shows bob's mailbox: %q", u)
	}
	a.ok("SELECT INBOX")
	// UIDs of bob's INBOX do not exist in alice's session.
	u := a.ok("UID FETCH 1:* (BODY.PEEK[])")
	if len(u) != 1 || strings.Contains(u[0], "bob secret") {
		t.Fatalf("alice sees %q", u)
	}
	if _, st := a.cmd("UID COPY 1 BobOnly"); !strings.Contains(st, "TRYCREATE") {
		t.Fatalf("COPY into bob's mailbox: %s", st)
	}
	// Bob's session is not told about alice's changes.
	bob.ok("SELECT INBOX")
	a.ok(`STORE 1 +FLAGS (\Flagged)`)
	env.deliver("alice", "INBOX", msg("more alice"))
	if u := bob.ok("NOOP"); len(u) != 0 {
		t.Fatalf("bob got alice's updates: %q", u)
	}
	if u := bob.ok("FETCH 1 (BODY.PEEK[])"); !strings.Contains(u[0], "bob secret") {
		t.Fatalf("bob: %q", u)
	}
}
