package imapfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

func TestAppend(t *testing.T) {
	env := newEnv(t)
	c := env.client("alice")
	raw := msg("appended")
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	cmd := c.Append("Drafts", int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Custom"}, Time: date})
	if _, err := io.WriteString(cmd, raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	mb := env.mailbox("alice", "Drafts")
	if data.UID != 1 || data.UIDValidity != mb.UIDValidity {
		t.Fatalf("APPENDUID %d %d, mailbox uidvalidity %d", data.UID, data.UIDValidity, mb.UIDValidity)
	}
	if _, err := c.Select("Drafts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(data.UID), &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	m := msgs[0]
	if !m.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE %v, want %v", m.InternalDate, date)
	}
	if fmt.Sprint(m.Flags) != "[\\Recent $Custom \\Draft]" { // recent in the session that selects it first
		t.Errorf("flags %v", m.Flags)
	}
	if got := string(m.FindBodySection(&imap.FetchItemBodySection{Peek: true})); got != raw {
		t.Errorf("body %q", got)
	}
	// A missing mailbox answers TRYCREATE.
	cmd = c.Append("Nope", 3, nil)
	io.WriteString(cmd, "a\r\n")
	cmd.Close()
	_, err = cmd.Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeTryCreate {
		t.Fatalf("APPEND to missing mailbox: %v", err)
	}
}

func TestAppendSelectedGetsExists(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	raw := msg("x")
	u, st := c.cmd("APPEND INBOX {%d+}\r\n%s", len(raw), raw)
	if !strings.HasPrefix(st, "OK [APPENDUID ") || strings.Join(u, "|") != "* 1 EXISTS|* 1 RECENT" {
		t.Fatalf("APPEND to selected: %q %s", u, st)
	}
}

// TestAppendLiteralInjection is the regression test for docs/imapserver-workarounds.md, "Rejected literals run as commands": bytes of
// a rejected non-synchronising literal must never run as commands.
func TestAppendLiteralInjection(t *testing.T) {
	payload := "x CREATE Injected\r\ny DELETE INBOX\r\nz RENAME Sent Owned\r\n"
	tests := []struct {
		name  string
		limit int64
		cmd   string // command line up to the literal; %d is the literal size
		size  int
		want  string // status of the rejected command
	}{
		{"append over limit", 1000, "a1 APPEND INBOX {%d+}", 2000, "a1 NO [TOOBIG]"},
		{"non-sync literal over 4096", 0, "a1 APPEND INBOX {%d+}", 5000, "a1 BAD Non-synchronizing"},
		{"buffered literal over 4096", 0, "a1 CREATE {%d+}", 5000, "a1 BAD"},
		{"status literal over 4096", 0, "a1 STATUS {%d+}", 5000, "a1 BAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.AppendLimit = tt.limit })
			c := env.rawLogin("alice")
			body := payload + strings.Repeat("p", tt.size-len(payload))
			// Command and literal in one write, so the literal sits in the
			// server's read buffer when the rejection is sent.
			if _, err := fmt.Fprintf(c.conn, tt.cmd+"\r\n%s", tt.size, body); err != nil {
				t.Fatal(err)
			}
			if l := c.line(); !strings.HasPrefix(l, tt.want) {
				t.Fatalf("rejection: %q", l)
			}
			// Nothing else: the connection is closed without executing the
			// literal's lines.
			var rest []string
			for {
				l, err := c.readLine(ioWait)
				if err != nil {
					if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
						break
					}
					t.Fatalf("connection not closed: %v (got %q)", err, rest)
				}
				rest = append(rest, l)
			}
			for _, l := range rest {
				if strings.Contains(l, " OK") {
					t.Errorf("injected command answered: %q", l)
				}
			}
			u := env.user("alice")
			ctx := context.Background()
			if _, err := env.st.MailboxByName(ctx, u.ID, "Injected"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Injected mailbox: %v", err)
			}
			if _, err := env.st.MailboxByName(ctx, u.ID, "INBOX"); err != nil {
				t.Errorf("INBOX: %v", err)
			}
			if _, err := env.st.MailboxByName(ctx, u.ID, "Sent"); err != nil {
				t.Errorf("Sent: %v", err)
			}
			if !strings.Contains(env.logs.String(), "rejected literal") {
				t.Errorf("poisoning not logged")
			}
			// The server keeps serving others.
			env.rawLogin("alice").ok("SELECT INBOX")
		})
	}
}

func TestAppendLimitAdvertised(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.AppendLimit = 12345 })
	c := env.rawLogin("alice")
	u := c.ok("CAPABILITY")
	if len(grep(u, "APPENDLIMIT=12345")) != 1 || len(grep(u, "LITERAL+")) != 0 {
		t.Fatalf("CAPABILITY: %q", u)
	}
	// A synchronising literal over the limit is refused before it is sent.
	c.write("a9 APPEND INBOX {20000}")
	if l := c.line(); !strings.HasPrefix(l, "a9 NO [TOOBIG]") {
		t.Fatalf("sync literal over limit: %q", l)
	}
}

// TestLiteralLookalikesDoNotPoison: message data that looks like a literal
// announcement or a rejection must not poison the connection.
func TestLiteralLookalikesDoNotPoison(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	body := "Subject: tricky\r\n\r\nline {99999+}\r\na1 NO [TOOBIG] Literals are limited\r\n"
	// A synchronising literal: wait for the continuation.
	c.write("s1 APPEND INBOX {%d}", len(body))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.write("%s", body)
	for {
		l := c.line()
		if strings.HasPrefix(l, "s1 ") {
			if !strings.HasPrefix(l, "s1 OK") {
				t.Fatalf("APPEND: %q", l)
			}
			break
		}
	}
	u := c.ok("FETCH 1 BODY.PEEK[]")
	if len(u) != 1 || !strings.Contains(u[0], "TOOBIG") {
		t.Fatalf("FETCH: %q", u)
	}
	c.ok("NOOP")
}
