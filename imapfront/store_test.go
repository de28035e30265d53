package imapfront

import (
	"strings"
	"testing"
)

func TestStoreFlags(t *testing.T) {
	env := newEnv(t)
	for _, s := range []string{"one", "two", "three"} {
		env.deliver("alice", "INBOX", msg(s))
	}
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	tests := []struct {
		name, cmd string
		want      []string
	}{
		{"add", `STORE 1:2 +FLAGS (\Flagged \Seen)`, []string{`* 1 FETCH (UID 1 FLAGS (\Flagged \Seen))`, `* 2 FETCH (UID 2 FLAGS (\Flagged \Seen))`}},
		{"remove", `STORE 2 -FLAGS (\Seen)`, []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`}},
		{"replace", `STORE 3 FLAGS (\Answered \Draft)`, []string{`* 3 FETCH (UID 3 FLAGS (\Answered \Draft))`}},
		{"silent", `STORE 1 -FLAGS.SILENT (\Flagged)`, nil},
		{"uid store", `UID STORE 3 +FLAGS (\Seen)`, []string{`* 3 FETCH (UID 3 FLAGS (\Answered \Draft \Seen))`}},
		{"unchanged still reported", `STORE 1 +FLAGS (\Seen)`, []string{`* 1 FETCH (UID 1 FLAGS (\Seen))`}},
		{"recent is ignored", `STORE 2 +FLAGS (\Recent)`, []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if strings.Join(u, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("%s:\n got %q\nwant %q", tt.cmd, u, tt.want)
			}
		})
	}
	if _, st := c.cmd(`STORE 1 +FLAGS (\Bogus)`); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("unknown system flag: %s", st)
	}
}

// TestStoreNewKeyword: a keyword new to the mailbox is announced with an
// untagged FLAGS before any FETCH carries it, to this session and others,
// and PERMANENTFLAGS allows new keywords.
func TestStoreNewKeyword(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	c := env.rawLogin("alice")
	other := env.rawLogin("alice")
	other.ok("SELECT INBOX")
	c.ok("SELECT INBOX")
	u := c.ok(`STORE 1:2 +FLAGS ($Work)`)
	want := []string{
		`* FLAGS (\Answered \Deleted \Draft \Flagged \Seen $Work)`,
		`* 1 FETCH (UID 1 FLAGS ($Work))`,
		`* 2 FETCH (UID 2 FLAGS ($Work))`,
	}
	if strings.Join(u, "|") != strings.Join(want, "|") {
		t.Fatalf("STORE new keyword:\n got %q\nwant %q", u, want)
	}
	if u := other.ok("NOOP"); strings.Join(u, "|") != strings.Join(want, "|") {
		t.Fatalf("other session:\n got %q\nwant %q", u, want)
	}
	// The same keyword again is not new: no FLAGS.
	if u := c.ok(`STORE 1 -FLAGS ($Work)`); strings.Join(u, "|") != `* 1 FETCH (UID 1 FLAGS ())` {
		t.Fatalf("known keyword: %q", u)
	}
	// A new SELECT lists it.
	c2 := env.rawLogin("alice")
	if u := c2.ok("SELECT INBOX"); len(grep(u, `$Work \*)]`)) != 1 {
		t.Fatalf("PERMANENTFLAGS: %q", u)
	}
}

// TestStoreSeenByOthers: flags set by one session reach the other with
// its own sequence numbers, and are not echoed twice to the setter.
func TestStoreSeenByOthers(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	a := env.rawLogin("alice")
	a.ok("SELECT INBOX")
	b := env.rawLogin("alice")
	b.ok("SELECT INBOX")
	if u := a.ok(`STORE 2 +FLAGS (\Seen)`); len(u) != 1 {
		t.Fatalf("setter got %q", u)
	}
	if u := a.ok("NOOP"); len(u) != 0 {
		t.Fatalf("setter got an echo: %q", u)
	}
	if u := b.ok("NOOP"); strings.Join(u, "|") != `* 2 FETCH (UID 2 FLAGS (\Seen))` {
		t.Fatalf("other session: %q", u)
	}
}
