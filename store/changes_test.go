package store

import (
	"context"
	"testing"
	"time"
)

func TestChangeOriginAndCancel(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	var got []Change
	sub := s.Subscribe(func(c Change) { got = append(got, c) })
	type session struct{ id int }
	me := &session{1}
	ctx := WithOrigin(context.Background(), me)
	if _, _, err := s.Append(ctx, u.ID, inbox.ID, testMessage("a"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateFlags(context.Background(), u.ID, inbox.ID, []UID{1}, FlagsAdd, []string{FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Origin != me || got[1].Origin != nil {
		t.Fatalf("changes = %+v; want origin %p then nil", got, me)
	}
	sub.Cancel()
	sub.Cancel() // idempotent
	mustAppend(t, s, u.ID, inbox.ID, "b")
	if err := sub.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("change delivered after cancel: %+v", got[2:])
	}
}

// TestSubscriberMayRead checks that a subscriber can read the store and
// sees the committed state.
func TestSubscriberMayRead(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	var seen []uint64
	sub := s.Subscribe(func(c Change) {
		snap, err := s.Snapshot(context.Background(), u.ID, inbox.ID)
		if err != nil {
			t.Errorf("Snapshot in subscriber: %v", err)
			return
		}
		seen = append(seen, snap.Mailbox.HighestModSeq)
		if snap.Mailbox.HighestModSeq != c.ModSeq {
			t.Errorf("snapshot modseq %d in callback for change %d", snap.Mailbox.HighestModSeq, c.ModSeq)
		}
	})
	defer sub.Cancel()
	mustAppend(t, s, u.ID, inbox.ID, "a")
	if err := sub.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 {
		t.Errorf("subscriber ran %d times", len(seen))
	}
}

func TestWriteRespectsCanceledContext(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Append(ctx, u.ID, inbox.ID, testMessage("a"), nil, time.Time{}); err == nil {
		t.Fatal("Append with canceled context succeeded")
	}
	if c, _ := s.Counts(context.Background(), u.ID, inbox.ID); c.Messages != 0 {
		t.Errorf("canceled Append stored %d messages", c.Messages)
	}
}

// TestEveryChangeBumpsModSeq checks that every kind of change of one
// mailbox carries a strictly higher ModSeq, ending at HIGHESTMODSEQ.
func TestEveryChangeBumpsModSeq(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	rec := record(t, s)
	mb, err := s.CreateMailbox(ctx, u.ID, "p", "")
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { _, _, err := s.Append(ctx, u.ID, mb.ID, testMessage("a"), nil, time.Time{}); return err },
		func() error {
			_, err := s.UpdateFlags(ctx, u.ID, mb.ID, []UID{1}, FlagsAdd, []string{FlagDeleted})
			return err
		},
		func() error { return s.SetSubscribed(ctx, u.ID, "p", true) },
		func() error { return s.RenameMailbox(ctx, u.ID, "p", "q") },
		func() error { _, err := s.CreateMailbox(ctx, u.ID, "q/child", ""); return err },
		func() error { _, _, err := s.Append(ctx, u.ID, mb.ID, testMessage("b"), nil, time.Time{}); return err },
		func() error { return s.DeleteMailbox(ctx, u.ID, "q") }, // expunge, then placeholder
	}
	for i, st := range steps {
		if err := st(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	var last uint64
	var kinds []ChangeKind
	for _, c := range rec.take() {
		if c.Mailbox != mb.ID {
			continue
		}
		kinds = append(kinds, c.Kind)
		if c.ModSeq <= last {
			t.Errorf("change %v has modseq %d after %d", c.Kind, c.ModSeq, last)
		}
		last = c.ModSeq
	}
	if len(kinds) != 8 {
		t.Errorf("got %d changes of the mailbox (%v), want 8", len(kinds), kinds)
	}
	got, err := s.MailboxByID(ctx, u.ID, mb.ID)
	if err != nil || got.HighestModSeq != last || !got.NoSelect {
		t.Errorf("mailbox %+v, %v; want placeholder at modseq %d", got, err, last)
	}
}
