package poller

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Compile-time check: the real store is a Sink.
var _ Sink = (*store.Store)(nil)

// openStore opens a store in a temporary directory with user alice.
func openStore(tb testing.TB, now func() time.Time) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), tb.TempDir(), store.Options{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := st.EnsureUser(context.Background(), "alice"); err != nil {
		tb.Fatal(err)
	}
	return st
}

// mailboxBodies returns the raw bodies of user's mailbox, in UID order.
func mailboxBodies(tb testing.TB, st *store.Store, user, mailbox string) [][]byte {
	tb.Helper()
	ctx := context.Background()
	u, err := st.UserByName(ctx, user)
	if err != nil {
		tb.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, mailbox)
	if err != nil {
		tb.Fatalf("mailbox %s: %v", mailbox, err)
	}
	snap, err := st.Snapshot(ctx, u.ID, mb.ID)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, e := range snap.Entries {
		b, err := st.Body(ctx, u.ID, mb.ID, e.UID)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkBodies fails unless the mailbox holds exactly want, each once,
// byte for byte (in any order).
func checkBodies(tb testing.TB, got [][]byte, want []string) {
	tb.Helper()
	count := map[[32]byte]int{}
	for _, b := range got {
		count[sha256.Sum256(b)]++
	}
	for _, w := range want {
		k := sha256.Sum256([]byte(w))
		switch count[k] {
		case 0:
			tb.Errorf("missing message %.40q", w)
		case 1:
		default:
			tb.Errorf("message stored %d times: %.40q", count[k], w)
		}
		delete(count, k)
	}
	if len(got) != len(want) || len(count) > 0 {
		tb.Errorf("mailbox holds %d messages (%d unexpected), want %d", len(got), len(count), len(want))
	}
}

// TestEngineWithRealStore runs the engine's fault scenarios against the
// real store (fake upstream) and checks what the mailbox holds.
func TestEngineWithRealStore(t *testing.T) {
	tests := []struct {
		name   string
		acct   func(*Account)
		setup  func(h *harness)
		polls  int
		after  func(h *harness) // between the first and later polls
		want   func(h *harness) []string
		remain int // upstream count at the end, -1: unchecked
	}{
		{
			name:   "plain fetch into folder",
			acct:   func(a *Account) { a.Folder = "Lists/Go" },
			setup:  func(h *harness) { h.fill(70) },
			polls:  2,
			want:   func(h *harness) []string { return msgRange(1, 70) },
			remain: 70,
		},
		{
			name:   "cut mid-retrieve then dele, quit fail",
			acct:   func(a *Account) { a.LeaveOnServer = false },
			setup:  func(h *harness) { h.fill(100); h.srv.cutAfter = 37; h.srv.failQuit = 2 },
			polls:  4,
			want:   func(h *harness) []string { return msgRange(1, 100) },
			remain: 0,
		},
		{
			name:   "uidl-less reordered",
			setup:  func(h *harness) { h.srv.noUIDL = true; h.srv.shuffle = true; h.fill(30) },
			polls:  3,
			after:  func(h *harness) { h.srv.add("", testMessage(31)) },
			want:   func(h *harness) []string { return msgRange(1, 31) },
			remain: 31,
		},
		{
			name:  "mass uidl change",
			setup: func(h *harness) { h.fill(30) },
			polls: 3,
			after: func(h *harness) {
				h.srv.mu.Lock()
				for _, m := range h.srv.msgs {
					m.uidl = "x" + m.uidl
				}
				h.srv.mu.Unlock()
			},
			want:   func(h *harness) []string { return msgRange(1, 30) },
			remain: 30,
		},
		{
			name:  "reused uidl and duplicate uidl",
			setup: func(h *harness) { h.srv.add("a", testMessage(1)); h.srv.add("a", testMessage(2)) },
			polls: 2,
			after: func(h *harness) {
				h.srv.mu.Lock()
				h.srv.msgs = []*fakeMsg{{uidl: "a", raw: []byte(testMessage(3) + "more\r\n")}}
				h.srv.mu.Unlock()
			},
			want: func(h *harness) []string {
				return []string{testMessage(1), testMessage(2), testMessage(3) + "more\r\n"}
			},
			remain: 1,
		},
		{
			name: "max size and bare LF",
			acct: func(a *Account) { a.MaxMessageSize = 300 },
			setup: func(h *harness) {
				h.srv.add("big", testMessage(1)+strings.Repeat("y", 400))
				h.srv.add("lf", "Subject: lf\n\nline\n")
			},
			polls:  2,
			want:   func(h *harness) []string { return []string{"Subject: lf\r\n\r\nline\r\n"} },
			remain: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.acct)
			st := openStore(t, h.clock.Now)
			h.p.sink = st
			tt.setup(h)
			for i := 0; i < tt.polls; i++ {
				h.poll() // faults make some polls fail; the end state is what counts
				if i == 0 && tt.after != nil {
					tt.after(h)
				}
				h.clock.Advance(time.Minute)
			}
			if _, err := h.poll(); err != nil {
				t.Fatalf("final poll: %v", err)
			}
			checkBodies(t, mailboxBodies(t, st, "alice", h.acct.folder()), tt.want(h))
			if tt.remain >= 0 && h.srv.count() != tt.remain {
				t.Errorf("upstream holds %d, want %d", h.srv.count(), tt.remain)
			}
		})
	}
}

// TestDeleteOnExpungeRealStore expunges locally and checks the upstream
// deletion at the next poll.
func TestDeleteOnExpungeRealStore(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.DeleteOnExpunge = true })
	st := openStore(t, h.clock.Now)
	h.p.sink = st
	h.fill(5)
	h.mustPoll()
	ctx := context.Background()
	u, _ := st.UserByName(ctx, "alice")
	mb, _ := st.MailboxByName(ctx, u.ID, "INBOX")
	snap, _ := st.Snapshot(ctx, u.ID, mb.ID)
	first := snap.Entries[0].UID
	if _, err := st.UpdateFlags(ctx, u.ID, mb.ID, []store.UID{first}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, u.ID, mb.ID, nil); err != nil {
		t.Fatal(err)
	}
	r := h.mustPoll()
	if r.Deleted != 1 || h.srv.count() != 4 {
		t.Fatalf("poll = %+v, upstream %d", r, h.srv.count())
	}
	if r := h.mustPoll(); r.Fetched != 0 || r.Deleted != 0 {
		t.Errorf("next poll = %+v", r)
	}
}

func msgRange(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, testMessage(i))
	}
	return out
}

var _ = fmt.Sprintf

// heldFirstSink holds the Stage of the batch holding the first message
// until a later batch has entered Stage, so that without ordering the
// later batch would commit first.
type heldFirstSink struct {
	*store.Store
	first  string // UIDL of the first message
	second chan struct{}
	once   sync.Once
	t      *testing.T
}

func (s *heldFirstSink) Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error) {
	if slices.ContainsFunc(ds, func(d store.Delivery) bool { return d.UIDL == s.first }) {
		select {
		case <-s.second:
		case <-time.After(30 * time.Second):
			s.t.Error("no second batch reached Stage while the first was held")
		}
	} else {
		s.once.Do(func() { close(s.second) })
	}
	return s.Store.Stage(ctx, ds)
}

// TestUIDsFollowUpstreamOrder holds the first batch back until a later one
// is delivering, and checks that local UIDs still follow the upstream
// order: the committer's workers write bytes in parallel but commit in
// retrieval order.
func TestUIDsFollowUpstreamOrder(t *testing.T) {
	h := newHarness(t, nil)
	st := openStore(t, h.clock.Now)
	h.fill(300)
	h.srv.mu.Lock()
	first := h.srv.msgs[0].uidl
	h.srv.mu.Unlock()
	h.p.sink = &heldFirstSink{Store: st, first: first, second: make(chan struct{}), t: t}
	if r := h.mustPoll(); r.Fetched != 300 {
		t.Fatalf("poll = %+v", r)
	}
	got := mailboxBodies(t, st, "alice", "INBOX")
	want := msgRange(1, 300)
	if len(got) != len(want) {
		t.Fatalf("%d messages stored, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("UID order differs from the upstream order at position %d: %.40q", i+1, got[i])
		}
	}
}
