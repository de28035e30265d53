package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestBodies(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	var all []UID
	for i := range 40 {
		all = append(all, mustAppend(t, s, u.ID, inbox.ID, fmt.Sprintf("m%02d", i)).UID)
	}
	// Expunge a few, so that some requested UIDs are absent.
	gone := []UID{all[3], all[20], all[21]}
	if _, err := s.UpdateFlags(ctx, u.ID, inbox.ID, gone, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u.ID, inbox.ID, gone); err != nil {
		t.Fatal(err)
	}
	present := func(in []UID) []UID {
		var out []UID
		for _, uid := range in {
			if uid >= all[0] && uid <= all[len(all)-1] && !slices.Contains(gone, uid) {
				out = append(out, uid)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	tests := []struct {
		name string
		uids []UID
	}{
		{"all contiguous", all},
		{"sparse", []UID{all[1], all[5], all[9], all[30]}},
		{"unsorted with duplicates and absent", []UID{all[30], 999, all[2], all[3], all[2], 0, all[39]}},
		{"run and sparse mixed", append([]UID{all[0], all[2]}, all[8:30]...)},
		{"empty", nil},
		{"only absent", []UID{500, 501, 502}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []UID
			err := s.Bodies(ctx, u.ID, inbox.ID, tt.uids, func(uid UID, raw []byte, _ error) error {
				want, err := s.Body(ctx, u.ID, inbox.ID, uid)
				if err != nil {
					return fmt.Errorf("Body(%d): %w", uid, err)
				}
				if !bytes.Equal(raw, want) {
					t.Errorf("uid %d: Bodies gave %q, Body gave %q", uid, raw, want)
				}
				got = append(got, uid)
				return nil
			})
			if err != nil {
				t.Fatalf("Bodies: %v", err)
			}
			if want := present(tt.uids); !slices.Equal(got, want) {
				t.Errorf("visited %v, want %v", got, want)
			}
		})
	}
}

func TestBodiesStopsOnError(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	var all []UID
	for i := range 12 {
		all = append(all, mustAppend(t, s, u.ID, inbox.ID, fmt.Sprint(i)).UID)
	}
	stop := errors.New("stop")
	var n int
	err := s.Bodies(ctx, u.ID, inbox.ID, all, func(UID, []byte, error) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Bodies = %v, want the callback's error", err)
	}
	if n != 3 {
		t.Errorf("callback ran %d times, want 3", n)
	}
}

func TestBodiesIsolation(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	alice := mustUser(t, s, "alice")
	bob := mustUser(t, s, "bob")
	aliceInbox := mustMailbox(t, s, alice.ID, "INBOX")
	e := mustAppend(t, s, alice.ID, aliceInbox.ID, "secret")
	called := false
	err := s.Bodies(ctx, bob.ID, aliceInbox.ID, []UID{e.UID}, func(UID, []byte, error) error {
		called = true
		return nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Bodies of another user's mailbox = %v, want ErrNotFound", err)
	}
	if called {
		t.Error("callback ran for another user's mailbox")
	}
	if err := s.Bodies(ctx, alice.ID, 9999, []UID{1}, func(UID, []byte, error) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Bodies of a missing mailbox = %v, want ErrNotFound", err)
	}
}
