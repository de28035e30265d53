package pgstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// addsOf returns the subjects-free summary "mailbox:uid" of the ChangeAdd
// entries among cs, in the order received.
func addsOf(cs []store.Change, mb store.MailboxID) []store.UID {
	var out []store.UID
	for _, c := range cs {
		if c.Kind == store.ChangeAdd && c.Mailbox == mb {
			for _, e := range c.Entries {
				out = append(out, e.UID)
			}
		}
	}
	return out
}

func testChangesAcrossNodes(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.open(t, "a")
	b := e.open(t, "b")
	u := mustUser(t, a, "bob").ID
	inbox := mustMailbox(t, a, u, store.Inbox)
	recB, cancelB := record(b)
	defer cancelB()
	recA, cancelA := record(a)
	defer cancelA()

	origin := "session-1"
	octx := store.WithOrigin(ctx, origin)
	for i := range 5 {
		if _, _, err := a.Append(octx, u, inbox.ID, msg(fmt.Sprint(i), "x"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.UpdateFlags(octx, u, inbox.ID, []store.UID{2}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	isFlags := func(cs []store.Change) bool { return len(cs) > 0 && cs[len(cs)-1].Kind == store.ChangeFlags }
	cs := recB.waitFor(t, feedTimeout, "node b to see the flag change", isFlags)
	if got := addsOf(cs, inbox.ID); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("node b saw adds %v, want [1 2 3 4 5] in order", got)
	}
	var last uint64
	for _, c := range cs {
		if c.Mailbox == inbox.ID {
			if c.ModSeq <= last {
				t.Errorf("modseqs not ascending: %d after %d", c.ModSeq, last)
			}
			last = c.ModSeq
		}
		if c.Origin != nil {
			t.Errorf("node b got an origin %v: origins stay on the writing node", c.Origin)
		}
	}
	if f := cs[len(cs)-1]; f.Entries[0].UID != 2 || f.Entries[0].Flags[0] != store.FlagSeen {
		t.Errorf("flag change %+v", f)
	}
	csA := recA.waitFor(t, feedTimeout, "node a to see its own flag change", isFlags)
	if csA[len(csA)-1].Origin != origin {
		t.Errorf("node a: origin %v, want %v", csA[len(csA)-1].Origin, origin)
	}

	// The listener of node b loses its connection: the changes made
	// meanwhile are caught up, none twice.
	before := len(recB.snapshot())
	out := e.srv.Psql(t, e.db, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'popbridge-listen b' AND datname = current_database()`)
	if out != "1" {
		t.Fatalf("terminated %s listeners of node b, want 1", out)
	}
	for i := 5; i < 10; i++ {
		mustAppend(t, a, u, inbox.ID, msg(fmt.Sprint(i), "x"))
	}
	cs = recB.waitFor(t, feedTimeout, "node b to catch up", func(cs []store.Change) bool {
		return len(addsOf(cs, inbox.ID)) >= 10
	})
	if got := addsOf(cs, inbox.ID); fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Errorf("node b saw adds %v after the reconnect, want 1..10 once each in order", got)
	}
	if len(cs) != before+5 {
		t.Errorf("node b got %d changes after the reconnect, want 5", len(cs)-before)
	}
	if err := b.Health(); err != nil && !strings.Contains(err.Error(), "listener") {
		t.Errorf("health: %v", err)
	}
}

// testChangesCatchUpWithoutNotify shows that a change whose NOTIFY never
// arrives (here: the row written by hand, as a lost notification looks)
// still reaches subscribers, from the table.
func testChangesCatchUpWithoutNotify(t *testing.T, e *env) {
	s, err := Open(context.Background(), e.dsn, Options{NodeName: "a", PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, cancel := record(s)
	defer cancel()
	e.srv.Psql(t, e.db, `SELECT pg_advisory_xact_lock(`+fmt.Sprint(feedLockKey)+`); INSERT INTO changes (payload) VALUES ('{"k":7,"u":42,"n":"X"}')`)
	cs := rec.waitFor(t, feedTimeout, "the change without a notification", func(cs []store.Change) bool { return len(cs) == 1 })
	if cs[0].Kind != store.ChangeSubscription || cs[0].User != 42 || cs[0].MailboxName != "X" {
		t.Errorf("change %+v", cs[0])
	}
}

// testChangesPrune shows that the feed keeps changes for the retention
// only, by the database's clock.
func testChangesPrune(t *testing.T, e *env) {
	s := e.open(t, "a")
	mustUser(t, s, "bob") // six ChangeMailboxCreated, just now
	e.srv.Psql(t, e.db, `INSERT INTO changes (committed, payload) VALUES (now() - interval '25 hours', '{"k":7,"u":1}'), (now() - interval '23 hours', '{"k":7,"u":1}')`)
	n, err := s.feed.prune(context.Background())
	if err != nil || n != 1 {
		t.Errorf("pruned %d, %v; want the one change older than 24 hours", n, err)
	}
	if left := e.srv.Psql(t, e.db, "SELECT count(*) FROM changes"); left != "7" {
		t.Errorf("%s changes left, want 7", left)
	}
}

// testMailboxChanges checks the changes that mailbox operations publish,
// as the SQLite store publishes them, and that a cancelled subscription
// receives nothing more.
func testMailboxChanges(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	u := mustUser(t, s, "bob").ID
	// A write returns once the feed has published its changes, so the
	// subscriber sees none of the user's creation; the mark shows where
	// this test's operations begin.
	rec, cancel := record(s)
	mark := mustAppend(t, s, u, mustMailbox(t, s, u, "Junk").ID, msg("mark", "x"))
	rec.waitFor(t, feedTimeout, "the mark", func(cs []store.Change) bool {
		return len(cs) > 0 && cs[len(cs)-1].Kind == store.ChangeAdd && cs[len(cs)-1].ModSeq == mark.ModSeq
	})
	rec.mu.Lock()
	rec.changes = nil
	rec.mu.Unlock()

	if _, err := s.CreateMailbox(ctx, u, "p/q", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, u, "p", "r"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, u, "r/q", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, u, "r/q", true); err != nil { // no change: nothing published
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, u, "r/q"); err != nil {
		t.Fatal(err)
	}
	want := []string{"created p", "created p/q", "renamed p->r", "renamed p/q->r/q", "subscription r/q", "deleted r/q"}
	cs := rec.waitFor(t, feedTimeout, "the mailbox changes", func(cs []store.Change) bool { return len(cs) >= len(want) })
	var got []string
	for _, c := range cs {
		switch c.Kind {
		case store.ChangeMailboxCreated:
			got = append(got, "created "+c.MailboxName)
		case store.ChangeMailboxRenamed:
			got = append(got, "renamed "+c.OldName+"->"+c.MailboxName)
		case store.ChangeSubscription:
			got = append(got, "subscription "+c.MailboxName)
		case store.ChangeMailboxDeleted:
			got = append(got, "deleted "+c.MailboxName)
		default:
			got = append(got, fmt.Sprint("kind ", c.Kind))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	rq := cs[3]
	if cs[4].Mailbox != rq.Mailbox || cs[4].ModSeq != rq.ModSeq+1 || cs[5].ModSeq != cs[4].ModSeq+1 {
		t.Errorf("modseqs of r/q's changes: renamed %d, subscription %d, deleted %d", rq.ModSeq, cs[4].ModSeq, cs[5].ModSeq)
	}

	// After cancel, nothing more arrives (a second subscriber, still
	// registered, shows the change was published).
	cancel()
	rec2, cancel2 := record(s)
	defer cancel2()
	mustAppend(t, s, u, mustMailbox(t, s, u, store.Inbox).ID, msg("late", "x"))
	rec2.waitFor(t, feedTimeout, "the late append", func(cs []store.Change) bool {
		return len(cs) > 0 && cs[len(cs)-1].Kind == store.ChangeAdd
	})
	if n := len(rec.snapshot()); n != len(want) {
		t.Errorf("cancelled subscriber has %d changes, want %d", n, len(want))
	}
}

// testChangesGlobalOrder alternates writes of two nodes into two
// mailboxes, each after the previous one returned: a third node's
// subscriber sees them in exactly that order.
func testChangesGlobalOrder(t *testing.T, e *env) {
	a, b, c := e.open(t, "a"), e.open(t, "b"), e.open(t, "c")
	u := mustUser(t, a, "bob").ID
	boxes := []store.Mailbox{mustMailbox(t, a, u, store.Inbox), mustMailbox(t, a, u, "Sent")}
	rec, cancel := record(c)
	defer cancel()
	var want []string
	for i := range 12 {
		s, mb := []*Store{a, b}[i%2], boxes[(i/2)%2]
		ent := mustAppend(t, s, u, mb.ID, msg(fmt.Sprint(i), "x"))
		want = append(want, fmt.Sprint(mb.ID, ":", ent.UID))
	}
	cs := rec.waitFor(t, feedTimeout, "12 adds", func(cs []store.Change) bool {
		n := 0
		for _, c := range cs {
			if c.Kind == store.ChangeAdd {
				n++
			}
		}
		return n >= 12
	})
	var got []string
	for _, c := range cs {
		if c.Kind == store.ChangeAdd {
			got = append(got, fmt.Sprint(c.Mailbox, ":", c.Entries[0].UID))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("node c saw %v, want commit order %v", got, want)
	}
}
