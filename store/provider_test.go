package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestProviderUsers: provider users are created, updated (keeping their
// creation time), put in needs_login with their credential dropped, and
// listed; an unknown name is ErrNotFound.
func TestProviderUsers(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	login := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.PutProviderUser(ctx, ProviderUser{Name: "bob@example.net", Credential: []byte{1, 2, 3}, LastLogin: login}); err != nil {
		t.Fatal(err)
	}
	first, err := s.ProviderUserByName(ctx, "bob@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if first.State != ProviderActive || !bytes.Equal(first.Credential, []byte{1, 2, 3}) || !first.LastLogin.Equal(login) || first.Created.IsZero() {
		t.Fatalf("first = %+v", first)
	}
	if err := s.PutProviderUser(ctx, ProviderUser{Name: "bob@example.net", Credential: []byte{9}, Created: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutProviderUser(ctx, ProviderUser{Name: "amy@example.net"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProviderUserState(ctx, "bob@example.net", ProviderNeedsLogin, true); err != nil {
		t.Fatal(err)
	}
	us, err := s.ProviderUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].Name != "amy@example.net" || us[1].Name != "bob@example.net" {
		t.Fatalf("users = %+v", us)
	}
	bob := us[1]
	if bob.State != ProviderNeedsLogin || bob.Credential != nil || !bob.Created.Equal(first.Created) || bob.StateChanged.IsZero() {
		t.Errorf("bob = %+v (created first %v)", bob, first.Created)
	}
	if err := s.SetProviderUserState(ctx, "nobody", ProviderActive, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := s.ProviderUserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if err := s.PutProviderUser(ctx, ProviderUser{Name: "amy@example.net", Credential: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DropProviderCredentials(ctx); err != nil || n != 1 {
		t.Errorf("DropProviderCredentials = %d, %v; want 1", n, err)
	}
	if amy, _ := s.ProviderUserByName(ctx, "amy@example.net"); amy.Credential != nil {
		t.Errorf("amy kept %q", amy.Credential)
	}
}

// TestDeleteUser: a user's mail, mailboxes, provider row, and the ledger
// and status of their accounts go; another user's mail and ledger stay
// (even a message with the same content); an unknown name is ErrNotFound.
func TestDeleteUser(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	raw := []byte("Subject: x\r\n\r\nsame body\r\n")
	mustUser(t, s, "bob")
	mustUser(t, s, "amy")
	if _, err := s.Deliver(ctx, []Delivery{
		{Account: "provider:bob", UIDL: "1", Digest: "d1", User: "bob", Folder: "INBOX", Raw: raw},
		{Account: "provider:bob", UIDL: "2", Digest: "d2", User: "bob", Folder: "Work", Raw: []byte("Subject: y\r\n\r\nother\r\n")},
		{Account: "provider:amy", UIDL: "1", Digest: "d1", User: "amy", Folder: "INBOX", Raw: raw},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAccountStatus(ctx, AccountStatus{Account: "provider:bob", LastAttempt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutProviderUser(ctx, ProviderUser{Name: "bob", Credential: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "bob", []string{"provider:bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserByName(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("user still there: %v", err)
	}
	if _, err := s.ProviderUserByName(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("provider row still there: %v", err)
	}
	if l, err := s.Ledger(ctx, "provider:bob"); err != nil || len(l) != 0 {
		t.Errorf("ledger of bob = %v, %v", l, err)
	}
	sts, err := s.AccountStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Account == "provider:bob" {
			t.Error("status of bob's account still there")
		}
	}
	amy := mustUser(t, s, "amy")
	if l, err := s.Ledger(ctx, "provider:amy"); err != nil || len(l) != 1 {
		t.Errorf("ledger of amy = %v, %v", l, err)
	}
	body, err := s.Body(ctx, amy.ID, mustMailbox(t, s, amy.ID, "INBOX").ID, 1)
	if err != nil || !bytes.Equal(body, raw) {
		t.Errorf("amy's message = %q, %v", body, err)
	}
	if err := s.DeleteUser(ctx, "bob", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}
