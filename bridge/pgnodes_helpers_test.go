package bridge

// Helpers of the PostgreSQL node tests (pgnodes_test.go): IMAP appends and
// a third node's look at what the nodes stored.

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/store"
)

// appendMsg appends a small message with body to mailbox.
func appendMsg(t *testing.T, c *imapclient.Client, mailbox, body string) imap.UID {
	t.Helper()
	uid, err := appendUID(c, mailbox, body)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func appendUID(c *imapclient.Client, mailbox, body string) (imap.UID, error) {
	raw := fmt.Sprintf("Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\n%s\r\n", body, body, body)
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		return 0, err
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, fmt.Errorf("append %q: %w", body, err)
	}
	return data.UID, nil
}

func uidRange() imap.UIDSet {
	var s imap.UIDSet
	s.AddRange(1, 0)
	return s
}

// openPG opens the database dsn as a third node would, for the test to
// look at what the nodes stored.
func openPG(t *testing.T, dsn string) Backend {
	t.Helper()
	cfg := &Config{DataDir: t.TempDir(), Store: StoreConfig{Backend: BackendPostgres, DSN: dsn, NodeName: "inspector"}}
	st, err := openBackend(context.Background(), cfg, slog.New(slog.DiscardHandler), openOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// inboxOf returns user's INBOX in st.
func inboxOf(t *testing.T, st Backend, user string) (store.UserID, store.MailboxID) {
	t.Helper()
	ctx := context.Background()
	u, err := st.UserByName(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return u.ID, mb.ID
}

// inboxCount returns how many messages user's INBOX holds.
func inboxCount(t *testing.T, st Backend, user string) int {
	t.Helper()
	u, mb := inboxOf(t, st, user)
	c, err := st.Counts(context.Background(), u, mb)
	if err != nil {
		t.Fatal(err)
	}
	return int(c.Messages)
}

// inboxBodies counts the messages of user's INBOX by their bytes.
func inboxBodies(t *testing.T, st Backend, user string) map[string]int {
	t.Helper()
	ctx := context.Background()
	u, mb := inboxOf(t, st, user)
	snap, err := st.Snapshot(ctx, u, mb)
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]store.UID, len(snap.Entries))
	for i, e := range snap.Entries {
		uids[i] = e.UID
	}
	out := map[string]int{}
	err = st.Bodies(ctx, u, mb, uids, func(_ store.UID, raw []byte, damaged error) error {
		if damaged != nil {
			return damaged
		}
		out[string(raw)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pgstore has the optional methods imapfront uses when a store has them:
// MetaBrief (a body FETCH lists messages without decoding their envelopes
// and structures), BodiesBrief (a header sync reads only the headers) and
// BodiesInto (a body FETCH reads bodies into its arenas).
var (
	_ imapfront.BriefLister     = (*pgstore.Store)(nil)
	_ imapfront.BriefMetaStore  = (*pgstore.Store)(nil)
	_ imapfront.BodiesIntoStore = (*pgstore.Store)(nil)
)
