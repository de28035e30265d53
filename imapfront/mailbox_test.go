package imapfront

import (
	"strings"
	"testing"
)

func TestCreateDeleteRename(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	tests := []struct{ name, cmd, want string }{
		{"create", "CREATE Work", "OK"},
		{"create nested with trailing delimiter", "CREATE Work/2024/", "OK"},
		{"create exists", "CREATE Work", "NO [ALREADYEXISTS]"},
		{"create invalid", `CREATE "a//b"`, "NO [CANNOT]"},
		{"create escape", `CREATE "../bob"`, "NO [CANNOT]"},
		{"create special use", `CREATE Spam (USE (\Junk))`, "OK"},
		{"create bad special use", `CREATE Odd (USE (\Important))`, "NO [USEATTR]"},
		{"rename", "RENAME Work Job", "OK"},
		{"rename missing", "RENAME Nope Other", "NO [NONEXISTENT]"},
		{"rename onto existing", "RENAME Job Trash", "NO [ALREADYEXISTS]"},
		{"delete inbox", "DELETE INBOX", "NO"},
		{"delete missing", "DELETE Nope", "NO [NONEXISTENT]"},
		{"delete parent leaves noselect", "DELETE Job", "OK"},
		{"delete child", "DELETE Job/2024", "OK"},
		{"subscribe", "SUBSCRIBE Spam", "OK"},
		{"unsubscribe", "UNSUBSCRIBE Spam", "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, st := c.cmd("%s", tt.cmd)
			if !strings.HasPrefix(st, tt.want) {
				t.Fatalf("%s: %s, want %s", tt.cmd, st, tt.want)
			}
		})
	}
	u := c.ok(`LIST "" "*"`)
	if len(grep(u, `"Job/2024"`)) != 0 || len(grep(u, `"Work"`)) != 0 {
		t.Fatalf("LIST after rename/delete: %q", u)
	}
	if l := grep(u, `"Spam"`); len(l) != 1 || !strings.Contains(l[0], `\Junk`) {
		t.Fatalf("special use: %q", u)
	}
}

func TestRenameInbox(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	c := env.rawLogin("alice")
	c.ok("RENAME INBOX Old")
	if u := c.ok("STATUS INBOX (MESSAGES)"); !strings.Contains(u[0], "MESSAGES 0") {
		t.Fatalf("INBOX after rename: %q", u)
	}
	if u := c.ok("STATUS Old (MESSAGES)"); !strings.Contains(u[0], "MESSAGES 1") {
		t.Fatalf("Old after rename: %q", u)
	}
}

func TestList(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	c.ok("CREATE Work/Projects/A")
	c.ok("CREATE Work/Notes")
	c.ok("SUBSCRIBE Work/Notes")
	c.ok("SUBSCRIBE Gone")
	tests := []struct {
		name, cmd string
		want      []string // exact lines, in order
	}{
		{"delimiter", `LIST "" ""`, []string{`* LIST (\Noselect) "/" ""`}},
		{"percent top", `LIST "" "W%"`, []string{`* LIST (\Noselect \HasChildren) "/" "Work"`}},
		{"star", `LIST "" "Work/*"`, []string{`* LIST (\HasNoChildren) "/" "Work/Notes"`, `* LIST (\Noselect \HasChildren) "/" "Work/Projects"`, `* LIST (\HasNoChildren) "/" "Work/Projects/A"`}},
		{"inbox case-insensitive", `LIST "" "inbox"`, []string{`* LIST (\HasNoChildren) "/" INBOX`}},
		{"special-use selection", `LIST (SPECIAL-USE) "" "*"`, []string{
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`, `* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`, `* LIST (\HasNoChildren \Sent) "/" "Sent"`, `* LIST (\HasNoChildren \Trash) "/" "Trash"`}},
		{"subscribed selection", `LIST (SUBSCRIBED) "" "Work/*"`, []string{`* LIST (\HasNoChildren \Subscribed) "/" "Work/Notes"`}},
		{"subscribed nonexistent", `LIST (SUBSCRIBED) "" "Gone"`, []string{`* LIST (\NonExistent \Subscribed) "/" "Gone"`}},
		{"recursivematch", `LIST (SUBSCRIBED RECURSIVEMATCH) "" "Work"`, []string{`* LIST (\Noselect \HasChildren) "/" "Work" (CHILDINFO ("SUBSCRIBED"))`}},
		{"return subscribed", `LIST "" "Work/Notes" RETURN (SUBSCRIBED)`, []string{`* LIST (\HasNoChildren \Subscribed) "/" "Work/Notes"`}},
		{"return status", `LIST "" "Work/Notes" RETURN (STATUS (MESSAGES UIDNEXT SIZE))`, []string{`* LIST (\HasNoChildren) "/" "Work/Notes"`, `* STATUS "Work/Notes" (MESSAGES 0 UIDNEXT 1 SIZE 0)`}},
		{"lsub", `LSUB "" "Work/*"`, []string{`* LSUB (\HasNoChildren \Subscribed) "/" "Work/Notes"`}},
		{"multiple patterns", `LIST "" ("Sent" "Trash")`, []string{`* LIST (\HasNoChildren \Sent) "/" "Sent"`, `* LIST (\HasNoChildren \Trash) "/" "Trash"`}},
		{"pathological pattern is fast", `LIST "" "**********************************b"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if tt.want == nil {
				if len(u) != 0 {
					t.Fatalf("%s: %q", tt.cmd, u)
				}
				return
			}
			if strings.Join(u, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("%s:\n got %q\nwant %q", tt.cmd, u, tt.want)
			}
		})
	}
	u := c.ok("%s", `LIST "Work/" "%"`)
	if strings.Join(u, "\n") != `* LIST (\HasNoChildren) "/" "Work/Notes"`+"\n"+`* LIST (\Noselect \HasChildren) "/" "Work/Projects"` {
		t.Fatalf("LIST Work/ %%: %q", u)
	}
	if _, st := c.cmd(`LIST "" "*" RETURN (STATUS (DELETED-STORAGE))`); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("LIST-STATUS DELETED-STORAGE: %s", st)
	}
}

func TestStatus(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	c.ok(`STORE 1 +FLAGS (\Seen \Deleted)`)
	size := len(msg("one")) + len(msg("two"))
	u := c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT APPENDLIMIT)")
	mb := env.mailbox("alice", "INBOX")
	want := `* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY ` + itoa(int(mb.UIDValidity)) + ` UNSEEN 1 DELETED 1 SIZE ` + itoa(size) + ` APPENDLIMIT 52428800 RECENT 0)`
	if strings.Join(u, "|") != want {
		t.Fatalf("STATUS:\n got %q\nwant %q", u, want)
	}
	// DELETED-STORAGE used to leave a nil item and kill the connection
	// (docs/imapserver-workarounds.md, "STATUS items"): it is refused and the connection lives on.
	if _, st := c.cmd("STATUS INBOX (MESSAGES DELETED-STORAGE)"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("STATUS DELETED-STORAGE: %s", st)
	}
	if _, st := c.cmd("STATUS Nope (MESSAGES)"); !strings.Contains(st, "NO [NONEXISTENT]") {
		t.Fatalf("STATUS missing: %s", st)
	}
	c.ok("NOOP")
}

func TestNamespace(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	if u := c.ok("NAMESPACE"); strings.Join(u, "|") != `* NAMESPACE (("" "/")) NIL NIL` {
		t.Fatalf("NAMESPACE: %q", u)
	}
}
