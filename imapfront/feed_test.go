package imapfront

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// slowFeed is a Store whose change feed applies each change late, as a
// loaded feed goroutine would: without waiting for the feed, a session
// would write its tagged OK before its own updates.
type slowFeed struct {
	Store
	delay time.Duration
}

func (s slowFeed) Subscribe(fn func(store.Change)) *store.Subscription {
	return s.Store.Subscribe(func(c store.Change) {
		time.Sleep(s.delay) // fault injection: a late feed, not synchronisation
		fn(c)
	})
}

// TestOwnChangesBeforeTaggedOK checks, with a late feed and a blocked
// subscriber of the same store, that a session still gets its own EXPUNGE
// and MOVE responses before the tagged OK, that STORE reports its own
// flags once, and that another session's NOOP shows a delivery committed
// just before it.
func TestOwnChangesBeforeTaggedOK(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Store = slowFeed{Store: o.Store, delay: 20 * time.Millisecond} })
	env.deliverAll("alice", "INBOX", "one", "two", "three", "four")
	// A blocked subscriber of the same store delays nobody else.
	release := make(chan struct{})
	var once sync.Once
	blocked := env.st.Subscribe(func(store.Change) { <-release })
	t.Cleanup(func() { once.Do(func() { close(release) }); blocked.Cancel() })

	a := env.rawSelected("alice", "INBOX")
	b := env.rawSelected("alice", "INBOX")
	if u := a.ok(`STORE 1 +FLAGS (\Deleted)`); len(grep(u, "FETCH")) != 1 {
		t.Fatalf("STORE: %q, want one FETCH", u)
	}
	if u := a.ok("EXPUNGE"); strings.Join(u, "|") != "* 1 EXPUNGE" {
		t.Fatalf("EXPUNGE: %q, want its own EXPUNGE before OK", u)
	}
	if u := a.ok("MOVE 1 Trash"); len(grep(u, "EXPUNGE")) != 1 {
		t.Fatalf("MOVE: %q, want one EXPUNGE before OK", u)
	}
	env.deliver("alice", "INBOX", msg("five"))
	if u := b.ok("NOOP"); len(grep(u, "EXPUNGE")) != 2 || len(grep(u, "EXISTS")) != 1 {
		t.Fatalf("NOOP of the other session: %q, want two EXPUNGEs and the new EXISTS", u)
	}
	if u := a.ok("NOOP"); len(grep(u, "EXISTS")) != 1 {
		t.Fatalf("NOOP: %q, want the new EXISTS", u)
	}
}

// TestFeedResyncDisconnectsSelected checks what a ChangeResync (the store
// dropped the server's queued changes) does: a session with a mailbox
// selected is disconnected at its next command, one without stays, and a
// new SELECT loads the mailbox afresh.
func TestFeedResyncDisconnectsSelected(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "one", "two")
	sel := env.rawSelected("alice", "INBOX")
	auth := env.rawLogin("alice")
	env.srv.onChange(store.Change{Kind: store.ChangeResync})
	// A change the server never saw, as if dropped with the queue.
	env.deliver("alice", "INBOX", msg("three"))

	sel.write("t99 NOOP")
	for {
		l, err := sel.readLine(ioWait)
		if err != nil {
			break // closed: the client must resynchronise
		}
		if strings.HasPrefix(l, "t99 OK") {
			t.Fatalf("NOOP of a stale session answered OK")
		}
	}
	if u := auth.ok("NOOP"); len(u) != 0 {
		t.Fatalf("NOOP without a selected mailbox: %q", u)
	}
	fresh := env.rawSelected("alice", "INBOX")
	if u := fresh.ok("FETCH 1:* (UID)"); len(u) != 3 {
		t.Fatalf("FETCH after a fresh SELECT: %q, want 3 messages", u)
	}
	if u := fresh.ok("NOOP"); len(u) != 0 {
		t.Fatalf("fresh session NOOP: %q", u)
	}
}
