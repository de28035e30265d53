package pgstore

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/store"
)

func testUsers(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	if err := s.Health(); err != nil {
		t.Errorf("health right after Open: %v", err)
	}
	if _, err := s.UserByName(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: err = %v, want ErrNotFound", err)
	}
	bob := mustUser(t, s, "bob")
	alice := mustUser(t, s, "alice")
	if again := mustUser(t, s, "bob"); again.ID != bob.ID {
		t.Errorf("EnsureUser twice gave ids %d and %d", bob.ID, again.ID)
	}
	if _, err := s.EnsureUser(ctx, "bad\x01name"); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("control character in name: err = %v", err)
	}
	us, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].ID != alice.ID || us[1].ID != bob.ID {
		t.Errorf("Users = %+v, want alice then bob", us)
	}
	mbs, err := s.Mailboxes(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
		if !mb.Subscribed || mb.NoSelect || mb.UIDNext != 1 || mb.UIDValidity == 0 {
			t.Errorf("default mailbox %+v", mb)
		}
	}
	if want := []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"}; !slices.Equal(names, want) {
		t.Errorf("default mailboxes %v, want %v", names, want)
	}
	if mbs[1].SpecialUse != store.SpecialDrafts {
		t.Errorf("Drafts special use %q", mbs[1].SpecialUse)
	}
	// A second node sees the same user.
	s2 := e.open(t, "b")
	if u, err := s2.UserByName(ctx, "bob"); err != nil || u.ID != bob.ID {
		t.Errorf("node b: UserByName = %+v, %v", u, err)
	}
	if _, err := s.Mailboxes(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("mailboxes of unknown user: err = %v", err)
	}
}
