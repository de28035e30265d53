package imapfront

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fuzzInputDeadline bounds one fuzz input's conversation with the server.
const fuzzInputDeadline = 2 * time.Second

// FuzzIMAPSession feeds arbitrary command lines to a live server over
// loopback, after LOGIN, with INBOX selected. Each input is split into
// lines, each sent with CRLF, followed by DONE, LOGOUT and the end of the
// client's stream, so inputs end promptly; the conversation is cut after
// fuzzInputDeadline. After each
// input no panic may have been recovered (in session methods or by
// imapserver) and a fresh client must still log in, select and fetch.
//
// The server is shared by all inputs of a fuzz worker, so its state drifts
// (mailboxes created, messages expunged); the seed messages are delivered
// again when INBOX runs low.
func FuzzIMAPSession(f *testing.F) {
	for _, seed := range []string{
		"a SELECT INBOX\nb FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
		"a UID SEARCH OR FROM alice NOT SUBJECT x\nb SEARCH 1:* NOT DELETED",
		"a STORE 1 +FLAGS (\\Deleted)\nb EXPUNGE\nc NOOP",
		"a CREATE foo/bar\nb RENAME foo baz\nc LIST \"\" *\nd DELETE baz/bar",
		"a IDLE\nDONE\nb STATUS INBOX (MESSAGES UIDNEXT SIZE)",
		"a UID MOVE 1 Trash\nb COPY 1:* Archive\nc UNSELECT",
		"a APPEND INBOX {5}\nhello\nb CHECK",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (STATUS (MESSAGES))",
		"a ENABLE IMAP4rev2\nb SEARCH RETURN (SAVE) ALL\nc FETCH $ FLAGS",
		"a FETCH 1 (BINARY[1] BODY[1.MIME] BODY[HEADER.FIELDS (From)]<0.10>)",
	} {
		f.Add([]byte(seed))
	}
	env := newEnv(f, func(o *Options) { o.MaxMailboxes = 50 })
	seedInbox := func(t testing.TB) {
		for i := 0; i < 3; i++ {
			deliverTo(t, env.st, "alice", "INBOX", msg("fuzz seed"))
		}
	}
	seedInbox(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, br := dialLogin(t, env.addr, "alice")
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(fuzzInputDeadline))
		var buf bytes.Buffer
		buf.WriteString("f0 SELECT INBOX\r\n")
		for line := range bytes.SplitSeq(input, []byte("\n")) {
			buf.Write(bytes.TrimSuffix(line, []byte("\r")))
			buf.WriteString("\r\n")
		}
		buf.WriteString("DONE\r\nfz LOGOUT\r\n")
		writeErr := make(chan error, 1)
		go func() {
			_, err := conn.Write(buf.Bytes())
			// EOF after the input: the server stops waiting for literal
			// data or DONE and ends the connection once it has run
			// everything before.
			conn.(*net.TCPConn).CloseWrite()
			writeErr <- err
		}()
		io.Copy(io.Discard, br) // until the server closes or the deadline
		conn.Close()
		<-writeErr

		if n := hooksOf(t, env.srv).panics.Load(); n != 0 {
			t.Fatalf("server recovered %d panic(s) for input %q:\n%s", n, input, env.logs.String())
		}
		if !freshClientWorks(t, env.addr) {
			seedInbox(t)
			if !freshClientWorks(t, env.addr) {
				t.Fatalf("fresh client cannot log in, select and fetch after input %q", input)
			}
		}
	})
}

// dialLogin dials addr, reads the greeting and logs in as user; it fails t
// on any error.
func dialLogin(t testing.TB, addr, user string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetDeadline(time.Now().Add(ioWait))
	br := bufio.NewReader(conn)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		conn.Close()
		t.Fatalf("greeting: %q %v", l, err)
	}
	if _, err := io.WriteString(conn, "l0 LOGIN "+user+" "+testPasswords[user]+"\r\n"); err != nil {
		conn.Close()
		t.Fatalf("write LOGIN: %v", err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			t.Fatalf("LOGIN: %v", err)
		}
		if strings.HasPrefix(l, "l0 ") {
			if !strings.HasPrefix(l, "l0 OK") {
				conn.Close()
				t.Fatalf("LOGIN: %q", l)
			}
			break
		}
	}
	conn.SetDeadline(time.Time{})
	return conn, br
}

// freshClientWorks logs in as alice, selects INBOX and fetches the first
// message's flags and body; it reports false when INBOX is empty and fails
// t on any protocol error.
func freshClientWorks(t testing.TB, addr string) bool {
	t.Helper()
	conn, br := dialLogin(t, addr, "alice")
	defer conn.Close()
	c := &rawClient{t: t, conn: conn, br: br}
	lines := c.ok("SELECT INBOX")
	if len(grep(lines, "* 0 EXISTS")) == 1 {
		return false
	}
	got := c.ok("FETCH 1 (FLAGS BODY.PEEK[])")
	if len(grep(got, "* 1 FETCH")) != 1 {
		t.Fatalf("FETCH 1: %q", got)
	}
	c.ok("LOGOUT")
	return true
}
