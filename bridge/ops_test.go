package bridge

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// TestReadStatusWhileRunning reads the status of a running bridge's data
// directory (read-only store, no lock), while PollOnce is refused with
// ErrLocked naming the holder.
func TestReadStatusWhileRunning(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, upstream(t, 3))
	if _, err := ReadStatus(ctx, cfg, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadStatus before any run: %v, want fs.ErrNotExist", err)
	}
	b := New(cfg, nil)
	stop := run(t, b)
	b.PollNow("")
	var rep *StatusReport
	waitFor(t, "the poll's status in the store", func() bool {
		var err error
		rep, err = ReadStatus(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("ReadStatus while running: %v", err)
		}
		return len(rep.Accounts) == 1 && rep.Accounts[0].Polled
	})
	a := rep.Accounts[0]
	if a.Name != "acct1" || a.User != "u" || a.Status.Fetched != 3 || a.Status.LastError != "" {
		t.Errorf("account report %+v", a)
	}
	if len(rep.Users) != 1 || rep.Users[0].Name != "u" {
		t.Fatalf("user reports %+v", rep.Users)
	}
	var inbox *MailboxReport
	for i, mb := range rep.Users[0].Mailboxes {
		if mb.Name == store.Inbox {
			inbox = &rep.Users[0].Mailboxes[i]
		}
	}
	if inbox == nil || inbox.Counts.Messages != 3 {
		t.Errorf("INBOX report %+v, want 3 messages", inbox)
	}

	_, err := PollOnce(ctx, cfg, nil, "", nil)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("PollOnce while running: %v, want ErrLocked", err)
	}
	if dir, _, ok := store.LockHolder(err); !ok || dir != cfg.Path(cfg.DataDir) {
		t.Errorf("LockHolder(%v) = %q, %v", err, dir, ok)
	}
	if !strings.Contains(err.Error(), cfg.Path(cfg.DataDir)) {
		t.Errorf("PollOnce error %q does not name the data directory", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The read-only opens left nothing held: the directory is free again.
	if _, err := PollOnce(ctx, cfg, nil, "", nil); err != nil {
		t.Errorf("PollOnce after the bridge stopped: %v", err)
	}
}
