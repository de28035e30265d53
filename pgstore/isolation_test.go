package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testIsolation calls every method that names a mailbox with another
// user's id: each answers ErrNotFound and changes nothing.
func testIsolation(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	bob := mustUser(t, s, "bob").ID
	eve := mustUser(t, s, "eve").ID
	inbox := mustMailbox(t, s, bob, store.Inbox)
	arch := mustMailbox(t, s, bob, "Archive")
	eveInbox := mustMailbox(t, s, eve, store.Inbox)
	mustAppend(t, s, bob, inbox.ID, msg("secret", "for bob only"), store.FlagDeleted)
	before, err := s.Snapshot(ctx, bob, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	uids := []store.UID{1}
	calls := map[string]func() error{
		"Snapshot":    func() error { _, err := s.Snapshot(ctx, eve, inbox.ID); return err },
		"MailboxByID": func() error { _, err := s.MailboxByID(ctx, eve, inbox.ID); return err },
		"Counts":      func() error { _, err := s.Counts(ctx, eve, inbox.ID); return err },
		"Body":        func() error { _, err := s.Body(ctx, eve, inbox.ID, 1); return err },
		"Bodies": func() error {
			return s.Bodies(ctx, eve, inbox.ID, uids, func(store.UID, []byte, error) error { return errors.New("read another user's body") })
		},
		"Meta": func() error { _, err := s.Meta(ctx, eve, inbox.ID, nil); return err },
		"SearchText": func() error {
			_, err := s.SearchText(ctx, eve, inbox.ID, store.TextQuery{Kind: store.TextAll, Needle: "bob"}, nil)
			return err
		},
		"Append": func() error {
			_, _, err := s.Append(ctx, eve, inbox.ID, msg("x", "y"), nil, time.Time{})
			return err
		},
		"UpdateFlags": func() error {
			_, err := s.UpdateFlags(ctx, eve, inbox.ID, uids, store.FlagsReplace, nil)
			return err
		},
		"Expunge":      func() error { _, err := s.Expunge(ctx, eve, inbox.ID, nil); return err },
		"Copy from":    func() error { _, err := s.Copy(ctx, eve, inbox.ID, uids, eveInbox.ID); return err },
		"Copy into":    func() error { _, err := s.Copy(ctx, eve, eveInbox.ID, uids, inbox.ID); return err },
		"Move from":    func() error { _, err := s.Move(ctx, eve, inbox.ID, uids, eveInbox.ID); return err },
		"Move between": func() error { _, err := s.Move(ctx, eve, inbox.ID, uids, arch.ID); return err },
		"DeleteMailbox": func() error {
			// Names are per user: eve's "Archive" is eve's own.
			if err := s.DeleteMailbox(ctx, eve, "Archive"); err != nil {
				return err
			}
			_, err := s.MailboxByID(ctx, bob, arch.ID)
			if err != nil {
				return errors.New("deleting eve's Archive touched bob's")
			}
			return store.ErrNotFound
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
	after, err := s.Snapshot(ctx, bob, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mailbox != before.Mailbox || len(after.Entries) != 1 || after.Entries[0].ModSeq != before.Entries[0].ModSeq {
		t.Errorf("bob's INBOX changed: %+v, was %+v", after, before)
	}
	if c, _ := s.Counts(ctx, eve, eveInbox.ID); c.Messages != 0 {
		t.Errorf("eve's INBOX got %d messages", c.Messages)
	}
}
