package pgstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func mailboxNames(t *testing.T, s *Store, u store.UserID) map[string]store.Mailbox {
	t.Helper()
	mbs, err := s.Mailboxes(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Mailbox{}
	for _, mb := range mbs {
		out[mb.Name] = mb
	}
	return out
}

func testMailboxes(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	u := mustUser(t, s, "bob").ID
	other := mustUser(t, s, "eve").ID

	a, err := s.CreateMailbox(ctx, u, "a/b/c", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, u, "a/b/c", ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("create twice: err = %v, want ErrExists", err)
	}
	if _, err := s.CreateMailbox(ctx, u, "x", `\Bogus`); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("unknown special use: err = %v", err)
	}
	if _, err := s.CreateMailbox(ctx, u, "a//b", ""); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("empty level: err = %v", err)
	}
	names := mailboxNames(t, s, u)
	if !names["a"].NoSelect || !names["a/b"].NoSelect || names["a/b/c"].NoSelect {
		t.Errorf("parents not \\Noselect placeholders: %+v", names)
	}
	if _, err := s.MailboxByID(ctx, other, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another user's mailbox by id: err = %v, want ErrNotFound", err)
	}
	if mb, err := s.MailboxByName(ctx, u, "inbox"); err != nil || mb.Name != store.Inbox {
		t.Errorf("inbox in lower case: %+v, %v", mb, err)
	}
	if _, _, err := s.Append(ctx, u, names["a"].ID, msg("x", "y"), nil, time.Time{}); !errors.Is(err, store.ErrNoSelect) {
		t.Errorf("append to placeholder: err = %v, want ErrNoSelect", err)
	}

	// Creating over a placeholder makes a new mailbox.
	b, err := s.CreateMailbox(ctx, u, "a/b", "")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == names["a/b"].ID || b.UIDValidity <= names["a/b"].UIDValidity || b.NoSelect {
		t.Errorf("a/b over placeholder = %+v, placeholder %+v", b, names["a/b"])
	}

	// Delete: INBOX refused; with children a placeholder stays; a
	// placeholder with children refuses.
	if err := s.DeleteMailbox(ctx, u, "INBOX"); !errors.Is(err, store.ErrInboxDelete) {
		t.Errorf("delete INBOX: err = %v", err)
	}
	mustAppend(t, s, u, b.ID, msg("in-b", "body"))
	if err := s.DeleteMailbox(ctx, u, "a/b"); err != nil {
		t.Fatal(err)
	}
	names = mailboxNames(t, s, u)
	if !names["a/b"].NoSelect || names["a/b"].ID != b.ID {
		t.Errorf("a/b after delete with children: %+v", names["a/b"])
	}
	if c, err := s.Counts(ctx, u, b.ID); err != nil || c.Messages != 0 {
		t.Errorf("deleted mailbox still has %+v, %v", c, err)
	}
	if err := s.DeleteMailbox(ctx, u, "a"); !errors.Is(err, store.ErrHasChildren) {
		t.Errorf("delete placeholder with children: err = %v, want ErrHasChildren", err)
	}
	if err := s.DeleteMailbox(ctx, u, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete missing: err = %v", err)
	}

	// Rename moves children and keeps ids and UIDVALIDITY.
	if err := s.RenameMailbox(ctx, u, "a", "z/y"); err != nil {
		t.Fatal(err)
	}
	names = mailboxNames(t, s, u)
	if _, ok := names["a/b/c"]; ok {
		t.Errorf("a/b/c still there after rename")
	}
	if c := names["z/y/b/c"]; c.ID != a.ID || c.UIDValidity != a.UIDValidity {
		t.Errorf("renamed child %+v, was %+v", c, a)
	}
	if !names["z"].NoSelect {
		t.Errorf("new parent z is not a placeholder: %+v", names["z"])
	}
	if err := s.RenameMailbox(ctx, u, "z/y", "z/y/q"); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("rename under itself: err = %v", err)
	}
	if err := s.RenameMailbox(ctx, u, "z/y", "Sent"); !errors.Is(err, store.ErrExists) {
		t.Errorf("rename onto existing: err = %v", err)
	}
	if err := s.RenameMailbox(ctx, u, "nope", "nope2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rename missing: err = %v", err)
	}

	// Renaming INBOX moves its messages and leaves it empty.
	inbox := mustMailbox(t, s, u, store.Inbox)
	mustAppend(t, s, u, inbox.ID, msg("one", "1"), store.FlagSeen)
	mustAppend(t, s, u, inbox.ID, msg("two", "2"))
	if err := s.RenameMailbox(ctx, u, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	old := mustMailbox(t, s, u, "Old")
	snap, err := s.Snapshot(ctx, u, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Entries) != 2 || !slices.Equal(snap.Entries[0].Flags, []string{store.FlagSeen}) {
		t.Errorf("Old after INBOX rename: %+v", snap.Entries)
	}
	if c, _ := s.Counts(ctx, u, inbox.ID); c.Messages != 0 {
		t.Errorf("INBOX after rename has %d messages", c.Messages)
	}

	// Subscriptions may name missing mailboxes.
	if err := s.SetSubscribed(ctx, u, "ghost", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, u, "Junk", false); err != nil {
		t.Fatal(err)
	}
	subs, err := s.Subscriptions(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Archive", "Drafts", "INBOX", "Sent", "Trash", "ghost"}; !slices.Equal(subs, want) {
		t.Errorf("subscriptions %v, want %v", subs, want)
	}
	if mailboxNames(t, s, u)["Junk"].Subscribed {
		t.Errorf("Junk still subscribed")
	}
	// Recreated: a new UIDVALIDITY, greater than every earlier one.
	if err := s.DeleteMailbox(ctx, u, "Old"); err != nil {
		t.Fatal(err)
	}
	re, err := s.CreateMailbox(ctx, u, "Old", "")
	if err != nil {
		t.Fatal(err)
	}
	if re.ID == old.ID || re.UIDValidity <= old.UIDValidity || re.UIDValidity <= b.UIDValidity {
		t.Errorf("recreated %+v, old %+v", re, old)
	}
}
