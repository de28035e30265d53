package poller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// ledgerByUIDL reads the real store's full ledger of account.
func ledgerByUIDL(t *testing.T, st *store.Store, account string) map[string]store.LedgerEntry {
	t.Helper()
	led, err := st.Ledger(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.LedgerEntry{}
	for _, e := range led {
		out[e.UIDL] = e
	}
	return out
}

// removeUpstream drops the messages with these UIDLs from the fake server
// and returns them.
func removeUpstream(h *harness, uidls ...string) []*fakeMsg {
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	var gone, kept []*fakeMsg
	for _, m := range h.srv.msgs {
		if strings.Contains(" "+strings.Join(uidls, " ")+" ", " "+m.uidl+" ") {
			gone = append(gone, m)
		} else {
			kept = append(kept, m)
		}
	}
	h.srv.msgs = kept
	return gone
}

// TestLastSeenAndTombstonesRealStore follows LastSeen and tombstones
// through idle polls on the real store: a listed row's LastSeen is not
// rewritten within touchEvery and is refreshed after it, an unlisted row's
// is left alone, a tombstone re-listed within ledgerRetention is not
// imported again, and one unlisted for longer is pruned.
func TestLastSeenAndTombstonesRealStore(t *testing.T) {
	h := newHarness(t, nil)
	st := openStore(t, h.clock.Now)
	h.p.sink = st
	h.fill(5)
	t0 := h.clock.Now()
	if r := h.mustPoll(); r.Fetched != 5 {
		t.Fatalf("first poll = %+v", r)
	}
	gone := removeUpstream(h, "uid-4", "uid-5")
	lastSeen := func(want map[string]time.Time) {
		t.Helper()
		led := ledgerByUIDL(t, st, h.acct.Name)
		if len(led) != len(want) {
			t.Errorf("ledger has %d rows, want %d", len(led), len(want))
		}
		for u, at := range want {
			if e, ok := led[u]; !ok || !e.LastSeen.Equal(at) {
				t.Errorf("%s: LastSeen %v (present %v), want %v", u, e.LastSeen, ok, at)
			}
		}
	}
	seen := func(listed, unlisted time.Time) map[string]time.Time {
		return map[string]time.Time{"uid-1": listed, "uid-2": listed, "uid-3": listed, "uid-4": unlisted, "uid-5": unlisted}
	}

	h.clock.Advance(touchEvery - time.Minute)
	if r := h.mustPoll(); r.Fetched != 0 || r.Listed != 3 {
		t.Fatalf("idle poll = %+v", r)
	}
	lastSeen(seen(t0, t0))

	h.clock.Advance(time.Minute)
	t1 := h.clock.Now()
	h.mustPoll()
	lastSeen(seen(t1, t0))

	h.clock.Advance(time.Hour) // fresh again: no rewrite
	h.mustPoll()
	lastSeen(seen(t1, t0))

	// Within retention, uid-4 comes back: it is known, not imported again.
	h.clock.Advance(t0.Add(ledgerRetention - time.Hour).Sub(h.clock.Now()))
	h.srv.mu.Lock()
	h.srv.msgs = append(h.srv.msgs, gone[0])
	h.srv.mu.Unlock()
	t2 := h.clock.Now()
	if r := h.mustPoll(); r.Fetched != 0 || r.Listed != 4 {
		t.Fatalf("poll with uid-4 back = %+v", r)
	}
	want := seen(t2, t0)
	want["uid-4"] = t2
	lastSeen(want)

	// uid-5 has now been unlisted for longer than the retention: pruned.
	h.clock.Advance(t0.Add(ledgerRetention + time.Minute).Sub(h.clock.Now()))
	if r := h.mustPoll(); r.Fetched != 0 {
		t.Fatalf("poll after retention = %+v", r)
	}
	delete(want, "uid-5")
	lastSeen(want)
	checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), msgRange(1, 5))
}

// TestIdlePollsDoNotPrune checks that a pass whose ledger read found no
// expired row does not call PruneLedger (a first pass of a process
// included), and that one that found some does, once per pruneEvery.
func TestIdlePollsDoNotPrune(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(3)
	h.mustPoll()
	for range 3 {
		h.clock.Advance(2 * pruneEvery)
		h.mustPoll()
	}
	if h.sink.prunes != 0 {
		t.Fatalf("PruneLedger called %d times with nothing expired", h.sink.prunes)
	}
	removeUpstream(h, "uid-3")
	h.clock.Advance(ledgerRetention + time.Hour)
	h.mustPoll()
	if h.sink.prunes != 1 {
		t.Fatalf("PruneLedger called %d times with an expired tombstone, want 1", h.sink.prunes)
	}
	if _, ok := h.sink.row(h.acct.Name, "uid-3"); ok {
		t.Error("expired tombstone uid-3 still in the ledger")
	}
	writes := h.sink.writes
	h.clock.Advance(time.Hour)
	h.mustPoll()
	if h.sink.prunes != 1 || h.sink.writes != writes {
		t.Errorf("idle poll after pruning: %d prunes, %d writes", h.sink.prunes, h.sink.writes-writes)
	}
}

// blockingSink holds LedgerKeys until release is closed or its context
// ends, and reports when a read starts and how it ended.
type blockingSink struct {
	*fakeSink
	started chan struct{}
	release chan struct{}
	ended   chan error
	err     error // returned by LedgerKeys once released
}

func (s *blockingSink) LedgerKeys(ctx context.Context, account string, q store.LedgerKeyQuery) ([]store.LedgerKey, error) {
	close(s.started)
	select {
	case <-s.release:
	case <-ctx.Done():
		s.ended <- ctx.Err()
		return nil, ctx.Err()
	}
	s.ended <- s.err
	if s.err != nil {
		return nil, s.err
	}
	return s.fakeSink.LedgerKeys(ctx, account, q)
}

func newBlockingSink(h *harness) *blockingSink {
	s := &blockingSink{fakeSink: h.sink, started: make(chan struct{}), release: make(chan struct{}), ended: make(chan error, 1)}
	h.p.sink = s
	return s
}

// TestLedgerReadOverlapsLogin checks that the ledger is read while the
// session logs in and lists, and that the read is stopped, and waited for,
// when the pass ends early or fails.
func TestLedgerReadOverlapsLogin(t *testing.T) {
	t.Run("read starts before login", func(t *testing.T) {
		h := newHarness(t, nil)
		h.fill(3)
		s := newBlockingSink(h)
		dial := h.p.dial
		h.p.dial = func(ctx context.Context, a Account) (popSession, error) {
			select {
			case <-s.started:
			case <-time.After(10 * time.Second):
				return nil, errors.New("the ledger read had not started when the session logged in")
			}
			close(s.release)
			return dial(ctx, a)
		}
		if r := h.mustPoll(); r.Fetched != 3 {
			t.Fatalf("poll = %+v", r)
		}
		if err := <-s.ended; err != nil {
			t.Errorf("ledger read ended with %v", err)
		}
		h.checkStored(3)
	})
	t.Run("failed login stops the read", func(t *testing.T) {
		h := newHarness(t, nil)
		h.fill(3)
		s := newBlockingSink(h)
		h.srv.dialErr = errors.New("connection refused")
		_, err := h.poll()
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("poll = %v, want the dial error", err)
		}
		select {
		case err := <-s.ended: // PollOnce returned, so the read has ended
			if !errors.Is(err, context.Canceled) {
				t.Errorf("ledger read ended with %v, want context.Canceled", err)
			}
		default:
			t.Fatal("poll returned while its ledger read was still running")
		}
	})
	t.Run("failed read aborts the session", func(t *testing.T) {
		h := newHarness(t, nil)
		h.fill(3)
		s := newBlockingSink(h)
		s.err = errors.New("disk on fire")
		close(s.release)
		_, err := h.poll()
		if err == nil || !strings.Contains(err.Error(), "read ledger") || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("poll = %v, want the ledger read error", err)
		}
		if r, q, a := h.srv.stat(&h.srv.retrs), h.srv.stat(&h.srv.quits), h.srv.stat(&h.srv.aborts); r != 0 || q != 0 || a != 1 {
			t.Errorf("after a failed ledger read: %d RETR, %d QUIT, %d aborts; want 0, 0, 1", r, q, a)
		}
		h.checkStored(0)
	})
}
