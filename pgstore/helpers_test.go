package pgstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// env is one test's database on a shared server: every subtest gets its
// own database, so they can run one after the other on one server (Start
// costs seconds, a database a fraction of one).
type env struct {
	srv *pgtest.Server
	db  string
	dsn string
}

var dbCounter atomic.Int64

func newEnv(t *testing.T, srv *pgtest.Server) *env {
	t.Helper()
	name := fmt.Sprintf("t%d", dbCounter.Add(1))
	return &env{srv: srv, db: name, dsn: srv.CreateDatabase(t, name)}
}

// open opens a Store (a "node") on the env's database, closed by the
// test's cleanup.
func (e *env) open(t *testing.T, node string) *Store {
	t.Helper()
	return e.openWith(t, Options{NodeName: node, PollInterval: time.Hour})
}

// openWith is open with the given Options.
func (e *env) openWith(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), e.dsn, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustUser(t *testing.T, s *Store, name string) store.User {
	t.Helper()
	u, err := s.EnsureUser(context.Background(), name)
	if err != nil {
		t.Fatalf("ensure user %s: %v", name, err)
	}
	return u
}

func mustMailbox(t *testing.T, s *Store, u store.UserID, name string) store.Mailbox {
	t.Helper()
	mb, err := s.MailboxByName(context.Background(), u, name)
	if err != nil {
		t.Fatalf("mailbox %s: %v", name, err)
	}
	return mb
}

func msg(subject, body string) []byte {
	return []byte("From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: " + subject +
		"\nDate: Mon, 2 Jan 2023 10:00:00 +0100\nMessage-ID: <" + subject + "@example.org>\n\n" + body + "\n")
}

func mustAppend(t *testing.T, s *Store, u store.UserID, mb store.MailboxID, raw []byte, flags ...string) store.Entry {
	t.Helper()
	e, _, err := s.Append(context.Background(), u, mb, raw, flags, time.Time{})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return e
}

func uidsOf(es []store.Entry) []store.UID {
	out := make([]store.UID, len(es))
	for i, e := range es {
		out[i] = e.UID
	}
	return out
}

// recorder collects the changes a subscriber receives and lets a test
// wait for a condition on them.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
	wake    chan struct{}
}

func record(s *Store) (*recorder, func()) {
	r := &recorder{wake: make(chan struct{}, 1)}
	sub := s.Subscribe(func(c store.Change) {
		r.mu.Lock()
		r.changes = append(r.changes, c)
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	})
	return r, sub.Cancel
}

func (r *recorder) snapshot() []store.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// waitFor waits until cond holds for the changes received, failing the
// test after timeout (a deadline against a hang, not a synchronisation).
func (r *recorder) waitFor(t *testing.T, timeout time.Duration, what string, cond func([]store.Change) bool) []store.Change {
	t.Helper()
	deadline := time.After(timeout)
	for {
		cs := r.snapshot()
		if cond(cs) {
			return cs
		}
		select {
		case <-r.wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %d changes: %+v", what, len(cs), cs)
		}
	}
}

// feedTimeout is how long a test waits for a change to reach a
// subscriber before it fails: a guard against a hang, generous for a
// loaded machine (changes normally arrive within milliseconds).
const feedTimeout = 60 * time.Second
