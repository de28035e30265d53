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
