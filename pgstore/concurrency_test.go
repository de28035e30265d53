package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testConcurrentWriters has two nodes append, copy and deliver into one
// mailbox at the same time: every UID is handed out once, UIDs follow
// commit order, and the change feed shows each mailbox's modseqs strictly
// increasing.
func testConcurrentWriters(t *testing.T, e *env) {
	ctx := context.Background()
	nodes := []*Store{e.open(t, "a"), e.open(t, "b")}
	u := mustUser(t, nodes[0], "bob").ID
	inbox := mustMailbox(t, nodes[0], u, store.Inbox)
	arch := mustMailbox(t, nodes[0], u, "Archive")
	seed := mustAppend(t, nodes[0], u, arch.ID, msg("seed", "x"))
	rec, cancel := record(nodes[1])
	defer cancel()

	const perWorker = 15
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		uids []store.UID
		errs []error
	)
	add := func(got ...store.UID) {
		mu.Lock()
		uids = append(uids, got...)
		mu.Unlock()
	}
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for n, s := range nodes {
		wg.Go(func() { // APPEND
			for i := range perWorker {
				ent, _, err := s.Append(ctx, u, inbox.ID, msg(fmt.Sprintf("n%d-%d", n, i), "x"), nil, time.Time{})
				if err != nil {
					fail(err)
					return
				}
				add(ent.UID)
			}
		})
		wg.Go(func() { // COPY
			for range perWorker {
				cr, err := s.Copy(ctx, u, arch.ID, []store.UID{seed.UID}, inbox.ID)
				if err != nil {
					fail(err)
					return
				}
				add(cr.Dest...)
			}
		})
		wg.Go(func() { // deliver, two per batch
			for i := range perWorker {
				dl, err := s.Deliver(ctx, []store.Delivery{
					delivery(fmt.Sprint("acct", n), fmt.Sprint(i, "x"), "bob", "", "d"),
					delivery(fmt.Sprint("acct", n), fmt.Sprint(i, "y"), "bob", "", "d"),
				})
				if err != nil {
					fail(err)
					return
				}
				if dl[1].UID != dl[0].UID+1 {
					fail(fmt.Errorf("one batch got UIDs %d and %d", dl[0].UID, dl[1].UID))
				}
				add(dl[0].UID, dl[1].UID)
			}
		})
		wg.Go(func() { // flags on what exists: modseq contention
			for range perWorker {
				if _, err := s.UpdateFlags(ctx, u, inbox.ID, []store.UID{1, 2, 3}, store.FlagsReplace, []string{fmt.Sprint("kw", n)}); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	want := 2 * perWorker * 4
	slices.Sort(uids)
	if len(slices.Compact(slices.Clone(uids))) != len(uids) || len(uids) != want {
		t.Fatalf("%d UIDs handed out, %d distinct; want %d distinct", len(uids), len(slices.Compact(uids)), want)
	}
	snap, err := nodes[1].Snapshot(ctx, u, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uidsOf(snap.Entries), uids) || snap.Mailbox.UIDNext != uids[len(uids)-1]+1 {
		t.Errorf("snapshot UIDs %v (UIDNEXT %d), handed out %v", uidsOf(snap.Entries), snap.Mailbox.UIDNext, uids)
	}
	// The feed on node b: every mailbox change of INBOX, modseqs strictly
	// increasing, and the adds in UID order.
	cs := rec.waitFor(t, feedTimeout, "every change of INBOX on node b", func(cs []store.Change) bool {
		var last uint64
		for _, c := range cs {
			if c.Mailbox == inbox.ID {
				last = c.ModSeq
			}
		}
		return last == snap.Mailbox.HighestModSeq
	})
	var last uint64
	var prev store.UID
	for _, c := range cs {
		if c.Mailbox != inbox.ID {
			continue
		}
		if c.ModSeq <= last {
			t.Fatalf("INBOX modseq %d after %d in the feed", c.ModSeq, last)
		}
		last = c.ModSeq
		for _, en := range c.Entries {
			if c.Kind == store.ChangeAdd {
				if en.UID <= prev {
					t.Fatalf("add of UID %d after UID %d in the feed", en.UID, prev)
				}
				prev = en.UID
			}
		}
	}
	if prev != uids[len(uids)-1] {
		t.Errorf("feed's last added UID %d, want %d", prev, uids[len(uids)-1])
	}
}

// testConcurrentCreate has two nodes create the same mailbox and the same
// user at once: one wins, the other gets ErrExists or the same user.
func testConcurrentCreate(t *testing.T, e *env) {
	ctx := context.Background()
	nodes := []*Store{e.open(t, "a"), e.open(t, "b")}
	users := make([]store.User, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() { users[i], errs[i] = s.EnsureUser(ctx, "carol") })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || users[0].ID != users[1].ID {
		t.Fatalf("concurrent EnsureUser: %+v, %v", users, errs)
	}
	for round := range 5 {
		name := fmt.Sprint("box", round)
		for i, s := range nodes {
			wg.Go(func() { _, errs[i] = s.CreateMailbox(ctx, users[0].ID, name, "") })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errorsIsExists(err):
				t.Errorf("round %d: %v", round, err)
			}
		}
		if ok != 1 {
			t.Errorf("round %d: %d creations succeeded (%v), want 1", round, ok, errs)
		}
	}
}

func errorsIsExists(err error) bool { return errors.Is(err, store.ErrExists) }

// testConcurrentSameDelivery has two nodes deliver the same upstream
// messages at the same moment (as two pollers would without a lease):
// each message is stored once, and both nodes report the same one.
func testConcurrentSameDelivery(t *testing.T, e *env) {
	ctx := context.Background()
	nodes := []*Store{e.open(t, "a"), e.open(t, "b")}
	mustUser(t, nodes[0], "bob")
	const rounds, per = 5, 8
	for r := range rounds {
		var ds []store.Delivery
		for i := range per {
			ds = append(ds, delivery("acct", fmt.Sprint(r, "-", i), "bob", "", "same"))
		}
		got := make([][]store.Delivered, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for n, s := range nodes {
			wg.Go(func() { got[n], errs[n] = s.Deliver(ctx, ds) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v", r, errs)
		}
		if !slices.Equal(got[0], got[1]) {
			t.Errorf("round %d: nodes report %+v and %+v", r, got[0], got[1])
		}
	}
	if n := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages"); n != fmt.Sprint(rounds*per) {
		t.Errorf("%s messages stored, want %d", n, rounds*per)
	}
	if n := e.srv.Psql(t, e.db, "SELECT count(*) FROM pop_ledger"); n != fmt.Sprint(rounds*per) {
		t.Errorf("%s ledger rows, want %d", n, rounds*per)
	}
}

// testOpposingMoves has two nodes move messages between two mailboxes in
// opposite directions at once: the locks are taken in one order, so no
// call fails, and no message is lost or doubled.
func testOpposingMoves(t *testing.T, e *env) {
	ctx := context.Background()
	nodes := []*Store{e.open(t, "a"), e.open(t, "b")}
	u := mustUser(t, nodes[0], "bob").ID
	boxes := []store.Mailbox{mustMailbox(t, nodes[0], u, store.Inbox), mustMailbox(t, nodes[0], u, "Archive")}
	const each = 6
	for _, mb := range boxes {
		for i := range each {
			mustAppend(t, nodes[0], u, mb.ID, msg(fmt.Sprint(mb.Name, i), "x"))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for n, s := range nodes {
		src, dst := boxes[n], boxes[1-n]
		wg.Go(func() {
			for range 10 {
				snap, err := s.Snapshot(ctx, u, src.ID)
				if err != nil {
					errs[n] = err
					return
				}
				if len(snap.Entries) == 0 {
					continue
				}
				if _, err := s.Move(ctx, u, src.ID, uidsOf(snap.Entries[:1]), dst.ID); err != nil {
					errs[n] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	total := 0
	for _, mb := range boxes {
		c, err := nodes[1].Counts(ctx, u, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		total += int(c.Messages)
	}
	if total != 2*each {
		t.Errorf("%d messages after the moves, want %d", total, 2*each)
	}
	if n := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages"); n != fmt.Sprint(2*each) {
		t.Errorf("%s message rows, want %d", n, 2*each)
	}
}
