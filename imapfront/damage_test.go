package imapfront

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// appendAll stores msg(subj) for each subject in user's INBOX through
// Append (indexed at once, so each message has its text record).
func (e *testEnv) appendAll(user string, subjects ...string) {
	e.t.Helper()
	u := e.user(user)
	mb := e.mailbox(user, "INBOX")
	for _, subj := range subjects {
		if _, _, err := e.st.Append(context.Background(), u.ID, mb.ID, []byte(msg(subj)), nil, time.Time{}); err != nil {
			e.t.Fatalf("Append: %v", err)
		}
	}
}

// damagePacks flips a byte of the first occurrence of needle in the store's
// pack files, in place (the store keeps them open), as a failing disk
// would.
func damagePacks(t testing.TB, dir, needle string) {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, "blobs", "pack-*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs in %s: %v", dir, err)
	}
	for _, p := range packs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, []byte(needle))
		if i < 0 {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{data[i+len(needle)/2] ^ 0x04}, int64(i+len(needle)/2)); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%q is in no pack", needle)
}

// TestFetchDamagedMessageIsContained: one message whose bytes fail their
// checksum costs only itself. The other messages of the range get their
// data, the damaged one no response, the command ends NO [CORRUPTION]
// naming it (never SERVERBUG), the damage is counted, and the session goes
// on.
func TestFetchDamagedMessageIsContained(t *testing.T) {
	e := newEnv(t)
	e.appendAll("alice", "alpha", "beta", "gamma", "delta", "epsilon")
	damagePacks(t, e.dir, "Hello, this is gamma")

	c := e.rawSelected("alice", "INBOX")
	untagged, status := c.cmd("UID FETCH 1:5 (UID FLAGS RFC822.SIZE BODY.PEEK[])")
	if !strings.HasPrefix(status, "NO [CORRUPTION]") || !strings.Contains(status, "UID 3 ") {
		t.Errorf("tagged answer %q, want NO [CORRUPTION] naming UID 3", status)
	}
	fetches := grep(untagged, " FETCH (")
	if len(fetches) != 4 {
		t.Fatalf("%d FETCH responses, want 4: %q", len(fetches), untagged)
	}
	for i, uid := range []int{1, 2, 4, 5} {
		l := fetches[i]
		if !strings.Contains(l, "UID "+strconv.Itoa(uid)+" ") || !strings.Contains(l, "RFC822.SIZE") || !strings.Contains(l, "BODY[]") {
			t.Errorf("response %d lacks its UID, size or body: %q", uid, l)
		}
	}
	if !strings.Contains(fetches[2], "Hello, this is delta.") {
		t.Errorf("UID 4's body is not its own: %q", fetches[2])
	}
	if got := e.st.DamageStats().Messages; got != 1 {
		t.Errorf("damaged message reads = %d, want 1", got)
	}
	// A non-peek FETCH marks what it returned \Seen, not the damaged
	// message, which the user never saw.
	_, status = c.cmd("UID FETCH 2:4 BODY[]")
	if !strings.HasPrefix(status, "NO [CORRUPTION]") {
		t.Errorf("UID FETCH 2:4 BODY[]: %q", status)
	}
	for _, l := range grep(c.ok("UID FETCH 2:4 FLAGS"), " FETCH (") {
		if seen := strings.Contains(l, `\Seen`); seen == strings.Contains(l, "UID 3 ") {
			t.Errorf("after BODY[] over 2:4: %q", l)
		}
	}
	// Items that need no bytes are answered in full, OK.
	c.ok("UID FETCH 1:5 (FLAGS ENVELOPE BODYSTRUCTURE)")
	c.ok("NOOP")
	if strings.Contains(e.logs.String(), "SERVERBUG") {
		t.Errorf("a SERVERBUG was logged:\n%s", e.logs.String())
	}

	// imapclient gets the four good messages and the NO with its code.
	ic := e.client("alice")
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(1, 2, 3, 4, 5)
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := ic.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeCorruption {
		t.Errorf("imapclient FETCH error %v, want NO [CORRUPTION]", err)
	}
	var withBody []imap.UID
	for _, m := range msgs {
		if b := m.FindBodySection(body); b != nil {
			withBody = append(withBody, m.UID)
		}
	}
	if !slices.Equal(withBody, []imap.UID{1, 2, 4, 5}) || len(msgs) != 4 {
		t.Errorf("imapclient got %d messages, bodies for %v; want 4, [1 2 4 5]", len(msgs), withBody)
	}
}

// TestSearchSkipsDamagedText: a search text record that fails its checksum
// does not fail the SEARCH: the message does not match, and the others are
// answered.
func TestSearchSkipsDamagedText(t *testing.T) {
	e := newEnv(t)
	// Quoted-printable, so that the decoded body text is stored (a plain
	// message's is derived from its bytes), lower-cased: the raw bytes
	// are not.
	u, mb := e.user("alice"), e.mailbox("alice", "INBOX")
	for _, subj := range []string{"alpha", "beta", "gamma"} {
		raw := "Subject: " + subj + "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello, this is " + subj + "=2E\r\n"
		if _, _, err := e.st.Append(context.Background(), u.ID, mb.ID, []byte(raw), nil, time.Time{}); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	damagePacks(t, e.dir, "hello, this is beta")
	c := e.rawSelected("alice", "INBOX")
	got := grep(c.ok("UID SEARCH BODY hello"), "* SEARCH")
	if len(got) != 1 || got[0] != "* SEARCH 1 3" {
		t.Errorf("SEARCH BODY over a damaged text: %q, want [* SEARCH 1 3]", got)
	}
	if got := e.st.DamageStats().Texts; got != 1 {
		t.Errorf("damaged text reads = %d, want 1", got)
	}
	// The message itself is intact and still readable.
	if l := grep(c.ok("UID FETCH 2 BODY.PEEK[]"), "Hello, this is beta=2E"); len(l) != 1 {
		t.Errorf("the message whose text is damaged can't be fetched")
	}
}

// imaplibDamaged is what Python's imaplib does with a FETCH over a damaged
// message: it gets NO with the text, the FETCH data of the others stays
// readable (imaplib keeps it as untagged responses), and the connection
// goes on.
const imaplibDamaged = `
import imaplib, sys
M = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
M.login("alice", sys.argv[3])
M.select("INBOX")
typ, data = M.uid("FETCH", "1:5", "(BODY.PEEK[])")
print(typ, data[0].decode())
typ, data = M.response("FETCH")
print("bodies", sum(1 for d in data if isinstance(d, tuple)))
typ, data = M.uid("FETCH", "4", "(BODY.PEEK[])")
print(typ, b"Hello, this is delta." in data[0][1])
M.logout()
`

func TestFetchDamagedImaplib(t *testing.T) {
	python := requireRealClient(t, "python3")
	e := newEnv(t)
	e.appendAll("alice", "alpha", "beta", "gamma", "delta", "epsilon")
	damagePacks(t, e.dir, "Hello, this is gamma")
	host, port, _ := strings.Cut(e.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", imaplibDamaged, host, port, testPasswords["alice"]).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NO [CORRUPTION]") || lines[1] != "bodies 4" || lines[2] != "OK True" {
		t.Errorf("imaplib saw:\n%s\nwant NO [CORRUPTION], 4 bodies kept, then a good FETCH", out)
	}
}

// TestFetchDamagedMbsync: mbsync, which fetches each message's body on its
// own, skips the damaged message with the server's NO as a warning and
// syncs the others (a FETCH response lacking the body it asked for made it
// abort the whole sync).
func TestFetchDamagedMbsync(t *testing.T) {
	mbsync := requireRealClient(t, "mbsync")
	e := newEnv(t)
	e.appendAll("alice", "alpha", "beta", "gamma", "delta")
	damagePacks(t, e.dir, "Hello, this is gamma")
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Mail")
	tmpl, err := os.ReadFile(filepath.Join("testdata", "realclient", "mbsyncrc.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(e.addr, ":")
	cfg := strings.NewReplacer("{{PORT}}", port, "{{USER}}", "alice", "{{PASS}}", testPasswords["alice"], "{{MAILDIR}}", maildir).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "mbsyncrc"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, mbsync, "-c", filepath.Join(dir, "mbsyncrc"), "-a")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NO [CORRUPTION]") {
		t.Errorf("mbsync: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
	var subjects []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, subj := range []string{"alpha", "beta", "gamma", "delta"} {
			if strings.Contains(string(b), "Hello, this is "+subj+".") {
				subjects = append(subjects, subj)
			}
		}
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, []string{"alpha", "beta", "delta"}) {
		t.Errorf("mbsync synced %v, want alpha, beta and delta", subjects)
	}
}
