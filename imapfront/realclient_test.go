package imapfront

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Real-client tests: the server on 127.0.0.1:0 over a real store, driven by
// Python's imaplib and by mbsync (isync). They skip when the client is not
// installed, and fail instead when POPBRIDGE_REQUIRE_DOVECOT=1 (CI).

// requireRealClient returns the path of the named program, or skips the
// test (fails it under POPBRIDGE_REQUIRE_DOVECOT=1) when it is missing.
func requireRealClient(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("POPBRIDGE_REQUIRE_DOVECOT") == "1" {
		t.Fatalf("real-client test needs %s, which is not installed (%v), and POPBRIDGE_REQUIRE_DOVECOT=1", name, err)
	}
	t.Skipf("real-client test skipped: %s is not installed (%v); set POPBRIDGE_REQUIRE_DOVECOT=1 to make this a failure", name, err)
	return ""
}

// realServer is a running Server over a fresh store with one user.
type realServer struct {
	st   *store.Store
	user store.UserID
	host string
	port int
}

// tlogWriter sends the server's log lines to the test log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRealServer opens a store in t.TempDir(), creates user name with
// password, and serves it on 127.0.0.1:0 until the test ends.
func startRealServer(t *testing.T, name, password string) *realServer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.EnsureUser(ctx, name)
	if err != nil {
		t.Fatalf("ensure user: %v", err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		t.Fatalf("hash password: %v", err)
	}
	srv, err := New(Options{
		Store:              st,
		Users:              []User{{Name: name, PasswordHash: hash}},
		AllowPlaintextAuth: true,
		Logger:             slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	srv.ensureFeed() // as Serve does, before the test seeds mail (recent.go)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	addr := ln.Addr().(*net.TCPAddr)
	return &realServer{st: st, user: u.ID, host: addr.IP.String(), port: addr.Port}
}

// mailbox returns the ID of the user's mailbox name.
func (r *realServer) mailbox(t *testing.T, name string) store.MailboxID {
	t.Helper()
	mb, err := r.st.MailboxByName(context.Background(), r.user, name)
	if err != nil {
		t.Fatalf("mailbox %q: %v", name, err)
	}
	return mb.ID
}

// appendMsg stores raw in mailbox name with flags.
func (r *realServer) appendMsg(t *testing.T, name string, raw []byte, flags ...string) store.UID {
	t.Helper()
	e, _, err := r.st.Append(context.Background(), r.user, r.mailbox(t, name), raw, flags, time.Date(2023, 5, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatalf("append to %q: %v", name, err)
	}
	return e.UID
}

// storedMessage is one message of a mailbox as the store has it.
type storedMessage struct {
	UID          store.UID
	Subject      string
	Flags        []string // sorted
	Body         []byte
	InternalDate time.Time
}

// messages returns every message of mailbox name, ascending by UID.
func (r *realServer) messages(t *testing.T, name string) []storedMessage {
	t.Helper()
	ctx := context.Background()
	id := r.mailbox(t, name)
	snap, err := r.st.Snapshot(ctx, r.user, id)
	if err != nil {
		t.Fatalf("snapshot %q: %v", name, err)
	}
	uids := make([]store.UID, len(snap.Entries))
	for i, e := range snap.Entries {
		uids[i] = e.UID
	}
	metas, err := r.st.Meta(ctx, r.user, id, uids)
	if err != nil {
		t.Fatalf("meta %q: %v", name, err)
	}
	var out []storedMessage
	for _, m := range metas {
		body, err := r.st.Body(ctx, r.user, id, m.UID)
		if err != nil {
			t.Fatalf("body %q uid %d: %v", name, m.UID, err)
		}
		flags := slices.Clone(m.Flags)
		slices.Sort(flags)
		out = append(out, storedMessage{UID: m.UID, Subject: m.Envelope.Subject, Flags: flags, Body: body, InternalDate: m.InternalDate})
	}
	return out
}

// flagsBySubject maps each message's subject to its sorted flags joined by
// spaces, failing on a duplicate subject.
func flagsBySubject(t *testing.T, where string, msgs []storedMessage) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, m := range msgs {
		if _, dup := out[m.Subject]; dup {
			t.Errorf("%s: message %q is there twice", where, m.Subject)
		}
		out[m.Subject] = strings.Join(m.Flags, " ")
	}
	return out
}

func realMessage(from, subject, body string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: Alice <alice@example.com>\r\nSubject: %s\r\nDate: Mon, 01 May 2023 12:00:00 +0000\r\n", from, subject)
	fmt.Fprintf(&b, "Message-ID: <%x@popbridge.test>\r\n", sha256.Sum256([]byte(subject)))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return []byte(b.String())
}

// imaplibResult is the JSON testdata/realclient/imaplib_client.py prints.
type imaplibResult struct {
	Error          string   `json:"error"`
	Caps           []string `json:"caps"`
	List           []string `json:"list"`
	InboxExists    int      `json:"inbox_exists"`
	UIDs           []uint32 `json:"uids"`
	Body1SHA256    string   `json:"body1_sha256"`
	Body1Size      int      `json:"body1_size"`
	AppendUID      uint32   `json:"append_uid"`
	MoveExpunged   []int    `json:"move_expunged"`
	Expunged       []int    `json:"expunged"`
	FinalInboxUIDs []uint32 `json:"final_inbox_uids"`
	Seconds        float64  `json:"seconds"`
}

// TestRealClientImaplib runs Python's imaplib through login, LIST, STATUS,
// SELECT, FETCH (BODY.PEEK[], FLAGS, ENVELOPE, BODYSTRUCTURE, BODY[TEXT]),
// STORE, SEARCH, COPY, MOVE, APPEND, EXPUNGE, EXAMINE, CLOSE and LOGOUT
// (the script checks each answer), then checks the store ends up as the
// client saw it.
func TestRealClientImaplib(t *testing.T) {
	python := requireRealClient(t, "python3")
	r := startRealServer(t, "alice", "s3cret pass")

	seed1 := realMessage("Alice <alice@example.com>", "First message", "hello from the first message\r\n")
	seed2 := realMessage("Bob <bob@example.org>", "=?UTF-8?Q?Zweite_Nachricht?=",
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
			"Zweiter Text mit Gr=C3=B6=C3=9Fe.\r\n"+
			"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Zweiter Text.</p>\r\n--b1--\r\n",
		"MIME-Version: 1.0", `Content-Type: multipart/alternative; boundary="b1"`)
	seed3 := realMessage("Carol <carol@example.net>", "Third", "the third one\r\n")
	r.appendMsg(t, store.Inbox, seed1)
	r.appendMsg(t, store.Inbox, seed2, store.FlagSeen)
	r.appendMsg(t, store.Inbox, seed3, store.FlagFlagged)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := filepath.Join("testdata", "realclient", "imaplib_client.py")
	cmd := exec.CommandContext(ctx, python, script, r.host, strconv.Itoa(r.port), "alice", "s3cret pass")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res imaplibResult
	jsonErr := json.Unmarshal(stdout.Bytes(), &res)
	if runErr != nil || jsonErr != nil || res.Error != "" {
		t.Fatalf("imaplib client failed: %v (json: %v)\nstderr:\n%s\nstdout:\n%s", runErr, jsonErr, stderr.String(), stdout.String())
	}
	t.Logf("imaplib session took %.3f s", res.Seconds)

	sum := sha256.Sum256(seed1)
	if res.Body1SHA256 != hex.EncodeToString(sum[:]) || res.Body1Size != len(seed1) {
		t.Errorf("BODY.PEEK[] of message 1: %d bytes sha256 %s, want the %d stored bytes", res.Body1Size, res.Body1SHA256, len(seed1))
	}

	// The store agrees with what the client was told.
	inbox := r.messages(t, store.Inbox)
	var inboxUIDs []uint32
	for _, m := range inbox {
		inboxUIDs = append(inboxUIDs, uint32(m.UID))
	}
	if !slices.Equal(inboxUIDs, res.FinalInboxUIDs) {
		t.Errorf("INBOX UIDs in the store %v, client saw %v", inboxUIDs, res.FinalInboxUIDs)
	}
	if got, want := flagsBySubject(t, "INBOX", inbox), map[string]string{
		"Zweite Nachricht":    `\Answered`,
		"Appended by imaplib": `$Appended \Seen`,
	}; !maps.Equal(got, want) {
		t.Errorf("INBOX flags %v, want %v", got, want)
	}
	for _, m := range inbox {
		if m.Subject != "Appended by imaplib" {
			continue
		}
		if uint32(m.UID) != res.AppendUID {
			t.Errorf("appended message has UID %d, APPENDUID said %d", m.UID, res.AppendUID)
		}
		if !m.InternalDate.Equal(time.Date(2023, 3, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("appended INTERNALDATE %v, want 2023-03-01 10:00 UTC", m.InternalDate)
		}
		if !bytes.HasSuffix(m.Body, []byte("\r\n\r\nappended body line\r\n")) {
			t.Errorf("appended body %q", m.Body)
		}
	}
	archive := r.messages(t, "Archive")
	if len(archive) != 2 || !bytes.Equal(archive[0].Body, seed1) || !bytes.Equal(archive[1].Body, seed3) {
		t.Fatalf("Archive holds %d messages, want the copy of message 1 then the moved message 3", len(archive))
	}
	if got, want := flagsBySubject(t, "Archive", archive), map[string]string{
		"First message": `$Work \Flagged`,
		"Third":         `\Flagged \Seen`,
	}; !maps.Equal(got, want) {
		t.Errorf("Archive flags %v, want %v (EXAMINE must not have changed them)", got, want)
	}
}

// maildirMessage is one message file of a Maildir folder.
type maildirMessage struct {
	path    string
	subject string
	flags   string // Maildir info flags, e.g. "FS"
}

// readMaildir lists the messages of the Maildir folder dir (new and cur).
func readMaildir(t *testing.T, dir string) []maildirMessage {
	t.Helper()
	var out []maildirMessage
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatalf("read maildir: %v", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, sub, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("read maildir message: %v", err)
			}
			m := maildirMessage{path: p}
			if _, info, ok := strings.Cut(e.Name(), ":2,"); ok {
				m.flags = info
			}
			for line := range strings.SplitSeq(string(data), "\n") {
				line = strings.TrimRight(line, "\r")
				if line == "" {
					break
				}
				if v, ok := strings.CutPrefix(line, "Subject: "); ok {
					m.subject = v
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// maildirFlags maps subject to Maildir flags, failing on duplicates.
func maildirFlags(t *testing.T, where string, msgs []maildirMessage) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, m := range msgs {
		if _, dup := out[m.subject]; dup {
			t.Errorf("%s: message %q is there twice", where, m.subject)
		}
		out[m.subject] = m.flags
	}
	return out
}

// setMaildirFlags renames a message file into cur/ with the given flags.
func setMaildirFlags(t *testing.T, dir string, m maildirMessage, flags string) {
	t.Helper()
	base, _, _ := strings.Cut(filepath.Base(m.path), ":2,")
	if err := os.Rename(m.path, filepath.Join(dir, "cur", base+":2,"+flags)); err != nil {
		t.Fatalf("set maildir flags: %v", err)
	}
}

// writeMaildirMessage adds a message file (no UID yet) to a Maildir folder,
// creating the folder if needed.
func writeMaildirMessage(t *testing.T, dir, name, flags string, raw []byte) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "new", name)
	if flags != "" {
		p = filepath.Join(dir, "cur", name+":2,"+flags)
	}
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func findMaildir(t *testing.T, msgs []maildirMessage, subject string) maildirMessage {
	t.Helper()
	for _, m := range msgs {
		if m.subject == subject {
			return m
		}
	}
	t.Fatalf("no Maildir message %q", subject)
	return maildirMessage{}
}

// TestRealClientMbsync syncs the server two ways with a Maildir tree using
// mbsync: a first full sync, then flag changes, deletions, new messages and
// a new folder on each side, a second sync that must carry each change to
// the other side, and a third that must change nothing (no duplicates).
func TestRealClientMbsync(t *testing.T) {
	mbsync := requireRealClient(t, "mbsync")
	r := startRealServer(t, "alice", "sync-pass")
	r.appendMsg(t, store.Inbox, realMessage("a@example.com", "Sync one", "one\r\n"))
	r.appendMsg(t, store.Inbox, realMessage("a@example.com", "Sync two", "two\r\n"), store.FlagSeen)
	uid3 := r.appendMsg(t, store.Inbox, realMessage("a@example.com", "Sync three", "three\r\n"), store.FlagFlagged)
	r.appendMsg(t, store.Inbox, realMessage("a@example.com", "Sync four", "four\r\n"), store.FlagSeen)
	if _, err := r.st.CreateMailbox(context.Background(), r.user, "Lists", ""); err != nil {
		t.Fatal(err)
	}
	r.appendMsg(t, "Lists", realMessage("list@example.com", "List mail", "list\r\n"), store.FlagSeen)

	dir := t.TempDir()
	maildir := filepath.Join(dir, "Mail")
	tmpl, err := os.ReadFile(filepath.Join("testdata", "realclient", "mbsyncrc.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("{{PORT}}", strconv.Itoa(r.port), "{{USER}}", "alice", "{{PASS}}", "sync-pass",
		"{{MAILDIR}}", maildir).Replace(string(tmpl))
	cfgPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	sync := func(round string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, mbsync, "-c", cfgPath, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync (%s): %v\n%s", round, err, out)
		}
		t.Logf("mbsync (%s):\n%s", round, out)
	}
	inboxDir := filepath.Join(maildir, "INBOX")

	// Round 1: everything arrives in the Maildir with its flags.
	sync("first sync")
	if got, want := maildirFlags(t, "Maildir INBOX", readMaildir(t, inboxDir)), map[string]string{
		"Sync one": "", "Sync two": "S", "Sync three": "F", "Sync four": "S",
	}; !maps.Equal(got, want) {
		t.Fatalf("Maildir INBOX after first sync %v, want %v", got, want)
	}
	if got, want := maildirFlags(t, "Maildir Lists", readMaildir(t, filepath.Join(maildir, "Lists"))), map[string]string{
		"List mail": "S",
	}; !maps.Equal(got, want) {
		t.Errorf("Maildir Lists after first sync %v, want %v", got, want)
	}
	for _, special := range []string{"Sent", "Trash", "Drafts", "Junk", "Archive"} {
		if _, err := os.Stat(filepath.Join(maildir, special, "cur")); err != nil {
			t.Errorf("mailbox %s not created in the Maildir: %v", special, err)
		}
	}

	// Changes on the server (as another device or the poller makes them):
	// one is read, three is deleted, five arrives.
	ctx := context.Background()
	inbox := r.mailbox(t, store.Inbox)
	var uid1 store.UID
	for _, m := range r.messages(t, store.Inbox) {
		if m.Subject == "Sync one" {
			uid1 = m.UID
		}
	}
	if _, err := r.st.UpdateFlags(ctx, r.user, inbox, []store.UID{uid1}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.UpdateFlags(ctx, r.user, inbox, []store.UID{uid3}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Expunge(ctx, r.user, inbox, []store.UID{uid3}); err != nil {
		t.Fatal(err)
	}
	r.appendMsg(t, store.Inbox, realMessage("b@example.com", "Sync five", "five\r\n"))

	// Changes in the Maildir: two is answered and flagged, four is
	// deleted, six is written, and a new folder appears.
	md := readMaildir(t, inboxDir)
	setMaildirFlags(t, inboxDir, findMaildir(t, md, "Sync two"), "FRS")
	if err := os.Remove(findMaildir(t, md, "Sync four").path); err != nil {
		t.Fatal(err)
	}
	writeMaildirMessage(t, inboxDir, "1700000000.six.popbridge", "S", realMessage("c@example.com", "Sync six", "six\r\n"))
	writeMaildirMessage(t, filepath.Join(maildir, "Projects"), "1700000000.plan.popbridge", "F",
		realMessage("c@example.com", "Project plan", "plan\r\n"))

	// Round 2: each side's changes reach the other.
	sync("second sync")
	wantServer := map[string]string{
		"Sync one":  `\Seen`,
		"Sync two":  `\Answered \Flagged \Seen`,
		"Sync five": "",
		"Sync six":  `\Seen`,
	}
	wantMaildir := map[string]string{"Sync one": "S", "Sync two": "FRS", "Sync five": "", "Sync six": "S"}
	check := func(round string) {
		t.Helper()
		if got := flagsBySubject(t, "server INBOX", r.messages(t, store.Inbox)); !maps.Equal(got, wantServer) {
			t.Errorf("server INBOX after %s: %v, want %v", round, got, wantServer)
		}
		if got := maildirFlags(t, "Maildir INBOX", readMaildir(t, inboxDir)); !maps.Equal(got, wantMaildir) {
			t.Errorf("Maildir INBOX after %s: %v, want %v", round, got, wantMaildir)
		}
		if got, want := flagsBySubject(t, "server Projects", r.messages(t, "Projects")), map[string]string{
			"Project plan": `\Flagged`,
		}; !maps.Equal(got, want) {
			t.Errorf("server Projects after %s: %v, want %v", round, got, want)
		}
		if got, want := flagsBySubject(t, "server Lists", r.messages(t, "Lists")), map[string]string{
			"List mail": `\Seen`,
		}; !maps.Equal(got, want) {
			t.Errorf("server Lists after %s: %v, want %v", round, got, want)
		}
	}
	check("second sync")

	// Round 3: nothing changed, so nothing may move (no duplicates).
	sync("third sync")
	check("third sync")
}
