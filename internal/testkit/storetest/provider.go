package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func testProviderUsers(t *testing.T, b Backend) {
	ctx := context.Background()
	if _, err := b.ProviderUserByName(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown provider user: %v, want ErrNotFound", err)
	}
	if err := b.SetProviderUserState(ctx, "nobody", store.ProviderNeedsLogin, true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("state of an unknown provider user: %v, want ErrNotFound", err)
	}
	if err := b.PutProviderUser(ctx, store.ProviderUser{Name: "x", State: "sleeping"}); err == nil {
		t.Fatal("an unknown state was accepted")
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	login := created.Add(time.Hour)
	sealed := []byte{0, 1, 2, 0xff, 'a'}
	for _, u := range []store.ProviderUser{
		{Name: "zed@example.net", Credential: sealed, Created: created, LastLogin: login},
		{Name: "amy@example.net", Created: created},
	} {
		if err := b.PutProviderUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// A second put keeps Created and replaces the rest.
	if err := b.PutProviderUser(ctx, store.ProviderUser{Name: "zed@example.net", Credential: sealed, State: store.ProviderActive,
		Created: created.Add(24 * time.Hour), LastLogin: login.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	us, err := b.ProviderUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].Name != "amy@example.net" || us[1].Name != "zed@example.net" {
		t.Fatalf("provider users %+v, want amy and zed by name", us)
	}
	zed := us[1]
	if !bytes.Equal(zed.Credential, sealed) || zed.State != store.ProviderActive || !zed.Created.Equal(created) ||
		!zed.LastLogin.Equal(login.Add(time.Minute)) || !zed.StateChanged.IsZero() {
		t.Fatalf("zed = %+v", zed)
	}
	if us[0].Credential != nil || us[0].State != store.ProviderActive || !us[0].LastLogin.IsZero() {
		t.Fatalf("amy = %+v", us[0])
	}

	if err := b.SetProviderUserState(ctx, "zed@example.net", store.ProviderNeedsLogin, true); err != nil {
		t.Fatal(err)
	}
	zed, err = b.ProviderUserByName(ctx, "zed@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if zed.State != store.ProviderNeedsLogin || zed.Credential != nil || zed.StateChanged.IsZero() {
		t.Fatalf("after needs_login: %+v", zed)
	}
	if err := b.PutProviderUser(ctx, store.ProviderUser{Name: "amy@example.net", Credential: sealed}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.DropProviderCredentials(ctx); err != nil || n != 1 {
		t.Fatalf("DropProviderCredentials = %d, %v; want 1", n, err)
	}
	if amy, err := b.ProviderUserByName(ctx, "amy@example.net"); err != nil || amy.Credential != nil {
		t.Fatalf("amy after dropping credentials: %+v, %v", amy, err)
	}
}

func testDeleteUser(t *testing.T, b Backend) {
	ctx := context.Background()
	if err := b.DeleteUser(ctx, "ghost", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteUser of nobody: %v, want ErrNotFound", err)
	}
	gone := ensureUser(t, b, "gone@example.net")
	kept := ensureUser(t, b, "kept@example.net")
	if _, err := b.CreateMailbox(ctx, gone.ID, "Projects/2026", ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone@example.net", "kept@example.net"} {
		if _, err := b.Deliver(ctx, []store.Delivery{{Account: "provider:" + name, UIDL: "u1", Digest: "d1", User: name, Raw: message("for " + name)}}); err != nil {
			t.Fatal(err)
		}
		if err := b.PutProviderUser(ctx, store.ProviderUser{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	// The kept user's mail, ledger and row survive the deletion.
	keptInbox := mailbox(t, b, kept.ID, store.Inbox)
	before := snapshot(t, b, kept.ID, keptInbox.ID)
	var deleted []string
	sub := b.Subscribe(func(c store.Change) {
		if c.Kind == store.ChangeMailboxDeleted && c.User == gone.ID {
			deleted = append(deleted, c.MailboxName)
		}
	})
	defer sub.Cancel()

	if err := b.DeleteUser(ctx, "gone@example.net", []string{"provider:gone@example.net"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UserByName(ctx, "gone@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted user still there: %v", err)
	}
	if _, err := b.ProviderUserByName(ctx, "gone@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted user's provider row still there: %v", err)
	}
	if keys, err := b.LedgerKeys(ctx, "provider:gone@example.net", store.LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("deleted user's ledger: %d rows, %v", len(keys), err)
	}
	if err := sub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(deleted) < 3 { // INBOX, Projects, Projects/2026 at least
		t.Errorf("mailbox deletions announced: %v", deleted)
	}
	// The other user is untouched.
	after := snapshot(t, b, kept.ID, keptInbox.ID)
	if len(after.Entries) != len(before.Entries) || len(after.Entries) != 1 {
		t.Fatalf("kept user's INBOX: %d entries, want %d", len(after.Entries), len(before.Entries))
	}
	got := bodies(t, b, kept.ID, keptInbox.ID, uidsOf(after.Entries))
	if got[after.Entries[0].UID] != string(message("for kept@example.net")) {
		t.Fatalf("kept user's message changed: %q", got[after.Entries[0].UID])
	}
	if keys, err := b.LedgerKeys(ctx, "provider:kept@example.net", store.LedgerKeyQuery{}); err != nil || len(keys) != 1 {
		t.Fatalf("kept user's ledger: %d rows, %v", len(keys), err)
	}
	if _, err := b.ProviderUserByName(ctx, "kept@example.net"); err != nil {
		t.Fatalf("kept user's provider row: %v", err)
	}
	// The name can be used again: a new user, empty.
	again := ensureUser(t, b, "gone@example.net")
	if again.ID == gone.ID {
		t.Errorf("a deleted user's id %d was reused", gone.ID)
	}
	if s := snapshot(t, b, again.ID, mailbox(t, b, again.ID, store.Inbox).ID); len(s.Entries) != 0 {
		t.Fatalf("the new user of a deleted name has %d messages", len(s.Entries))
	}
}
