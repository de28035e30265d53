package bridge

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// inboxTexts returns the messages in user u's INBOX.
func inboxTexts(t *testing.T, b *Bridge, user string) []string {
	t.Helper()
	ctx := context.Background()
	b.mu.Lock()
	st := b.store
	b.mu.Unlock()
	u, err := st.UserByName(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		return nil
	}
	snap, err := st.Snapshot(ctx, u.ID, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	var uids []store.UID
	for _, e := range snap.Entries {
		uids = append(uids, e.UID)
	}
	var out []string
	if len(uids) > 0 {
		if err := st.Bodies(ctx, u.ID, mb.ID, uids, func(_ store.UID, raw []byte, damaged error) error {
			if damaged != nil {
				return damaged
			}
			out = append(out, string(raw))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func withSubject(msgs []string, subject string) []string {
	var out []string
	for _, m := range msgs {
		if strings.Contains(m, "\r\nSubject: "+subject+"\r\n") {
			out = append(out, m)
		}
	}
	return out
}

// pollAndWait polls acct1 now and waits for its status to show the poll.
func pollAndWait(t *testing.T, b *Bridge, wantErr bool) {
	t.Helper()
	before := b.Status()[0]
	b.PollNow("acct1")
	waitFor(t, "poll", func() bool {
		s := b.Status()[0]
		if wantErr {
			return s.LastError != "" && !s.Polling && s.LastAttempt.After(before.LastAttempt)
		}
		return s.LastSuccess.After(before.LastSuccess)
	})
}

// TestNoticeOfFailingAccount: a wrong password, polls failing in a row: after
// the third the user finds one notice in INBOX saying which account, what
// the server answered and what to do; more failures add nothing; once the
// password is fixed, one message says mail arrives again.
func TestNoticeOfFailingAccount(t *testing.T) {
	up := upstream(t, 2)
	cfg := testConfig(t, up)
	cfg.Accounts[0].Password = NewSecret("wrong")
	b := New(cfg, nil)
	run(t, b)
	waitFor(t, "first poll", func() bool { s := b.Status(); return len(s) == 1 && s[0].LastError != "" && !s[0].Polling })
	pollAndWait(t, b, true)
	if n := len(withSubject(inboxTexts(t, b, "u"), `[popbridge] Mail from "acct1" is not arriving`)); n != 0 {
		t.Fatalf("notice after 2 failures: %d, want none yet", n)
	}
	pollAndWait(t, b, true)
	pollAndWait(t, b, true)
	downs := withSubject(inboxTexts(t, b, "u"), `[popbridge] Mail from "acct1" is not arriving`)
	if len(downs) != 1 {
		t.Fatalf("%d failure notices after 4 failures, want 1", len(downs))
	}
	for _, want := range []string{
		`popbridge cannot fetch mail from your account "acct1" (bob on ` + up.Addr() + `).`,
		"Last successful fetch: never",
		`account "acct1": login: server said "-ERR`,
		"What to do: the provider refused the user name or password.",
		"You will\r\nget another message then.",
	} {
		if !strings.Contains(downs[0], want) {
			t.Errorf("notice lacks %q:\n%s", want, downs[0])
		}
	}

	// The user's IMAP clients are told on LOGIN and SELECT INBOX.
	alert := `* OK [ALERT] popbridge: mail from account "acct1" is not arriving; see the message in your INBOX`
	got := rawIMAP(t, b.Addrs().IMAP.String(), "a LOGIN u pw", "b SELECT INBOX", "c SELECT Trash")
	for _, tag := range []string{"a", "b"} {
		if !containsLine(got[tag], alert) {
			t.Errorf("%s: no alert in\n%s", tag, strings.Join(got[tag], "\n"))
		}
	}
	if containsLine(got["c"], alert) {
		t.Errorf("alert on SELECT of another mailbox:\n%s", strings.Join(got["c"], "\n"))
	}

	// Fixed by a reload: mail arrives, and so does the recovery message.
	fixed := testConfig(t, up)
	fixed.DataDir = cfg.DataDir
	if _, err := b.Reload(context.Background(), fixed); err != nil {
		t.Fatal(err)
	}
	pollAndWait(t, b, false)
	waitFor(t, "recovery notice", func() bool {
		return len(withSubject(inboxTexts(t, b, "u"), `[popbridge] Mail from "acct1" is arriving again`)) == 1
	})
	got = rawIMAP(t, b.Addrs().IMAP.String(), "a LOGIN u pw", "b SELECT INBOX")
	if containsLine(got["a"], alert) || containsLine(got["b"], alert) {
		t.Errorf("alert after recovery:\n%v", got)
	}
	msgs := inboxTexts(t, b, "u")
	if len(msgs) != 4 || len(withSubject(msgs, `[popbridge] Mail from "acct1" is not arriving`)) != 1 {
		t.Errorf("INBOX holds %d messages, want the 2 upstream ones and 2 notices", len(msgs))
	}
}

// TestNoticeOncePerIncidentAcrossRestart: a restart in the middle of an
// incident does not tell the user again.
func TestNoticeOncePerIncidentAcrossRestart(t *testing.T) {
	up := upstream(t, 1)
	cfg := testConfig(t, up)
	cfg.Accounts[0].Password = NewSecret("wrong")
	for round := 1; round <= 2; round++ {
		b := New(cfg, nil)
		stop := run(t, b)
		waitFor(t, "first poll", func() bool { s := b.Status(); return len(s) == 1 && s[0].LastError != "" && !s[0].Polling })
		for range NoticeAfterFailures {
			pollAndWait(t, b, true)
		}
		if n := len(withSubject(inboxTexts(t, b, "u"), `[popbridge] Mail from "acct1" is not arriving`)); n != 1 {
			t.Errorf("run %d: %d failure notices, want 1", round, n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// rawIMAP sends each command (with its tag) on one connection and returns
// the lines answered to each, by tag, the tagged line included.
func rawIMAP(t *testing.T, addr string, cmds ...string) map[string][]string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, cmd := range cmds {
		tag, _, _ := strings.Cut(cmd, " ")
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v (so far %q)", cmd, err, out[tag])
			}
			l = strings.TrimRight(l, "\r\n")
			out[tag] = append(out[tag], l)
			if strings.HasPrefix(l, tag+" ") {
				break
			}
		}
	}
	return out
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}
