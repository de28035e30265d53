package imapfront

import (
	"fmt"
	"strings"
	"testing"
)

func TestCopy(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two", "three")
	trash := env.mailbox("alice", "Trash")
	c := env.rawSelected("alice", "INBOX")
	c.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	_, st := c.cmd("COPY 2:3 Trash")
	if want := fmt.Sprintf("OK [COPYUID %d 2:3 1:2]", trash.UIDValidity); !strings.HasPrefix(st, want) {
		t.Fatalf("COPY: %s, want %s", st, want)
	}
	// Flags are copied; the source is unchanged.
	u := c.ok("STATUS Trash (MESSAGES)")
	if strings.Join(u, "|") != `* STATUS "Trash" (MESSAGES 2)` {
		t.Fatalf("STATUS Trash: %q", u)
	}
	// COPY into the selected mailbox is allowed and announces EXISTS.
	u, st = c.cmd("UID COPY 1 INBOX")
	if !strings.HasPrefix(st, "OK [COPYUID") || strings.Join(u, "|") != "* 4 EXISTS|* 4 RECENT" {
		t.Fatalf("COPY to self: %q %s", u, st)
	}
	if _, st := c.cmd("COPY 1 Nope"); !strings.Contains(st, "NO [TRYCREATE]") {
		t.Fatalf("COPY to missing: %s", st)
	}
	c.ok("SELECT Trash")
	if u := c.ok("FETCH 1 FLAGS"); !strings.Contains(u[0], `\Flagged`) {
		t.Fatalf("copied flags: %q", u)
	}
}

// TestMoveExpungeCounts: MOVE reports COPYUID, then each EXPUNGE exactly
// once, to the mover and to observers (docs/imapserver-workarounds.md, "Mailbox tracker").
func TestMoveExpungeCounts(t *testing.T) {
	env := newEnv(t)
	for i := 1; i <= 5; i++ {
		env.deliver("alice", "INBOX", msg(fmt.Sprintf("m%d", i)))
	}
	archive := env.mailbox("alice", "Archive")
	mover := env.rawSelected("alice", "INBOX")
	observer := env.rawSelected("alice", "INBOX")
	idler := env.rawSelected("alice", "INBOX")
	idler.idle()

	u, st := mover.cmd("MOVE 2,4 Archive")
	if !strings.HasPrefix(st, "OK") {
		t.Fatalf("MOVE: %s", st)
	}
	want := []string{fmt.Sprintf("* OK [COPYUID %d 2,4 1:2] COPY completed", archive.UIDValidity), "* 2 EXPUNGE", "* 3 EXPUNGE"}
	if strings.Join(u, "|") != strings.Join(want, "|") {
		t.Fatalf("mover got:\n %q\nwant %q", u, want)
	}
	if u := observer.ok("NOOP"); strings.Join(u, "|") != "* 2 EXPUNGE|* 3 EXPUNGE" {
		t.Fatalf("observer got %q", u)
	}
	idler.expect("* 2 EXPUNGE", "* 3 EXPUNGE")
	if u := idler.done(); len(u) != 0 {
		t.Fatalf("idler extra: %q", u)
	}
	if u := mover.ok("NOOP"); len(u) != 0 {
		t.Fatalf("mover got a second report: %q", u)
	}
	if u := mover.ok("FETCH 1:* (UID)"); strings.Join(u, "|") != "* 1 FETCH (UID 1)|* 2 FETCH (UID 3)|* 3 FETCH (UID 5)" {
		t.Fatalf("after MOVE: %q", u)
	}
	// UID MOVE of everything left.
	u = mover.ok("UID MOVE 1:* Archive")
	if len(grep(u, "EXPUNGE")) != 3 {
		t.Fatalf("UID MOVE 1:*: %q", u)
	}
	if u := mover.ok("STATUS Archive (MESSAGES)"); strings.Join(u, "|") != `* STATUS "Archive" (MESSAGES 5)` {
		t.Fatalf("Archive: %q", u)
	}
}
