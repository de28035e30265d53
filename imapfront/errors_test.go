package imapfront

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// downStore is a Store whose database can be made unreachable: its reads
// and writes then fail with store.ErrUnavailable, as pgstore's do.
type downStore struct {
	Store
	down atomic.Bool
}

var errDown = fmt.Errorf("postgres at 127.0.0.1:5432: %w: connection refused", store.ErrUnavailable)

func (s *downStore) Append(ctx context.Context, u store.UserID, mb store.MailboxID, raw []byte, flags []string, date time.Time) (store.Entry, uint32, error) {
	if s.down.Load() {
		return store.Entry{}, 0, errDown
	}
	return s.Store.Append(ctx, u, mb, raw, flags, date)
}

func (s *downStore) UpdateFlags(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, op store.FlagOp, flags []string) ([]store.Entry, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.UpdateFlags(ctx, u, mb, uids, op, flags)
}

func (s *downStore) CreateMailbox(ctx context.Context, u store.UserID, name string, specialUse string) (store.Mailbox, error) {
	if s.down.Load() {
		return store.Mailbox{}, errDown
	}
	return s.Store.CreateMailbox(ctx, u, name, specialUse)
}

func (s *downStore) Snapshot(ctx context.Context, u store.UserID, mb store.MailboxID) (store.Snapshot, error) {
	if s.down.Load() {
		return store.Snapshot{}, errDown
	}
	return s.Store.Snapshot(ctx, u, mb)
}

func (s *downStore) Bodies(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, fn func(uid store.UID, raw []byte, damaged error) error) error {
	if s.down.Load() {
		return errDown
	}
	return s.Store.Bodies(ctx, u, mb, uids, fn)
}

// TestStoreUnavailableAnswersNoUnavailable: while the store's database is
// unreachable, writes and reads answer NO [UNAVAILABLE] with a sentence,
// never NO [SERVERBUG], and none counts as a server bug; once it is back
// the same commands work and nothing was changed meanwhile.
func TestStoreUnavailableAnswersNoUnavailable(t *testing.T) {
	var ds *downStore
	var bugs atomic.Int64
	env := newEnv(t, func(o *Options) {
		ds = &downStore{Store: o.Store}
		o.Store = ds
		o.OnServerBug = func() { bugs.Add(1) }
	})
	env.deliverAll("alice", "INBOX", "one")
	c := env.rawSelected("alice", "INBOX")

	ds.down.Store(true)
	for _, cmd := range []string{
		`STORE 1 +FLAGS (\Flagged)`,
		"APPEND INBOX {12+}\r\nSubject: x\r\n",
		"CREATE Later",
		"FETCH 1 BODY.PEEK[]",
		"SELECT INBOX",
	} {
		_, st := c.cmd("%s", cmd)
		if !strings.HasPrefix(st, "NO [UNAVAILABLE] ") || len(st) < len("NO [UNAVAILABLE] ")+20 {
			t.Errorf("%s with the store down: %q, want NO [UNAVAILABLE] and a sentence", strings.SplitN(cmd, " ", 2)[0], st)
		}
	}
	if n := bugs.Load(); n != 0 {
		t.Errorf("%d answers counted as server bugs", n)
	}
	if !strings.Contains(env.logs.String(), "database is unreachable") {
		t.Errorf("no log line names the cause:\n%s", env.logs.String())
	}

	ds.down.Store(false)
	c.ok("SELECT INBOX")
	if u := c.ok("FETCH 1 FLAGS"); len(u) != 1 || strings.Contains(u[0], `\Flagged`) {
		t.Errorf("FETCH after the outage: %q (the refused STORE must not have applied)", u)
	}
	u := c.ok("STATUS INBOX (MESSAGES)")
	if len(u) != 1 || !strings.Contains(u[0], "MESSAGES 1") {
		t.Errorf("STATUS after the outage: %q, want 1 message (the refused APPEND stored nothing)", u)
	}
	c.ok(`STORE 1 +FLAGS (\Flagged)`)
}
