package bridge

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/poller"
)

// TestPostgresLostDuringServe: the database goes away under a running
// node. IMAP writes answer NO [UNAVAILABLE] (the session stays), /healthz
// fails, polls pause without any DELE; when the database is back,
// everything resumes with nothing lost and nothing fetched twice.
func TestPostgresLostDuringServe(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	dsn := srv.DSN()
	up := upstream(t, 5)
	cfg := pgConfig(t, dsn, "a", up)
	cfg.Accounts[0].LeaveOnServer = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg)
	n.b.PollNow("acct1")
	waitFor(t, "the first 5 messages fetched and deleted upstream", func() bool { return len(up.Messages()) == 0 })
	var mu sync.Mutex
	var exists uint32
	c := n.login(t, &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			mu.Lock()
			exists = *d.NumMessages
			mu.Unlock()
		}
	}})
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 5 {
		t.Fatalf("select: %+v, %v", sel, err)
	}
	// Three big messages over a slow link: the database goes away while
	// the poll that fetches them is under way.
	up.SetFaults(pop3mem.Faults{Rate: 64 << 10})
	for i := 6; i <= 8; i++ {
		up.AddMessage([]byte(fmt.Sprintf("Subject: later %d\r\nMessage-ID: <later%d@x>\r\n\r\n%s\r\n", i, i, strings.Repeat("0123456789abcdef", 8<<10))))
	}
	retrBefore := up.Count("RETR")
	n.b.PollNow("acct1")
	waitFor(t, "the poll of the 3 later messages under way", func() bool { return up.Count("RETR") > retrBefore })
	deleBefore := up.Count("DELE")
	// What is upstream when the database stops: a poll that IMAP
	// activity asked for (SELECT hints one) may have started while the 3
	// were being added, listed only the first and finished with it; the
	// rest must stay.
	upAtStop := len(up.Messages())
	if upAtStop == 0 {
		t.Fatal("every message was fetched before the database stopped: the link was not slow enough")
	}

	srv.Stop(t)

	// IMAP: a write is refused as unavailable, naming no internal error.
	err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("STORE with the database down: %v, want NO [UNAVAILABLE]", err)
	}
	if _, err := appendUID(c, "INBOX", "while-down"); !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("APPEND with the database down: %v, want NO [UNAVAILABLE]", err)
	}
	if code, body := get(t, "http://"+n.b.Addrs().HTTP.String()+"/healthz"); code == 200 || !strings.Contains(body, "store unreachable") {
		t.Errorf("/healthz with the database down: %d %s", code, body)
	}
	// The poller, asked to poll, pauses: no DELE while the store is away.
	n.b.PollNow("acct1")
	waitFor(t, "the account shown as waiting for the store", func() bool {
		for _, s := range n.b.Status() {
			if s.State() == poller.StateStoreUnavailable {
				return true
			}
		}
		return false
	})
	waitFor(t, "the interrupted POP session ended", func() bool { return up.OpenSessions() == 0 })
	if d := up.Count("DELE"); d != deleBefore {
		t.Fatalf("%d DELE sent while the store was unavailable", d-deleBefore)
	}
	if got := len(up.Messages()); got != upAtStop {
		t.Fatalf("%d messages upstream, want the %d there when the database stopped", got, upAtStop)
	}

	up.SetFaults(pop3mem.Faults{})
	srv.Restart(t)

	// The same session works again, and the paused poll completes.
	waitFor(t, "STORE accepted again", func() bool {
		return c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close() == nil
	})
	n.b.PollNow("acct1")
	waitFor(t, "the 3 later messages fetched", func() bool { return len(up.Messages()) == 0 })
	st := openPG(t, dsn)
	got := inboxBodies(t, st, "u")
	if len(got) != 8 {
		t.Errorf("INBOX holds %d messages, want 8", len(got))
	}
	for raw, k := range got {
		if k != 1 {
			t.Errorf("stored %d times: %.40q", k, raw)
		}
	}
	waitFor(t, "EXISTS 8 pushed to the open session", func() bool {
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return exists == 8
	})
	// The change feed's listener reconnects with its own backoff.
	var last string
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := get(t, "http://"+n.b.Addrs().HTTP.String()+"/healthz")
		if code == 200 {
			break
		}
		last = body
		if time.Now().After(deadline) {
			t.Fatalf("/healthz a minute after the database came back: %d %s", code, strings.TrimSpace(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
