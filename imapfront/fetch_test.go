package imapfront

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// multipartMsg has a text part, a base64 attachment and an enclosed message.
const multipartMsg = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
	"Message-ID: <mp@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"first part\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"a.bin\"\r\n" +
	"\r\n" +
	"AAECAwQ=\r\n" +
	"--b1\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: Carol <carol@example.com>\r\n" +
	"Subject: inner\r\n" +
	"\r\n" +
	"inner body\r\n" +
	"--b1--\r\n"

// zeroPartMsg is a multipart without any part: imapserver panics writing its
// BODYSTRUCTURE unless the structure is sanitised (docs/imapserver-workarounds.md, "BODYSTRUCTURE of a multipart without parts").
const zeroPartMsg = "From: a@example.org\r\nSubject: zero\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\nno parts at all\r\n"

func TestFetchItems(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("plain"))
	env.deliver("alice", "INBOX", multipartMsg)
	c := env.rawSelected("alice", "INBOX")
	size := len(msg("plain"))
	tests := []struct {
		name, cmd string
		want      []string // substrings of the single FETCH line
		notWant   []string
	}{
		{"uid flags", "FETCH 1 (UID FLAGS)", []string{"UID 1", `FLAGS (\Recent)`}, nil},
		{"size", "FETCH 1 RFC822.SIZE", []string{"RFC822.SIZE " + itoa(size)}, nil},
		{"internaldate", "FETCH 1 INTERNALDATE", []string{`INTERNALDATE "`}, nil},
		{"envelope", "FETCH 1 ENVELOPE", []string{`ENVELOPE ("Mon, 02 Jan 2006 15:04:05 -0700" "plain" (("Alice" NIL "alice" "example.org"))`}, nil},
		{"whole body peek", "FETCH 1 BODY.PEEK[]", []string{"BODY[] {" + itoa(size) + "}From: Alice"}, []string{`\Seen`}},
		{"header", "FETCH 1 BODY.PEEK[HEADER]", []string{"BODY[HEADER] {", "Message-ID: <plain@example.org>\r\n\r\n"}, nil},
		{"text", "FETCH 1 BODY.PEEK[TEXT]", []string{"BODY[TEXT] {23}Hello, this is plain.\r\n"}, nil},
		{"header fields", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT to)]", []string{`BODY[HEADER.FIELDS ("SUBJECT" "to")] {`, "To: Bob <bob@example.net>\r\nSubject: plain\r\n\r\n"}, []string{"From:"}},
		{"header fields not", "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Date)]", []string{"{35}Message-ID: <plain@example.org>\r\n\r\n"}, nil},
		{"partial", "FETCH 1 BODY.PEEK[]<6.5>", []string{"BODY[]<6> {5}Alice"}, nil},
		{"partial beyond end", "FETCH 1 BODY.PEEK[]<100000.5>", []string{"BODY[]<100000> {0}"}, nil},
		{"part 1 of single part", "FETCH 1 BODY.PEEK[1]", []string{"BODY[1] {23}Hello, this is plain."}, nil},
		{"rfc822.header", "FETCH 1 RFC822.HEADER", []string{"RFC822.HEADER {"}, []string{`\Seen`}},
		{"mp part 1", "FETCH 2 BODY.PEEK[1]", []string{"BODY[1] {10}first part"}, nil},
		{"mp part 1 mime", "FETCH 2 BODY.PEEK[1.MIME]", []string{"BODY[1.MIME] {", "Content-Type: text/plain; charset=utf-8\r\n\r\n"}, nil},
		{"mp part 2 raw", "FETCH 2 BODY.PEEK[2]", []string{"BODY[2] {8}AAECAwQ="}, nil},
		{"mp part 3 header", "FETCH 2 BODY.PEEK[3.HEADER]", []string{"BODY[3.HEADER] {", "Subject: inner\r\n\r\n"}, []string{"message/rfc822"}},
		{"mp part 3 text", "FETCH 2 BODY.PEEK[3.TEXT]", []string{"BODY[3.TEXT] {10}inner body)"}, nil},
		{"mp part 3.1", "FETCH 2 BODY.PEEK[3.1]", []string{"BODY[3.1] {10}inner body)"}, nil},
		{"mp missing part", "FETCH 2 BODY.PEEK[9]", []string{"BODY[9] {0}"}, nil},
		{"missing nested part", "FETCH 2 BODY.PEEK[99.99.99]", []string{"BODY[99.99.99] {0})"}, nil},
		{"missing part of single part", "FETCH 1 BODY.PEEK[1.2]", []string{"BODY[1.2] {0})"}, nil},
		{"missing part mime", "FETCH 2 BODY.PEEK[99.MIME]", []string{"BODY[99.MIME] {0})"}, nil},
		{"missing part header", "FETCH 2 BODY.PEEK[99.HEADER]", []string{"BODY[99.HEADER] {0})"}, nil},
		{"missing part binary", "FETCH 2 BINARY.PEEK[99.99.99]", []string{"BINARY[99.99.99] ~{0})"}, nil},
		{"missing part binary size", "FETCH 2 BINARY.SIZE[99]", []string{"BINARY.SIZE[99] 0)"}, nil},
		{"binary", "FETCH 2 BINARY.PEEK[2]", []string{"BINARY[2] ~{5}\x00\x01\x02\x03\x04"}, nil},
		{"binary size", "FETCH 2 BINARY.SIZE[2]", []string{"BINARY.SIZE[2] 5"}, nil},
		{"body non-extended", "FETCH 2 BODY", []string{`BODY (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 `}, []string{"BODYSTRUCTURE"}},
		{"bodystructure", "FETCH 2 BODYSTRUCTURE", []string{`BODYSTRUCTURE (("text" "plain"`, `"application" "octet-stream" NIL NIL NIL "base64" 8`, `("attachment" ("filename" "a.bin"))`, `"message" "rfc822"`, `"mixed" ("boundary" "b1")`}, nil},
		{"envelope decoded subject", "FETCH 2 ENVELOPE", []string{`"=?utf-8?q?caf=C3=A9?="`}, nil},
		{"macro all", "FETCH 1 ALL", []string{"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}, nil},
		{"uid fetch star", "UID FETCH 2:* (UID)", []string{"* 2 FETCH (UID 2)"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if len(u) != 1 {
				t.Fatalf("%s: %d untagged lines: %q", tt.cmd, len(u), u)
			}
			for _, w := range tt.want {
				if !strings.Contains(u[0], w) {
					t.Errorf("%s: %q lacks %q", tt.cmd, u[0], w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(u[0], w) {
					t.Errorf("%s: %q contains %q", tt.cmd, u[0], w)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFetchSetsSeen(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	env.deliver("alice", "INBOX", msg("two"))
	env.deliver("alice", "INBOX", msg("three"))
	c := env.rawSelected("alice", "INBOX")
	tests := []struct{ name, cmd string }{
		{"body", "FETCH 1 BODY[TEXT]"},
		{"rfc822", "FETCH 2 RFC822"},
		{"binary", "FETCH 3 BINARY[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if len(u) != 1 || !strings.Contains(u[0], `FLAGS (\Recent \Seen)`) {
				t.Fatalf("%s: %q", tt.cmd, u)
			}
		})
	}
	u := c.ok("FETCH 1:3 FLAGS")
	if len(grep(u, `\Seen`)) != 3 {
		t.Fatalf("flags after fetch: %q", u)
	}
}

// TestFetchZeroPartMultipart is the regression test for the imapserver
// panic on a multipart without parts (docs/imapserver-workarounds.md, "BODYSTRUCTURE of a multipart without parts"): BODYSTRUCTURE must be
// answered and the connection must survive.
func TestFetchZeroPartMultipart(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", zeroPartMsg)
	c := env.rawSelected("alice", "INBOX")
	for _, item := range []string{"BODYSTRUCTURE", "BODY", "BODY.PEEK[1]", "BINARY.SIZE[1]"} {
		u := c.ok("FETCH 1 %s", item)
		if len(u) != 1 {
			t.Fatalf("FETCH %s: %q", item, u)
		}
	}
	c.ok("NOOP")

	// imapclient parses the structure too.
	cl := env.client("alice")
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].BodyStructure == nil {
		t.Fatalf("imapclient BODYSTRUCTURE: %v %v", msgs, err)
	}
}

func TestFetchExpungedByOtherSkipped(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two", "three")
	a := env.rawSelected("alice", "INBOX")
	b := env.rawSelected("alice", "INBOX")
	b.ok(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	if u := a.ok("NOOP"); strings.Join(u, "|") != `* 2 FETCH (UID 2 FLAGS (\Recent \Deleted))` { // a took them as recent
		t.Fatalf("NOOP after other's STORE: %q", u)
	}
	b.ok("EXPUNGE")
	// a still sees 3 messages; FETCH must not send EXPUNGE and must skip
	// message 2 instead of mapping it to message 3.
	u := a.ok("FETCH 1:3 (UID)")
	want := []string{"* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"}
	if strings.Join(u, "|") != strings.Join(want, "|") {
		t.Fatalf("FETCH during pending expunge: %q, want %q", u, want)
	}
	// NOOP delivers the expunge; now message 2 is UID 3.
	if u := a.ok("NOOP"); strings.Join(u, "|") != "* 2 EXPUNGE" {
		t.Fatalf("NOOP: %q", u)
	}
	if u := a.ok("FETCH 2 (UID)"); strings.Join(u, "|") != "* 2 FETCH (UID 3)" {
		t.Fatalf("FETCH 2 after expunge: %q", u)
	}
}

// TestFetchStarIsClientView: "*" is the last message the client knows, not
// one delivered meanwhile (docs/imapserver-workarounds.md, "Mailbox tracker").
func TestFetchStarIsClientView(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	c := env.rawSelected("alice", "INBOX")
	env.deliver("alice", "INBOX", msg("two"))
	env.deliver("alice", "INBOX", msg("three"))
	u, st := c.cmd("FETCH * (UID)")
	if !strings.HasPrefix(st, "OK") || len(u) < 1 || u[0] != "* 1 FETCH (UID 1)" {
		t.Fatalf("FETCH * with pending adds: %q %s", u, st)
	}
	// The adds come after the FETCH response, announced one EXISTS.
	if len(grep(u, "* 3 EXISTS")) != 1 || len(grep(u, "* 2 EXISTS")) != 0 {
		t.Fatalf("EXISTS after FETCH: %q", u)
	}
	if u := c.ok("UID FETCH 4:* (UID)"); strings.Join(u, "|") != "* 3 FETCH (UID 3)" {
		t.Fatalf("UID FETCH 4:*: %q", u)
	}
}

// TestFetchMissingPartOfSome: a section only some messages have is the
// empty string for the others (Dovecot's answer; RFC 3501 and 9051 define
// none), so one FETCH over the set still returns every message's data.
func TestFetchMissingPartOfSome(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("plain"))
	env.deliver("alice", "INBOX", multipartMsg)
	c := env.rawSelected("alice", "INBOX")
	tests := []struct {
		name, cmd string
		want      []string
	}{
		{"body", "FETCH 1:2 BODY.PEEK[2]", []string{"* 1 FETCH (UID 1 BODY[2] {0})", "* 2 FETCH (UID 2 BODY[2] {8}AAECAwQ=)"}},
		{"binary", "FETCH 1:2 BINARY.PEEK[2]", []string{"* 1 FETCH (UID 1 BINARY[2] ~{0})", "* 2 FETCH (UID 2 BINARY[2] ~{5}\x00\x01\x02\x03\x04)"}},
		{"binary size", "FETCH 1:2 BINARY.SIZE[2]", []string{"* 1 FETCH (UID 1 BINARY.SIZE[2] 0)", "* 2 FETCH (UID 2 BINARY.SIZE[2] 5)"}},
		{"nested", "FETCH 1:2 BODY.PEEK[3.1]", []string{"* 1 FETCH (UID 1 BODY[3.1] {0})", "* 2 FETCH (UID 2 BODY[3.1] {10}inner body)"}},
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
