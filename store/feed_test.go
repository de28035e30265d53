package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// hangLimit fails a test whose write hangs behind a blocked subscriber
// instead of letting it run into the test binary's timeout. It detects a
// deadlock; it does not stand in for an event.
const hangLimit = 30 * time.Second

// blockedSubscriber subscribes a callback that blocks in its first call
// until release is closed, recording everything it is handed.
type blockedSubscriber struct {
	sub     *Subscription
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	got     []Change
}

func subscribeBlocked(t *testing.T, s *Store) *blockedSubscriber {
	b := &blockedSubscriber{entered: make(chan struct{}), release: make(chan struct{})}
	first := true
	b.sub = s.Subscribe(func(c Change) {
		if first {
			first = false
			close(b.entered)
			<-b.release
		}
		b.mu.Lock()
		b.got = append(b.got, c)
		b.mu.Unlock()
	})
	t.Cleanup(b.sub.Cancel)
	return b
}

func (b *blockedSubscriber) changes() []Change {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// TestBlockedSubscriberDoesNotBlockWrites blocks one subscriber inside its
// callback and checks that Deliver, Append and flag changes still commit,
// that another subscriber sees all of them at once, in commit order, and
// that the blocked one gets every change, in order, once it returns.
func TestBlockedSubscriberDoesNotBlockWrites(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	blocked := subscribeBlocked(t, s)
	rec := record(t, s)

	const n = 50
	done := make(chan error, 1)
	go func() {
		for i := range n {
			var err error
			switch i % 3 {
			case 0:
				_, err = s.Deliver(ctx, []Delivery{{Account: "a", UIDL: fmt.Sprint(i), Digest: "d", User: "alice", Raw: testMessage(fmt.Sprint(i))}})
			case 1:
				_, _, err = s.Append(ctx, u.ID, inbox.ID, testMessage(fmt.Sprint(i)), nil, time.Time{})
			default:
				_, err = s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{1}, FlagsReplace, []string{fmt.Sprintf("k%d", i)})
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	<-blocked.entered
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangLimit):
		t.Fatal("writes hang behind a blocked subscriber")
	}
	seen := rec.take()
	if len(seen) != n {
		t.Fatalf("free subscriber saw %d changes, want %d", len(seen), n)
	}
	checkCommitOrder(t, seen)

	close(blocked.release)
	if err := blocked.sub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := blocked.changes()
	if len(got) != n {
		t.Fatalf("blocked subscriber got %d changes after release, want %d", len(got), n)
	}
	for i := range got {
		if got[i].Kind != seen[i].Kind || got[i].ModSeq != seen[i].ModSeq {
			t.Fatalf("change %d: blocked subscriber got %v@%d, free one %v@%d", i, got[i].Kind, got[i].ModSeq, seen[i].Kind, seen[i].ModSeq)
		}
	}
}

// checkCommitOrder checks that the changes of each mailbox carry strictly
// increasing modseqs.
func checkCommitOrder(t *testing.T, cs []Change) {
	t.Helper()
	last := map[MailboxID]uint64{}
	for i, c := range cs {
		if c.ModSeq <= last[c.Mailbox] {
			t.Fatalf("change %d (%v) of mailbox %d has modseq %d after %d", i, c.Kind, c.Mailbox, c.ModSeq, last[c.Mailbox])
		}
		last[c.Mailbox] = c.ModSeq
	}
}

// TestFeedOverflowResyncs blocks a subscriber while more changes are
// committed than its queue may hold: its queue stays within the bound,
// and once released it gets a ChangeResync in place of what was dropped,
// then only changes committed later, in order, never one from before the
// ChangeResync.
func TestFeedOverflowResyncs(t *testing.T) {
	const bound = 8
	s, err := Open(context.Background(), hooked(t, t.TempDir(), testHooks{feedQueue: bound, noIndexer: true}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	blocked := subscribeBlocked(t, s)
	rec := record(t, s)
	mustAppend(t, s, u.ID, inbox.ID, "first")
	<-blocked.entered
	const n = 30
	for i := range n {
		mustAppend(t, s, u.ID, inbox.ID, fmt.Sprint(i))
		blocked.sub.mu.Lock()
		w := blocked.sub.weight
		blocked.sub.mu.Unlock()
		if w > bound {
			t.Fatalf("after %d appends the blocked subscriber's queue weighs %d, bound %d", i+1, w, bound)
		}
	}
	all := rec.take()
	if len(all) != n+1 {
		t.Fatalf("free subscriber saw %d changes, want %d (no resync)", len(all), n+1)
	}
	close(blocked.release)
	if err := blocked.sub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := blocked.changes()
	if len(got) < 2 || got[0].ModSeq != all[0].ModSeq {
		t.Fatalf("blocked subscriber got %d changes, first %+v", len(got), got)
	}
	resync := slices.IndexFunc(got, func(c Change) bool { return c.Kind == ChangeResync })
	if resync < 0 {
		t.Fatalf("no ChangeResync after overflowing: %d changes", len(got))
	}
	// After the last resync: a gapless suffix of the commit order.
	lastResync := resync
	for i, c := range got {
		if c.Kind == ChangeResync {
			lastResync = i
		}
	}
	tail := got[lastResync+1:]
	if len(tail) >= bound {
		t.Fatalf("%d changes after the last resync, want fewer than %d", len(tail), bound)
	}
	want := all[len(all)-len(tail):]
	for i := range tail {
		if tail[i].ModSeq != want[i].ModSeq {
			t.Fatalf("after the resync change %d has modseq %d, want %d", i, tail[i].ModSeq, want[i].ModSeq)
		}
	}
	// The blocked subscriber's queue is empty again: the next change comes
	// through normally.
	mustAppend(t, s, u.ID, inbox.ID, "after")
	if err := blocked.sub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := blocked.changes(); got[len(got)-1].Kind != ChangeAdd {
		t.Errorf("last change %v, want the add", got[len(got)-1].Kind)
	}
}

// TestFeedOrderUnderConcurrentWriters runs writers on several goroutines
// and checks that two subscribers see the same changes in the same order,
// each mailbox's modseqs strictly increasing.
func TestFeedOrderUnderConcurrentWriters(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	var mbs []Mailbox
	for _, name := range []string{Inbox, "Archive", "Trash"} {
		mbs = append(mbs, mustMailbox(t, s, u.ID, name))
	}
	a, b := record(t, s), record(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				mb := mbs[(w+i)%len(mbs)]
				e, _, err := s.Append(ctx, u.ID, mb.ID, testMessage(fmt.Sprintf("%d-%d", w, i)), nil, time.Time{})
				if err == nil && i%2 == 0 {
					_, err = s.UpdateFlags(ctx, u.ID, mb.ID, []UID{e.UID}, FlagsAdd, []string{FlagSeen})
				}
				if err == nil && i%5 == 0 {
					_, err = s.Expunge(ctx, u.ID, mb.ID, []UID{e.UID})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ga, gb := a.take(), b.take()
	if len(ga) == 0 || len(ga) != len(gb) {
		t.Fatalf("subscribers saw %d and %d changes", len(ga), len(gb))
	}
	for i := range ga {
		if ga[i].Mailbox != gb[i].Mailbox || ga[i].ModSeq != gb[i].ModSeq {
			t.Fatalf("change %d differs between subscribers", i)
		}
	}
	checkCommitOrder(t, ga)
}

// TestSubscriptionCancelAndClose checks that a callback may cancel its own
// subscription, that Sync returns after Cancel, and that Close ends every
// subscription's goroutine.
func TestSubscriptionCancelAndClose(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	calls := 0
	var self *Subscription
	ready := make(chan struct{})
	self = s.Subscribe(func(Change) {
		<-ready
		calls++
		self.Cancel()
	})
	close(ready)
	other := s.Subscribe(func(Change) {})
	mustAppend(t, s, u.ID, inbox.ID, "a")
	mustAppend(t, s, u.ID, inbox.ID, "b")
	if err := self.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	<-self.done
	if calls != 1 {
		t.Errorf("self-cancelling subscriber called %d times, want 1", calls)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-other.done // the goroutine ends after Close
	late := s.feed.Subscribe(func(Change) { t.Error("called after Close") })
	<-late.done
	if err := late.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}
