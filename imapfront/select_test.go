package imapfront

import (
	"slices"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	c := env.rawLogin("alice")
	u := c.ok("SELECT INBOX")
	for _, want := range []string{"* 2 EXISTS", "* OK [UNSEEN 1]", "[UIDVALIDITY ", "[UIDNEXT 3]", `\*)]`, "* 2 RECENT"} {
		if len(grep(u, want)) == 0 {
			t.Errorf("SELECT: no %q in %q", want, u)
		}
	}
	// Selecting a missing or \Noselect mailbox fails and leaves nothing selected.
	if _, st := c.cmd("SELECT Nope"); !strings.Contains(st, "NO [NONEXISTENT]") {
		t.Fatalf("SELECT Nope: %s", st)
	}
	if _, st := c.cmd("FETCH 1 FLAGS"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("FETCH after failed SELECT: %s", st)
	}
	if got := env.hints.list(); !slices.Contains(got, "alice:INBOX") {
		t.Errorf("SELECT did not hint the poller: %q", got)
	}
}

// TestExamineReadOnly: EXAMINE must be really read-only (docs/imapserver-workarounds.md, "Mailbox tracker"; go-imap
// #672): no STORE, EXPUNGE, MOVE, no implicit \Seen, and CLOSE expunges
// nothing.
func TestExamineReadOnly(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	// Mark message 2 \Deleted through a read-write session first.
	rw := env.rawLogin("alice")
	rw.ok("SELECT INBOX")
	rw.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
	rw.ok("LOGOUT")

	c := env.rawLogin("alice")
	u, st := c.cmd("EXAMINE INBOX")
	if !strings.HasPrefix(st, "OK [READ-ONLY]") {
		t.Fatalf("EXAMINE: %s", st)
	}
	if len(grep(u, "PERMANENTFLAGS ()")) == 0 {
		t.Errorf("EXAMINE PERMANENTFLAGS not empty: %q", u)
	}
	tests := []struct{ name, cmd string }{
		{"store", `STORE 1 +FLAGS (\Flagged)`},
		{"uid store", `UID STORE 1 +FLAGS (\Flagged)`},
		{"expunge", "EXPUNGE"},
		{"uid expunge", "UID EXPUNGE 2"},
		{"move", "MOVE 1 Trash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, st := c.cmd("%s", tt.cmd); !strings.HasPrefix(st, "NO") {
				t.Fatalf("%s in read-only mailbox: %s", tt.cmd, st)
			}
		})
	}
	// A non-peek fetch must not set \Seen.
	u = c.ok("FETCH 1 (BODY[])")
	if len(grep(u, `\Seen`)) != 0 {
		t.Fatalf("BODY[] in EXAMINE reported \\Seen: %q", u)
	}
	// CLOSE succeeds and expunges nothing.
	c.ok("CLOSE")
	c.ok("SELECT INBOX")
	u = c.ok("FETCH 1:* (FLAGS)")
	if len(u) != 2 {
		t.Fatalf("after EXAMINE+CLOSE: %q", u)
	}
	if strings.Contains(u[0], `\Seen`) || strings.Contains(u[0], `\Flagged`) {
		t.Fatalf("read-only session changed flags: %q", u)
	}
	if !strings.Contains(u[1], `\Deleted`) {
		t.Fatalf("message 2 lost \\Deleted: %q", u)
	}
}

func TestCloseExpungesSilently(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	c.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	if u := c.ok("CLOSE"); len(grep(u, "EXPUNGE")) != 0 {
		t.Fatalf("CLOSE sent EXPUNGE: %q", u)
	}
	u := c.ok("SELECT INBOX")
	if len(grep(u, "* 1 EXISTS")) != 1 {
		t.Fatalf("after CLOSE: %q", u)
	}
}

func TestUnselectKeepsDeleted(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	c.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	c.ok("UNSELECT")
	if u := c.ok("SELECT INBOX"); len(grep(u, "* 1 EXISTS")) != 1 {
		t.Fatalf("UNSELECT expunged: %q", u)
	}
}
