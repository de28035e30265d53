package poller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// batchSink records the status batches written, and fails while fail is
// set.
type batchSink struct {
	Sink
	mu      sync.Mutex
	batches [][]store.AccountStatus
	fail    bool
	wrote   chan struct{}
}

func (s *batchSink) SetAccountStatuses(ctx context.Context, sts []store.AccountStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk on fire")
	}
	s.batches = append(s.batches, append([]store.AccountStatus(nil), sts...))
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return nil
}

// latest returns the last status written for account, and how many
// batches were written.
func (s *batchSink) latest(account string) (store.AccountStatus, bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		out   store.AccountStatus
		found bool
	)
	for _, b := range s.batches {
		for _, st := range b {
			if st.Account == account {
				out, found = st, true
			}
		}
	}
	return out, found, len(s.batches)
}

func newTestStatusWriter(every time.Duration) (*statusWriter, *batchSink) {
	sink := &batchSink{wrote: make(chan struct{}, 1)}
	return &statusWriter{sink: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil)), every: every}, sink
}

// TestStatusWriterDefersQuietPolls checks what the status writer promises:
// a status that changed beyond its poll times is written before save
// returns, together with the quiet ones waiting; a quiet one (poll times
// only) waits, and is written within the flush interval; the newest
// status of an account is the one that ends up written.
func TestStatusWriterDefersQuietPolls(t *testing.T) {
	ctx := context.Background()
	w, sink := newTestStatusWriter(time.Hour) // no timer flush in this test
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	a1 := store.AccountStatus{Account: "a", LastAttempt: t0, LastSuccess: t0, Fetched: 3, UpstreamCount: 3}
	w.save(ctx, a1)
	if got, ok, n := sink.latest("a"); !ok || got != a1 || n != 1 {
		t.Fatalf("first status of an account: written %v (%+v), %d batches; want it written at once", ok, got, n)
	}
	a2 := a1
	a2.LastAttempt, a2.LastSuccess = t0.Add(time.Minute), t0.Add(time.Minute)
	w.save(ctx, a2)
	if got, _, n := sink.latest("a"); got != a1 || n != 1 {
		t.Fatalf("a quiet poll's status was written at once (%+v, %d batches)", got, n)
	}
	// Another account's fetch is written now, with a's waiting status.
	b1 := store.AccountStatus{Account: "b", LastAttempt: t0, LastSuccess: t0, Fetched: 1}
	w.save(ctx, b1)
	if got, _, n := sink.latest("a"); got != a2 || n != 2 {
		t.Fatalf("after an urgent write: a = %+v in %d batches, want %+v in 2", got, n, a2)
	}
	// A new error is urgent; so is a change of the counters.
	a3 := a2
	a3.LastAttempt, a3.LastError, a3.LastErrorAt = t0.Add(2*time.Minute), "login refused", t0.Add(2*time.Minute)
	w.save(ctx, a3)
	if got, _, _ := sink.latest("a"); got != a3 {
		t.Fatalf("a failed poll's status waited: got %+v", got)
	}
	a4 := a3
	a4.LastAttempt, a4.LastErrorAt = t0.Add(3*time.Minute), t0.Add(3*time.Minute)
	w.save(ctx, a4)
	if got, _, _ := sink.latest("a"); got != a4 {
		t.Fatalf("a second failure's status waited: got %+v", got)
	}
	// Quiet, then flushed (as at the end of Run or PollOnce).
	a5 := a4
	a5.LastAttempt = t0.Add(4 * time.Minute)
	w.save(ctx, a5)
	if got, _, _ := sink.latest("a"); got != a4 {
		t.Fatalf("quiet status written at once")
	}
	w.flush(ctx)
	if got, _, _ := sink.latest("a"); got != a5 {
		t.Fatalf("flush did not write the waiting status: got %+v", got)
	}
}

// TestStatusWriterFlushesWithinInterval checks that a quiet status is
// written by the writer's timer when nothing else writes.
func TestStatusWriterFlushesWithinInterval(t *testing.T) {
	ctx := context.Background()
	w, sink := newTestStatusWriter(20 * time.Millisecond)
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	a1 := store.AccountStatus{Account: "a", LastAttempt: t0, LastSuccess: t0}
	w.save(ctx, a1)
	<-sink.wrote
	a2 := a1
	a2.LastAttempt, a2.LastSuccess = t0.Add(time.Minute), t0.Add(time.Minute)
	w.save(ctx, a2)
	select {
	case <-sink.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("a quiet status was never written")
	}
	if got, _, n := sink.latest("a"); got != a2 || n != 2 {
		t.Fatalf("timer flush wrote %+v in %d batches, want %+v in 2", got, n, a2)
	}
}

// TestStatusWriterFailureAndDrop checks that a failed write keeps the
// statuses for the next flush without letting an older one replace a newer
// one, and that a dropped account's waiting status is never written.
func TestStatusWriterFailureAndDrop(t *testing.T) {
	ctx := context.Background()
	w, sink := newTestStatusWriter(time.Hour)
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	sink.mu.Lock()
	sink.fail = true
	sink.mu.Unlock()
	a1 := store.AccountStatus{Account: "a", LastAttempt: t0, Fetched: 1}
	w.save(ctx, a1) // fails: kept
	sink.mu.Lock()
	sink.fail = false
	sink.mu.Unlock()
	a2 := a1
	a2.Fetched = 2
	w.save(ctx, a2)
	if got, _, n := sink.latest("a"); got != a2 || n != 1 {
		t.Fatalf("after a failed write: %+v in %d batches, want %+v in 1", got, n, a2)
	}
	w.flush(ctx)
	if got, _, _ := sink.latest("a"); got != a2 {
		t.Fatalf("an older status overwrote a newer one: %+v", got)
	}
	// Quiet status of b waiting, b removed: never written.
	b1 := store.AccountStatus{Account: "b", LastAttempt: t0}
	w.save(ctx, b1)
	b2 := b1
	b2.LastAttempt = t0.Add(time.Minute)
	w.save(ctx, b2)
	w.drop("b")
	w.flush(ctx)
	if got, _, _ := sink.latest("b"); got != b1 {
		t.Fatalf("a dropped account's waiting status was written: %+v", got)
	}
}
