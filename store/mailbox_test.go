package store

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func mailboxNames(t *testing.T, s *Store, u UserID) map[string]Mailbox {
	t.Helper()
	mbs, err := s.Mailboxes(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Mailbox{}
	for _, mb := range mbs {
		m[mb.Name] = mb
	}
	return m
}

func TestCreateMailbox(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	rec := record(t, s)
	mb, err := s.CreateMailbox(ctx, u.ID, "inbox/Work/2024", "")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Name != "INBOX/Work/2024" || mb.NoSelect || mb.UIDNext != 1 || mb.HighestModSeq == 0 {
		t.Errorf("created %+v", mb)
	}
	names := mailboxNames(t, s, u.ID)
	if p, ok := names["INBOX/Work"]; !ok || !p.NoSelect {
		t.Errorf("implicit parent INBOX/Work = %+v, %v", p, ok)
	}
	if chs := rec.take(); len(chs) != 2 || chs[0].Kind != ChangeMailboxCreated || chs[0].MailboxName != "INBOX/Work" || chs[1].MailboxName != "INBOX/Work/2024" {
		t.Errorf("changes = %+v", chs)
	}
	tests := []struct {
		name, mbox, su string
		want           error
	}{
		{"exists", "INBOX/Work/2024", "", ErrExists},
		{"inbox exists", "Inbox", "", ErrExists},
		{"invalid", "a//b", "", ErrInvalidName},
		{"bad special use", "x", `\Bogus`, ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.CreateMailbox(ctx, u.ID, tt.mbox, tt.su); !errors.Is(err, tt.want) {
				t.Errorf("CreateMailbox(%q) = %v, want %v", tt.mbox, err, tt.want)
			}
		})
	}
	// Creating over the placeholder makes a new selectable mailbox.
	placeholder := names["INBOX/Work"]
	mb2, err := s.CreateMailbox(ctx, u.ID, "INBOX/Work", SpecialFlagged)
	if err != nil {
		t.Fatal(err)
	}
	if mb2.NoSelect || mb2.ID == placeholder.ID || mb2.UIDValidity <= placeholder.UIDValidity || mb2.SpecialUse != SpecialFlagged {
		t.Errorf("over placeholder: %+v (placeholder %+v)", mb2, placeholder)
	}
	if _, err := s.CreateMailbox(ctx, 999, "x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("CreateMailbox for unknown user = %v", err)
	}
}

func TestDeleteMailbox(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	for _, n := range []string{"foo/bar", "blurdybloop"} {
		if _, err := s.CreateMailbox(ctx, u.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "foo", ""); err != nil {
		t.Fatal(err)
	}
	foo := mustMailbox(t, s, u.ID, "foo")
	mustAppend(t, s, u.ID, foo.ID, "x")
	rec := record(t, s)
	// The RFC 3501 section 6.3.4 example.
	steps := []struct {
		name string
		want error
	}{
		{"inbox", ErrInboxDelete},
		{"blurdybloop", nil},
		{"foo", nil}, // has children: becomes \Noselect, messages expunged
		{"foo", ErrHasChildren},
		{"foo/bar", nil},
		{"foo", nil},
		{"foo", ErrNotFound},
		{"a/../b", ErrInvalidName},
	}
	for i, st := range steps {
		if err := s.DeleteMailbox(ctx, u.ID, st.name); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("step %d: DeleteMailbox(%q) = %v, want %v", i, st.name, err, st.want)
		}
		if i == 2 {
			names := mailboxNames(t, s, u.ID)
			if f := names["foo"]; !f.NoSelect || f.ID != foo.ID {
				t.Errorf("foo after delete = %+v", f)
			}
			if c, err := s.Counts(ctx, u.ID, foo.ID); err != nil || c.Messages != 0 {
				t.Errorf("foo counts = %+v, %v", c, err)
			}
			chs := rec.take() // blurdybloop's deletion, then foo's
			if len(chs) != 3 || chs[0].Kind != ChangeMailboxDeleted || chs[0].MailboxName != "blurdybloop" {
				t.Fatalf("changes = %+v", chs)
			}
			chs = chs[1:]
			if chs[0].Kind != ChangeExpunge || !slices.Equal(chs[0].UIDs, []UID{1}) || chs[1].Kind != ChangeMailboxDeleted {
				t.Errorf("changes = %+v", chs)
			}
		}
	}
	names := mailboxNames(t, s, u.ID)
	for _, n := range []string{"foo", "foo/bar", "blurdybloop"} {
		if _, ok := names[n]; ok {
			t.Errorf("%s still listed", n)
		}
	}
	var nmsg int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM messages`).Scan(&nmsg); err != nil || nmsg != 0 {
		t.Errorf("messages left: %d, %v", nmsg, err)
	}
	// Recreated mailbox: new id and UIDVALIDITY.
	again, err := s.CreateMailbox(ctx, u.ID, "foo", "")
	if err != nil || again.ID == foo.ID || again.UIDValidity <= foo.UIDValidity {
		t.Errorf("recreated foo = %+v, %v (was %+v)", again, err, foo)
	}
	// Subscriptions survive deletion.
	if err := s.SetSubscribed(ctx, u.ID, "blurdybloop", true); err != nil {
		t.Fatal(err)
	}
	subs, err := s.Subscriptions(ctx, u.ID)
	if err != nil || !slices.Contains(subs, "blurdybloop") {
		t.Errorf("Subscriptions = %v, %v", subs, err)
	}
}

func TestRenameMailbox(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	for _, n := range []string{"a/b/c", "a/b2", "ab"} {
		if _, err := s.CreateMailbox(ctx, u.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	ab := mustMailbox(t, s, u.ID, "a/b")
	abc := mustMailbox(t, s, u.ID, "a/b/c")
	mustAppend(t, s, u.ID, abc.ID, "m")
	rec := record(t, s)
	if err := s.RenameMailbox(ctx, u.ID, "a/b", "x/y"); err != nil {
		t.Fatal(err)
	}
	names := mailboxNames(t, s, u.ID)
	if got := names["x/y/c"]; got.ID != abc.ID || got.UIDValidity != abc.UIDValidity {
		t.Errorf("x/y/c = %+v, want id and uidvalidity of %+v", got, abc)
	}
	if got := names["x/y"]; got.ID != ab.ID {
		t.Errorf("x/y = %+v", got)
	}
	if x, ok := names["x"]; !ok || !x.NoSelect {
		t.Errorf("x = %+v, %v; want placeholder", x, ok)
	}
	for _, n := range []string{"a/b", "a/b/c"} {
		if _, ok := names[n]; ok {
			t.Errorf("%s still exists", n)
		}
	}
	if _, ok := names["a/b2"]; !ok {
		t.Error("sibling a/b2 moved")
	}
	if _, ok := names["ab"]; !ok {
		t.Error("prefix-sharing ab moved")
	}
	var renamed []string
	for _, c := range rec.take() {
		if c.Kind == ChangeMailboxRenamed {
			renamed = append(renamed, c.OldName+">"+c.MailboxName)
		}
	}
	if want := []string{"a/b>x/y", "a/b/c>x/y/c"}; !slices.Equal(renamed, want) {
		t.Errorf("renames = %v, want %v", renamed, want)
	}
	if b, err := s.Body(ctx, u.ID, abc.ID, 1); err != nil || len(b) == 0 {
		t.Errorf("message after rename: %v", err)
	}
	tests := []struct {
		name, from, to string
		want           error
	}{
		{"onto existing", "ab", "a/b2", ErrExists},
		{"missing", "nope", "z", ErrNotFound},
		{"under itself", "ab", "ab/c", ErrInvalidName},
		{"invalid new", "ab", "ab/", ErrInvalidName},
		{"onto inbox", "ab", "inbox", ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RenameMailbox(ctx, u.ID, tt.from, tt.to); !errors.Is(err, tt.want) {
				t.Errorf("RenameMailbox(%q, %q) = %v, want %v", tt.from, tt.to, err, tt.want)
			}
		})
	}
}

func TestRenameInbox(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	if _, err := s.CreateMailbox(ctx, u.ID, "INBOX/child", ""); err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	mustAppend(t, s, u.ID, inbox.ID, "a", FlagSeen)
	mustAppend(t, s, u.ID, inbox.ID, "b")
	if err := s.RenameMailbox(ctx, u.ID, "inbox", "Old"); err != nil {
		t.Fatal(err)
	}
	after := mustMailbox(t, s, u.ID, "INBOX")
	if after.ID != inbox.ID || after.UIDValidity != inbox.UIDValidity || after.UIDNext != 3 {
		t.Errorf("INBOX after rename = %+v", after)
	}
	if c, _ := s.Counts(ctx, u.ID, inbox.ID); c.Messages != 0 {
		t.Errorf("INBOX still has %d messages", c.Messages)
	}
	old := mustMailbox(t, s, u.ID, "Old")
	snap, err := s.Snapshot(ctx, u.ID, old.ID)
	if err != nil || len(snap.Entries) != 2 || !slices.Equal(snap.Entries[0].Flags, []string{FlagSeen}) {
		t.Errorf("Old = %+v, %v", snap, err)
	}
	if _, ok := mailboxNames(t, s, u.ID)["INBOX/child"]; !ok {
		t.Error("INBOX child moved")
	}
	e := mustAppend(t, s, u.ID, inbox.ID, "c")
	if e.UID != 3 {
		t.Errorf("INBOX UID after rename = %d, want 3", e.UID)
	}
}

func TestSubscriptions(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	rec := record(t, s)
	if err := s.SetSubscribed(ctx, u.ID, "Trash", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, u.ID, "Trash", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, u.ID, "not/yet", true); err != nil {
		t.Fatal(err)
	}
	subs, err := s.Subscriptions(ctx, u.ID)
	if want := []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "not/yet"}; err != nil || !slices.Equal(subs, want) {
		t.Errorf("Subscriptions = %v, %v; want %v", subs, err, want)
	}
	if mustMailbox(t, s, u.ID, "Trash").Subscribed {
		t.Error("Trash still subscribed")
	}
	if chs := rec.take(); len(chs) != 2 || chs[0].Kind != ChangeSubscription || chs[0].Mailbox == 0 || chs[1].Mailbox != 0 {
		t.Errorf("changes = %+v (want two, no-op unsubscribe silent)", chs)
	}
	if err := s.SetSubscribed(ctx, u.ID, "../x", true); !errors.Is(err, ErrInvalidName) {
		t.Errorf("SetSubscribed(../x) = %v", err)
	}
}
