package imapfront

import (
	"strings"
	"testing"
)

func TestStoreFlags(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two", "three")
	c := env.rawSelected("alice", "INBOX") // takes the messages as \Recent
	tests := []struct {
		name, cmd string
		want      []string
	}{
		{"add", `STORE 1:2 +FLAGS (\Flagged \Seen)`, []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Flagged \Seen))`, `* 2 FETCH (UID 2 FLAGS (\Recent \Flagged \Seen))`}},
		{"remove", `STORE 2 -FLAGS (\Seen)`, []string{`* 2 FETCH (UID 2 FLAGS (\Recent \Flagged))`}},
		{"replace", `STORE 3 FLAGS (\Answered \Draft)`, []string{`* 3 FETCH (UID 3 FLAGS (\Recent \Answered \Draft))`}},
		{"silent", `STORE 1 -FLAGS.SILENT (\Flagged)`, nil},
		{"uid store", `UID STORE 3 +FLAGS (\Seen)`, []string{`* 3 FETCH (UID 3 FLAGS (\Recent \Answered \Draft \Seen))`}},
		{"unchanged still reported", `STORE 1 +FLAGS (\Seen)`, []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Seen))`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if strings.Join(u, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("%s:\n got %q\nwant %q", tt.cmd, u, tt.want)
			}
		})
	}
	if _, st := c.cmd(`STORE 1 +FLAGS (\Recent \Bogus)`); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("unknown system flag: %s", st)
	}
}

// TestStoreRecentRefused: \Recent cannot be changed by STORE (RFC 3501
// section 2.3.2); like Dovecot, every STORE naming it is refused with BAD
// and changes nothing, whatever else it names.
func TestStoreRecentRefused(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	c := env.rawSelected("alice", "INBOX")
	c.ok(`STORE 1 FLAGS (\Answered)`)
	tests := []struct{ name, cmd string }{
		{"add", `STORE 1 +FLAGS (\Recent)`},
		{"add with others", `STORE 1 +FLAGS (\Seen \Recent)`},
		{"remove", `STORE 1 -FLAGS (\Recent)`},
		{"replace", `STORE 1 FLAGS (\Flagged \Recent)`},
		{"silent", `STORE 1 +FLAGS.SILENT (\Recent)`},
		{"lower case", `STORE 1 +FLAGS (\recent)`},
		{"uid store", `UID STORE 1 FLAGS (\RECENT)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, st := c.cmd("%s", tt.cmd)
			if !strings.HasPrefix(st, "BAD") || len(u) != 0 {
				t.Fatalf("%s: %q %s", tt.cmd, u, st)
			}
		})
	}
	if u := c.ok("FETCH 1 (FLAGS)"); strings.Join(u, "|") != `* 1 FETCH (UID 1 FLAGS (\Recent \Answered))` {
		t.Fatalf("flags after refused STOREs: %q", u)
	}
}

// TestStoreNoChangeFlags: a STORE that changes nothing (+FLAGS () and
// -FLAGS ()) reports each message's current flags, including changes made
// by another session the client has not been told about yet, and skips
// messages expunged meanwhile.
func TestStoreNoChangeFlags(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two", "three")
	a := env.rawSelected("alice", "INBOX")
	b := env.rawSelected("alice", "INBOX")
	b.ok(`STORE 1 +FLAGS ($Work \Seen)`)
	b.ok(`STORE 3 +FLAGS (\Deleted)`)
	b.ok("EXPUNGE")
	// The STORE's own answer (message 3 is gone: no line for it), then
	// the updates b's changes queued (no EXPUNGE during STORE), which
	// hold the only line for message 3.
	u := a.ok(`STORE 1:3 +FLAGS ()`)
	// a selected first (\Recent); $Work, new to a, is left out of the
	// answer and follows its FLAGS (TestKeywordAnnouncedBeforeUse).
	want := []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Seen))`, `* 2 FETCH (UID 2 FLAGS (\Recent))`,
		`* FLAGS (\Answered \Deleted \Draft \Flagged \Seen $Work)`, `* 1 FETCH (UID 1 FLAGS (\Recent $Work \Seen))`}
	if len(u) < 4 || strings.Join(u[:4], "|") != strings.Join(want, "|") || len(grep(u, "* 3 FETCH")) != 1 {
		t.Fatalf("STORE +FLAGS ():\n got %q\nwant first %q", u, want)
	}
	if u := a.ok(`STORE 1:2 -FLAGS.SILENT ()`); len(grep(u, "FETCH (UID")) != 0 {
		t.Fatalf("silent STORE answered %q", u)
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
	other := env.rawSelected("alice", "INBOX")
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
	// other, selected first, has them as \Recent.
	wantOther := []string{want[0], `* 1 FETCH (UID 1 FLAGS (\Recent $Work))`, `* 2 FETCH (UID 2 FLAGS (\Recent $Work))`}
	if u := other.ok("NOOP"); strings.Join(u, "|") != strings.Join(wantOther, "|") {
		t.Fatalf("other session:\n got %q\nwant %q", u, wantOther)
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
	a := env.rawSelected("alice", "INBOX")
	b := env.rawSelected("alice", "INBOX")
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
