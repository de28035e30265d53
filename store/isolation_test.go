package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestIsolation checks that user B reaches none of user A's mailboxes or
// messages through any method that takes a UserID.
func TestIsolation(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	a := mustUser(t, s, "alice")
	b := mustUser(t, s, "bob")
	aInbox := mustMailbox(t, s, a.ID, "INBOX")
	mustAppend(t, s, a.ID, aInbox.ID, "secret", FlagDeleted)
	bInbox := mustMailbox(t, s, b.ID, "INBOX")
	mustAppend(t, s, b.ID, bInbox.ID, "bob")
	aPriv, err := s.CreateMailbox(ctx, a.ID, "Private", "")
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"MailboxByID", func() error { _, err := s.MailboxByID(ctx, b.ID, aInbox.ID); return err }},
		{"MailboxByName", func() error { _, err := s.MailboxByName(ctx, b.ID, "Private"); return err }},
		{"Counts", func() error { _, err := s.Counts(ctx, b.ID, aInbox.ID); return err }},
		{"Snapshot", func() error { _, err := s.Snapshot(ctx, b.ID, aInbox.ID); return err }},
		{"Meta", func() error { _, err := s.Meta(ctx, b.ID, aInbox.ID, []UID{1}); return err }},
		{"Body", func() error { _, err := s.Body(ctx, b.ID, aInbox.ID, 1); return err }},
		{"Append", func() error {
			_, _, err := s.Append(ctx, b.ID, aInbox.ID, testMessage("x"), nil, time.Time{})
			return err
		}},
		{"UpdateFlags", func() error {
			_, err := s.UpdateFlags(ctx, b.ID, aInbox.ID, []UID{1}, FlagsAdd, []string{FlagSeen})
			return err
		}},
		{"Copy from A", func() error { _, err := s.Copy(ctx, b.ID, aInbox.ID, []UID{1}, bInbox.ID); return err }},
		{"Copy into A", func() error { _, err := s.Copy(ctx, b.ID, bInbox.ID, []UID{1}, aInbox.ID); return err }},
		{"Move from A", func() error { _, err := s.Move(ctx, b.ID, aInbox.ID, []UID{1}, bInbox.ID); return err }},
		{"Move into A", func() error { _, err := s.Move(ctx, b.ID, bInbox.ID, []UID{1}, aInbox.ID); return err }},
		{"Expunge", func() error { _, err := s.Expunge(ctx, b.ID, aInbox.ID, nil); return err }},
		{"SearchText", func() error {
			_, err := s.SearchText(ctx, b.ID, aInbox.ID, TextQuery{Kind: TextAll, Needle: "secret"}, nil)
			return err
		}},
		{"DeleteMailbox", func() error { return s.DeleteMailbox(ctx, b.ID, "Private") }},
		{"RenameMailbox", func() error { return s.RenameMailbox(ctx, b.ID, "Private", "Mine") }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s across users = %v, want ErrNotFound", c.name, err)
			}
		})
	}
	// B's listing shows only B's mailboxes; A's state is untouched.
	mbs, err := s.Mailboxes(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		if mb.User != b.ID || mb.Name == "Private" {
			t.Errorf("bob lists %+v", mb)
		}
	}
	if got := mustMailbox(t, s, a.ID, "Private"); got.ID != aPriv.ID {
		t.Errorf("alice's Private changed: %+v", got)
	}
	snap, err := s.Snapshot(ctx, a.ID, aInbox.ID)
	if err != nil || len(snap.Entries) != 1 || len(snap.Entries[0].Flags) != 1 {
		t.Errorf("alice's INBOX changed: %+v, %v", snap, err)
	}
	if c, _ := s.Counts(ctx, b.ID, bInbox.ID); c.Messages != 1 {
		t.Errorf("bob's INBOX has %d messages", c.Messages)
	}
	// Bob may create his own "Private".
	if _, err := s.CreateMailbox(ctx, b.ID, "Private", ""); err != nil {
		t.Errorf("bob's own Private: %v", err)
	}
}
