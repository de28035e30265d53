package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// mustOpen opens a store in a fresh temporary directory, closed at cleanup.
func mustOpen(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), tb.TempDir(), Options{})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustUser(tb testing.TB, s *Store, name string) User {
	tb.Helper()
	u, err := s.EnsureUser(context.Background(), name)
	if err != nil {
		tb.Fatalf("EnsureUser(%q): %v", name, err)
	}
	return u
}

func mustMailbox(tb testing.TB, s *Store, u UserID, name string) Mailbox {
	tb.Helper()
	mb, err := s.MailboxByName(context.Background(), u, name)
	if err != nil {
		tb.Fatalf("MailboxByName(%q): %v", name, err)
	}
	return mb
}

// testMessage returns a small valid message whose subject and body carry tag.
func testMessage(tag string) []byte {
	return fmt.Appendf(nil, "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test %s\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <%s@example.org>\r\n\r\nbody of %s\r\n", tag, tag, tag)
}

func mustAppend(tb testing.TB, s *Store, u UserID, mb MailboxID, tag string, flags ...string) Entry {
	tb.Helper()
	e, _, err := s.Append(context.Background(), u, mb, testMessage(tag), flags, time.Time{})
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return e
}

// recorder collects published changes.
type recorder struct {
	tb      testing.TB
	sub     *Subscription
	mu      sync.Mutex
	changes []Change
}

func record(tb testing.TB, s *Store) *recorder {
	r := &recorder{tb: tb}
	r.sub = s.Subscribe(func(c Change) {
		r.mu.Lock()
		r.changes = append(r.changes, c)
		r.mu.Unlock()
	})
	tb.Cleanup(r.sub.Cancel)
	return r
}

// take returns the changes published so far (it waits until the
// subscriber has seen every committed change) and forgets them.
func (r *recorder) take() []Change {
	if err := r.sub.Sync(context.Background()); err != nil {
		r.tb.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.changes
	r.changes = nil
	return c
}

func uids(es []Entry) []UID {
	out := make([]UID, len(es))
	for i, e := range es {
		out[i] = e.UID
	}
	return out
}
