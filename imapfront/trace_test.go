package imapfront

import (
	"fmt"
	"strings"
	"testing"
)

// TestTraceLogsTrafficNotSecrets: a traced user's session is logged line
// by line in both directions once logged in; the password, SASL data and
// message contents (literals) never reach the log; an untraced user's
// session is not traced.
func TestTraceLogsTrafficNotSecrets(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		for i := range o.Users {
			o.Users[i].Trace = o.Users[i].Name == "alice"
		}
	})
	const secretBody = "the-body-nobody-may-log"
	env.deliver("alice", "INBOX", "Subject: hello\r\n\r\n"+secretBody+"\r\n")
	c := env.rawSelected("alice", "INBOX")
	c.ok("FETCH 1 (FLAGS BODY.PEEK[])")
	msg := "Subject: appended\r\n\r\nanother-secret-body\r\n"
	c.write("a1 APPEND INBOX {%d}", len(msg))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	c.write("%s", msg)
	for {
		l := c.line()
		if strings.HasPrefix(l, "a1 ") {
			if !strings.HasPrefix(l, "a1 OK") {
				t.Fatalf("APPEND: %q", l)
			}
			break
		}
	}
	c.ok("LOGOUT")
	b := env.rawSelected("bob", "INBOX")
	b.ok("NOOP")

	logs := env.logs.String()
	var trace []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="imap trace"`) {
			trace = append(trace, l)
		}
	}
	joined := strings.Join(trace, "\n")
	for _, want := range []string{
		`dir=C line="`, `dir=S line="`,
		`SELECT INBOX`, `FETCH 1 (FLAGS BODY.PEEK[])`,
		`bytes not traced]`, // the FETCH body and the APPEND literal
		fmt.Sprintf(`APPEND INBOX {%d} [%d bytes not traced]`, len(msg), len(msg)),
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("trace lacks %q:\n%s", want, joined)
		}
	}
	for _, secret := range []string{testPasswords["alice"], secretBody, "another-secret-body", testPasswords["bob"]} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q", secret)
		}
	}
	for _, l := range trace {
		if strings.Contains(l, "user=bob") {
			t.Errorf("untraced user traced: %s", l)
		}
	}
}

// TestTraceRedaction checks the line splitter and the credential redaction
// on their own: literals split across writes, LOGIN and AUTHENTICATE with
// its SASL responses, an over-long line.
func TestTraceRedaction(t *testing.T) {
	var got []string
	tr := &imapTrace{}
	emit := func(dir string) func(string) {
		return func(l string) { got = append(got, dir+" "+l) }
	}
	tr.cli.feed([]byte("x1 LOGIN alice sec"), func(l string) { got = append(got, "C "+tr.redactClient(l)) })
	tr.cli.feed([]byte("ret\r\nx2 AUTHENTICATE PLAIN\r\n"), func(l string) { got = append(got, "C "+tr.redactClient(l)) })
	tr.cli.feed([]byte("AGFsaWNlAHNlY3JldA==\r\n"), func(l string) { got = append(got, "C "+tr.redactClient(l)) })
	tr.server([]byte{}) // nothing
	tr.authInProgress.Store(false)
	tr.srv.feed([]byte("* 1 FETCH (BODY[] {5}\r\nab"), emit("S"))
	tr.srv.feed([]byte("cde)\r\n"), emit("S"))
	tr.srv.feed([]byte(strings.Repeat("y", traceMaxLine+10)+"\r\n"), emit("S"))
	want := []string{
		"C x1 LOGIN [credentials not traced]",
		"C x2 AUTHENTICATE PLAIN [credentials not traced]",
		"C [SASL response not traced]",
		"S * 1 FETCH (BODY[] {5} [5 bytes not traced]",
		"S )",
		"S " + strings.Repeat("y", traceMaxLine) + " [12 more bytes not traced]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
