package imapfront

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// The tests in this file hold behaviours that Dovecot's ImapTest checks,
// so that CI keeps them without ImapTest. Each names the ImapTest group.

// rfc822Whole is a message whose whole body is a message/rfc822.
const rfc822Whole = "From: user@domain.org\r\n" +
	"Date: Sat, 24 Mar 2007 23:00:00 +0200\r\n" +
	"Mime-Version: 1.0\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: sub@domain.org\r\n" +
	"Date: Sun, 12 Aug 2012 12:34:56 +0300\r\n" +
	"Subject: submsg\r\n" +
	"\r\n" +
	"Hello world\r\n"

// rfc822InMultipart encloses a multipart message in a message/rfc822 part.
const rfc822InMultipart = "From: user@domain.org\r\n" +
	"Mime-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"first\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"Subject: inner\r\n" +
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"inner one\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"inner two\r\n" +
	"--inner--\r\n" +
	"--outer--\r\n"

// TestSectionsOfMessageRFC822 is ImapTest's fetch-body-message-rfc822
// groups: the parts of an enclosed message are numbered from its body,
// also when the enclosing message is single-part.
func TestSectionsOfMessageRFC822(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", rfc822Whole)
	env.deliver("alice", "INBOX", rfc822InMultipart)
	c := env.rawSelected("alice", "INBOX")
	sub := "From: sub@domain.org\r\nDate: Sun, 12 Aug 2012 12:34:56 +0300\r\nSubject: submsg\r\n\r\n"
	tests := []struct {
		name, cmd, want string
	}{
		{"whole 1", "FETCH 1 BODY.PEEK[1]", "* 1 FETCH (UID 1 BODY[1] " + lit(sub+"Hello world\r\n") + ")"},
		{"whole 1.1", "FETCH 1 BODY.PEEK[1.1]", "* 1 FETCH (UID 1 BODY[1.1] " + lit("Hello world\r\n") + ")"},
		{"whole 1.header", "FETCH 1 BODY.PEEK[1.HEADER]", "* 1 FETCH (UID 1 BODY[1.HEADER] " + lit(sub) + ")"},
		{"whole 1.text", "FETCH 1 BODY.PEEK[1.TEXT]", "* 1 FETCH (UID 1 BODY[1.TEXT] " + lit("Hello world\r\n") + ")"},
		{"whole 1.2", "FETCH 1 BODY.PEEK[1.2]", "* 1 FETCH (UID 1 BODY[1.2] {0})"},
		{"part 2.1", "FETCH 2 BODY.PEEK[2.1]", "* 2 FETCH (UID 2 BODY[2.1] " + lit("inner one") + ")"},
		{"part 2.2", "FETCH 2 BODY.PEEK[2.2]", "* 2 FETCH (UID 2 BODY[2.2] " + lit("inner two") + ")"},
		{"part 2.2.mime", "FETCH 2 BODY.PEEK[2.2.MIME]", "* 2 FETCH (UID 2 BODY[2.2.MIME] " + lit("Content-Type: text/html\r\n\r\n") + ")"},
		{"part 1", "FETCH 2 BODY.PEEK[1]", "* 2 FETCH (UID 2 BODY[1] " + lit("first") + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if got := strings.Join(u, "|"); got != tt.want {
				t.Fatalf("%s:\n got %q\nwant %q", tt.cmd, got, tt.want)
			}
		})
	}
}

// lit is s as an IMAP literal, the way rawClient.readLine inlines it.
func lit(s string) string { return fmt.Sprintf("{%d}%s", len(s), s) }

// TestListRecursiveMatchRedundantParent is ImapTest's listext group: a
// parent is returned with CHILDINFO only for a subscribed child that the
// command does not return by another pattern (RFC 5258 section 3.5).
func TestListRecursiveMatchRedundantParent(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	c.ok("CREATE p/")
	c.ok("CREATE p/c")
	c.ok("SUBSCRIBE p/c")
	tests := []struct {
		name, cmd string
		want      []string
	}{
		{"child not matched", `LIST (SUBSCRIBED RECURSIVEMATCH) "" (p)`,
			[]string{`* LIST (\HasChildren) "/" "p" (CHILDINFO ("SUBSCRIBED"))`}},
		{"child by its own pattern", `LIST (SUBSCRIBED RECURSIVEMATCH) "" (p p/c)`,
			[]string{`* LIST (\HasNoChildren \Subscribed) "/" "p/c"`}},
		{"child by the same pattern", `LIST (SUBSCRIBED RECURSIVEMATCH) "" p*`,
			[]string{`* LIST (\HasChildren) "/" "p" (CHILDINFO ("SUBSCRIBED"))`, `* LIST (\HasNoChildren \Subscribed) "/" "p/c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if strings.Join(u, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("%s:\n got %q\nwant %q", tt.cmd, u, tt.want)
			}
		})
	}
}

// TestMoveIntoSelectedMailbox is ImapTest's move group: MOVE into the
// selected mailbox answers COPYUID, then EXPUNGE, then EXISTS (RFC 6851).
func TestMoveIntoSelectedMailbox(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two")
	c := env.rawSelected("alice", "INBOX")
	u := c.ok("MOVE 1 INBOX")
	var got []string
	for _, l := range u {
		switch {
		case strings.HasPrefix(l, "* OK [COPYUID "):
			got = append(got, "COPYUID")
		case strings.HasSuffix(l, " EXPUNGE"), strings.HasSuffix(l, " EXISTS"):
			got = append(got, l)
		}
	}
	want := []string{"COPYUID", "* 1 EXPUNGE", "* 2 EXISTS"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("MOVE 1 INBOX: got %q (untagged %q), want %q", got, u, want)
	}
	// The moved message is the last one, with a new UID.
	if u := c.ok("FETCH 1:* (UID)"); strings.Join(u, "|") != "* 1 FETCH (UID 2)|* 2 FETCH (UID 3)" {
		t.Fatalf("after MOVE: %q", u)
	}
}

// TestSyntaxErrorsAreBad is ImapTest's atoms group and issue #14: client
// syntax errors that go-imap beta.8's parser answers NO [SERVERBUG] are
// answered BAD, and not counted as server bugs; a real internal error still
// is NO [SERVERBUG], and counted.
func TestSyntaxErrorsAreBad(t *testing.T) {
	var bugs atomic.Int64
	env := newEnv(t, func(o *Options) { o.OnServerBug = func() { bugs.Add(1) } })
	env.deliver("alice", "INBOX", msg("wool"))
	c := env.rawSelected("alice", "INBOX")
	for _, cmd := range []string{
		"UID SEARCH TEXT wool socks", // unknown search key
		"SEARCH 1:x",                 // bad sequence set
		"FETCH 1:x (UID)",            // bad sequence set
	} {
		if _, st := c.cmd("%s", cmd); !strings.HasPrefix(st, "BAD ") {
			t.Errorf("%s: %s, want BAD", cmd, st)
		}
	}
	// A mailbox name that is not modified UTF-7 names no mailbox.
	for _, cmd := range []string{"SELECT &Jjo", `STATUS "a&-b&AGE" (MESSAGES)`, "DELETE &Jjo", "CREATE &Jjo"} {
		if _, st := c.cmd("%s", cmd); !strings.HasPrefix(st, "NO [") || strings.Contains(st, "SERVERBUG") {
			t.Errorf("%s: %s, want NO", cmd, st)
		}
	}
	// A LIST pattern that is not modified UTF-7 matches nothing (Dovecot).
	for _, cmd := range []string{
		`LIST "" "!#$$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}%*"`,
		`LSUB "" "&Jjo*"`,
		`LIST "&Jjo" "*"`,
	} {
		if u, st := c.cmd("%s", cmd); !strings.HasPrefix(st, "OK ") || len(u) != 0 {
			t.Errorf("%s: %q %s, want OK and nothing", cmd, u, st)
		}
	}
	if n := bugs.Load(); n != 0 {
		t.Errorf("%d syntax errors counted as server bugs", n)
	}
	// The connection is in a sane state afterwards.
	if u := c.ok("UID SEARCH TEXT wool"); strings.Join(u, "|") != "* SEARCH 1" {
		t.Fatalf("UID SEARCH TEXT wool: %q", u)
	}

	fail := make(chan struct{}, 1)
	fail <- struct{}{}
	hooksOf(t, env.srv).fault = func(p string) {
		if p != "fetch" {
			return
		}
		select {
		case <-fail:
			panic("injected fault")
		default:
		}
	}
	if _, st := c.cmd("FETCH 1 (UID)"); !strings.HasPrefix(st, "NO [SERVERBUG]") {
		t.Fatalf("FETCH with an internal error: %s, want NO [SERVERBUG]", st)
	}
	if n := bugs.Load(); n != 1 {
		t.Fatalf("server bugs counted: %d, want 1", n)
	}
	// newEnv's cleanup fails on a logged panic; this one was expected.
	env.logs.mu.Lock()
	env.logs.buf.Reset()
	env.logs.mu.Unlock()
}

// TestRecent is ImapTest's copy, select and search-flags groups: \Recent
// with IMAP4rev1 semantics. New mail is recent in exactly one session: the
// one that has the mailbox selected read-write, or else the next SELECT;
// EXAMINE shows it without taking it; COPY makes the copies recent in the
// destination; SEARCH RECENT, NEW and OLD, FETCH FLAGS and STATUS RECENT
// agree.
func TestRecent(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice") // the server is serving: it sees new mail
	env.deliverAll("alice", "INBOX", "one", "two")
	// Nobody has seen them: STATUS counts them, EXAMINE shows them.
	if u := c.ok("STATUS INBOX (RECENT)"); len(grep(u, "RECENT 2")) != 1 {
		t.Fatalf("STATUS before any SELECT: %q", u)
	}
	if u := c.ok("EXAMINE INBOX"); len(grep(u, "* 2 RECENT")) != 1 {
		t.Fatalf("EXAMINE: %q", u)
	}
	// SELECT takes them; a second SELECT (another session) does not.
	if u := c.ok("SELECT INBOX"); len(grep(u, "* 2 RECENT")) != 1 {
		t.Fatalf("SELECT: %q", u)
	}
	other := env.rawSelected("alice", "INBOX")
	if u := other.ok("STATUS INBOX (RECENT)"); len(grep(u, "RECENT 0")) != 1 {
		t.Fatalf("STATUS after SELECT: %q", u)
	}
	if u := other.ok("FETCH 1:* (FLAGS)"); strings.Contains(strings.Join(u, "|"), `\Recent`) {
		t.Fatalf("second session sees recent messages: %q", u)
	}
	if u := c.ok("FETCH 1 (FLAGS)"); strings.Join(u, "|") != `* 1 FETCH (UID 1 FLAGS (\Recent))` {
		t.Fatalf("FETCH FLAGS in the claiming session: %q", u)
	}
	// New mail goes to the oldest read-write session: EXISTS and RECENT.
	env.deliver("alice", "INBOX", msg("three"))
	if u := c.ok("NOOP"); strings.Join(u, "|") != "* 3 EXISTS|* 3 RECENT" {
		t.Fatalf("NOOP in the claiming session: %q", u)
	}
	if u := other.ok("NOOP"); strings.Join(u, "|") != "* 3 EXISTS|* 0 RECENT" {
		t.Fatalf("NOOP in the other session: %q", u)
	}
	c.ok(`STORE 2 +FLAGS (\Seen)`)
	for _, tt := range []struct{ cmd, want string }{
		{"SEARCH RECENT", "* SEARCH 1 2 3"},
		{"SEARCH NEW", "* SEARCH 1 3"},
		{"SEARCH OLD", "* SEARCH"},
	} {
		if u := c.ok("%s", tt.cmd); strings.Join(u, "|") != tt.want {
			t.Errorf("%s: %q, want %q", tt.cmd, u, tt.want)
		}
		if u := other.ok("%s", tt.cmd); tt.cmd == "SEARCH OLD" && strings.Join(u, "|") != "* SEARCH 1 2 3" {
			t.Errorf("%s in the other session: %q", tt.cmd, u)
		}
	}
	// COPY makes the copies recent in the destination, for the session
	// that has it selected.
	c.ok("CREATE Dest")
	dest := env.rawSelected("alice", "Dest")
	c.ok("COPY 1:2 Dest")
	if u := dest.ok("NOOP"); strings.Join(u, "|") != "* 2 EXISTS|* 2 RECENT" {
		t.Fatalf("NOOP in the destination: %q", u)
	}
	// Expunged recent messages are no longer counted.
	dest.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	dest.ok("EXPUNGE")
	if u := dest.ok("SEARCH RECENT"); strings.Join(u, "|") != "* SEARCH 1" {
		t.Fatalf("SEARCH RECENT after EXPUNGE: %q", u)
	}
}

// TestEnvelopeGroups is ImapTest's fetch-envelope group: address groups
// are start and end markers around their members, and the comment of a
// bare address is its name.
func TestEnvelopeGroups(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"+
		"From: user@domain (Real Name)\r\n"+
		"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"+
		"Cc: group:;\r\n"+
		"\r\nbody\r\n")
	c := env.rawSelected("alice", "INBOX")
	u := c.ok("FETCH 1 ENVELOPE")
	want := `* 1 FETCH (UID 1 ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ` +
		`((NIL NIL "group" NIL) (NIL NIL "g1" "d1.org") (NIL NIL "g2" "d2.org") (NIL NIL NIL NIL) (NIL NIL "group2" NIL) (NIL NIL "g3" "d3.org") (NIL NIL NIL NIL)) ` +
		`((NIL NIL "group" NIL) (NIL NIL NIL NIL)) NIL NIL NIL))`
	if strings.Join(u, "|") != want {
		t.Fatalf("ENVELOPE:\n got %q\nwant %q", u, want)
	}
}

// TestKeywordAnnouncedBeforeUse is ImapTest's stress finding "Keyword used
// without being in FLAGS": a FETCH reply never carries a keyword the client
// has not been told about in FLAGS; it follows once FLAGS is sent.
func TestKeywordAnnouncedBeforeUse(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	a := env.rawSelected("alice", "INBOX")
	b := env.rawSelected("alice", "INBOX")
	b.ok(`STORE 1 +FLAGS ($Fresh)`)
	u := a.ok("FETCH 1 (FLAGS)")
	want := []string{
		`* 1 FETCH (UID 1 FLAGS (\Recent))`,
		`* FLAGS (\Answered \Deleted \Draft \Flagged \Seen $Fresh)`,
		`* 1 FETCH (UID 1 FLAGS (\Recent $Fresh))`,
	}
	if strings.Join(u, "|") != strings.Join(want, "|") {
		t.Fatalf("FETCH after another session's new keyword:\n got %q\nwant %q", u, want)
	}
	// Known from now on: reported at once.
	if u := a.ok("FETCH 1 (FLAGS)"); strings.Join(u, "|") != want[2] {
		t.Fatalf("second FETCH: %q", u)
	}
}

// searchAddressMessages are ImapTest's search-addresses messages.
var searchAddressMessages = []string{
	"From: user-from@domain.org\r\nTo: user-to@domain.org\r\nCc: user-cc@domain.org\r\nBcc: user-bcc@domain.org\r\n\r\nbody\r\n",
	"From: RealFrom <user-from@domain.org>\r\nTo: RealTo <user-to@domain.org>\r\nCc: RealCc <user-cc@domain.org>\r\nBcc: RealBcc <user-bcc@domain.org>\r\n\r\nbody2\r\n",
	"From: <user-from (comment)@ (comment) domain.org>\r\nTo: <user-to@domain.org>\r\nCc: <user-cc@domain.org>\r\nBcc: <user-bcc@domain.org>\r\n\r\nbody3\r\n",
	"From: user-from@domain.org (RealFrom)\r\nTo: user-to@domain.org (RealTo)\r\nCc: user-cc@domain.org (RealCc)\r\nBcc: user-bcc@domain.org (RealBcc)\r\n\r\nbody4\r\n",
	"From: user-from1@domain.org, user-from2@domain.org\r\nCc: user-cc@domain.org\r\n\r\nbody5\r\n",
	"From: RealFrom <user-from@domain.org>\r\nTo: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  groupname2: groupuser3@domain.org;\r\n\r\nbody6\r\n",
	"From: RealFrom <user-from@domain.org>\r\nTo: groupname:;\r\n\r\nbody7\r\n",
}

// TestSearchAddresses is ImapTest's search-addresses group: FROM, TO, CC
// and BCC match the parsed addresses (display name, mailbox@host, group
// name), case-insensitively and as substrings, not the raw header text.
func TestSearchAddresses(t *testing.T) {
	env := newEnv(t)
	for _, m := range searchAddressMessages {
		env.deliver("alice", "INBOX", m)
	}
	c := env.rawSelected("alice", "INBOX")
	tests := []struct{ cmd, want string }{
		{"SEARCH FROM user-from@domain.org", "* SEARCH 1 2 3 4 6 7"},
		{"SEARCH TO user-to@domain.org", "* SEARCH 1 2 3 4"},
		{"SEARCH CC user-cc@domain.org", "* SEARCH 1 2 3 4 5"},
		{"SEARCH BCC user-bcc@domain.org", "* SEARCH 1 2 3 4"},
		{"SEARCH FROM realfrom", "* SEARCH 2 4 6 7"},
		{"SEARCH TO realto", "* SEARCH 2 4"},
		{"SEARCH BCC realbcc", "* SEARCH 2 4"},
		{`SEARCH HEADER FROM ""`, "* SEARCH 1 2 3 4 5 6 7"},
		{`SEARCH HEADER TO ""`, "* SEARCH 1 2 3 4 6 7"},
		{"SEARCH FROM ser-fro", "* SEARCH 1 2 3 4 5 6 7"},
		{"SEARCH CC ser-c", "* SEARCH 1 2 3 4 5"},
		{"SEARCH FROM ealfro", "* SEARCH 2 4 6 7"},
		{"SEARCH FROM user-from1", "* SEARCH 5"},
		{"SEARCH FROM user-from2", "* SEARCH 5"},
		{"SEARCH TO groupname", "* SEARCH 6 7"},
		{"SEARCH TO groupname2", "* SEARCH 6"},
		{"SEARCH TO groupuser3", "* SEARCH 6"},
		{"SEARCH TO groupuser4", "* SEARCH"},
		{"SEARCH NOT FROM realfrom", "* SEARCH 1 3 5"},
		{"SEARCH OR TO groupuser1 CC user-cc", "* SEARCH 1 2 3 4 5 6"},
		{"SEARCH FROM realfrom BODY body6", "* SEARCH 6"},
	}
	for _, tt := range tests {
		u := c.ok("%s", tt.cmd)
		if got := strings.Join(u, "|"); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.cmd, got, tt.want)
		}
	}
}
