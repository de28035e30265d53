package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func testLedgerDuplicateGuard(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	d := store.Delivery{Account: "acct", UIDL: "u1", Digest: "d1", User: "alice", Folder: "Lists/Go", Raw: message("1")}
	first, err := b.Deliver(ctx, []store.Delivery{d, d})
	if err != nil {
		t.Fatal(err)
	}
	if first[0] != first[1] || first[0].UID == 0 {
		t.Fatalf("a key twice in one batch: %+v", first)
	}
	lists := mailbox(t, b, u.ID, "Lists/Go") // created by the delivery
	if first[0].Mailbox != lists.ID {
		t.Errorf("delivered to mailbox %d, Lists/Go is %d", first[0].Mailbox, lists.ID)
	}
	again, err := b.Deliver(ctx, []store.Delivery{d})
	if err != nil || again[0] != first[0] {
		t.Fatalf("redelivery = %+v, %v; want %+v", again, err, first[0])
	}
	// The same UIDL with other content is another message.
	reused := d
	reused.Digest, reused.Raw = "d2", message("2")
	other, err := b.Deliver(ctx, []store.Delivery{reused})
	if err != nil || other[0].UID <= first[0].UID {
		t.Fatalf("reused UIDL = %+v, %v; want a new message", other, err)
	}
	if n := len(snapshot(t, b, u.ID, lists.ID).Entries); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
	// Expunged locally: not stored again, reported as zero.
	if _, err := b.UpdateFlags(ctx, u.ID, lists.ID, []store.UID{first[0].UID}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge(ctx, u.ID, lists.ID, nil); err != nil {
		t.Fatal(err)
	}
	gone, err := b.Deliver(ctx, []store.Delivery{d})
	if err != nil || gone[0] != (store.Delivered{}) {
		t.Fatalf("redelivery after expunge = %+v, %v; want a zero Delivered", gone, err)
	}
	if n := len(snapshot(t, b, u.ID, lists.ID).Entries); n != 1 {
		t.Fatalf("%d messages after redelivering an expunged key, want 1", n)
	}
	keys, err := b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("LedgerKeys = %+v, %v; want 2 rows", keys, err)
	}
	if !keys[0].Expunged || keys[1].Expunged || keys[0].Digest != "d1" {
		t.Errorf("ledger rows %+v; want d1 expunged, d2 not", keys)
	}
	// A skipped key is stored when delivered later.
	if err := b.RecordSkipped(ctx, "acct", "big", "d3", 1<<30, "too large"); err != nil {
		t.Fatal(err)
	}
	big, err := b.Deliver(ctx, []store.Delivery{{Account: "acct", UIDL: "big", Digest: "d3", User: "alice", Raw: message("3")}})
	if err != nil || big[0].UID == 0 {
		t.Fatalf("delivery of a skipped key = %+v, %v", big, err)
	}
	keys, _ = b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{})
	if i := slices.IndexFunc(keys, func(k store.LedgerKey) bool { return k.UIDL == "big" }); i < 0 || keys[i].Skipped != "" {
		t.Errorf("skipped row after delivery: %+v", keys)
	}
}

func testLedgerMarks(t *testing.T, b Backend) {
	ctx := context.Background()
	ensureUser(t, b, "alice")
	if _, err := b.Deliver(ctx, []store.Delivery{
		{Account: "acct", UIDL: "u1", Digest: "d1", User: "alice", Raw: message("1")},
		{Account: "acct", UIDL: "u2", Digest: "d2", User: "alice", Raw: message("2")},
	}); err != nil {
		t.Fatal(err)
	}
	key := func(uidl string) store.LedgerKey {
		t.Helper()
		keys, err := b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(keys, func(k store.LedgerKey) bool { return k.UIDL == uidl })
		if i < 0 {
			t.Fatalf("no ledger row %s in %+v", uidl, keys)
		}
		return keys[i]
	}
	if err := b.MarkDeletePending(ctx, "acct", []string{"u1", "u2"}); err != nil {
		t.Fatal(err)
	}
	if !key("u1").DeletePending || !key("u2").DeletePending {
		t.Fatal("MarkDeletePending left no mark")
	}
	if err := b.MarkDeleted(ctx, "acct", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.ClearDeletePending(ctx, "acct", []string{"u2"}); err != nil {
		t.Fatal(err)
	}
	if k := key("u1"); !k.Deleted || k.DeletePending {
		t.Errorf("after MarkDeleted: %+v", k)
	}
	if k := key("u2"); k.Deleted || k.DeletePending {
		t.Errorf("after ClearDeletePending: %+v", k)
	}
	if keys, err := b.LedgerKeys(ctx, "other", store.LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Errorf("another account's ledger = %+v, %v", keys, err)
	}
}

func testStageCommitRelease(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	stage := func(uidl string) store.Staged {
		t.Helper()
		st, err := b.Stage(ctx, []store.Delivery{{Account: "acct", UIDL: uidl, Digest: "d", User: "alice", Raw: message(uidl)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Release)
		return st
	}
	first, second, dropped := stage("first"), stage("second"), stage("dropped")
	if n := len(snapshot(t, b, u.ID, inbox.ID).Entries); n != 0 {
		t.Fatalf("%d messages visible before any Commit", n)
	}
	if keys, _ := b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{}); len(keys) != 0 {
		t.Fatalf("ledger rows before any Commit: %+v", keys)
	}
	dropped.Release()
	out2, err := second.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out1, err := first.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out2[0].UID >= out1[0].UID {
		t.Fatalf("UIDs %d (second, committed first) and %d: not in commit order", out2[0].UID, out1[0].UID)
	}
	if _, err := first.Commit(ctx); !errors.Is(err, store.ErrStagedDone) {
		t.Errorf("second Commit = %v, want ErrStagedDone", err)
	}
	if _, err := dropped.Commit(ctx); !errors.Is(err, store.ErrStagedDone) {
		t.Errorf("Commit after Release = %v, want ErrStagedDone", err)
	}
	first.Release() // no-op after Commit
	snap := snapshot(t, b, u.ID, inbox.ID)
	if !slices.Equal(uidsOf(snap.Entries), []store.UID{out2[0].UID, out1[0].UID}) {
		t.Fatalf("INBOX holds %v", uidsOf(snap.Entries))
	}
	got := bodies(t, b, u.ID, inbox.ID, uidsOf(snap.Entries))
	if got[out1[0].UID] != string(message("first")) || got[out2[0].UID] != string(message("second")) {
		t.Fatalf("bodies %v", got)
	}
	keys, err := b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("ledger after commits: %+v, %v; want first and second only", keys, err)
	}
	// Two batches staged with one key store it once.
	a, c := stage("same"), stage("same")
	outA, errA := a.Commit(ctx)
	outC, errC := c.Commit(ctx)
	if errA != nil || errC != nil || outA[0] != outC[0] {
		t.Fatalf("same key staged twice: %+v, %v / %+v, %v", outA, errA, outC, errC)
	}
	// An empty batch commits nothing.
	empty, err := b.Stage(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := empty.Commit(ctx); err != nil || len(out) != 0 {
		t.Errorf("empty batch Commit = %+v, %v", out, err)
	}
}

func testStageUnknownUser(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	st, err := b.Stage(ctx, []store.Delivery{
		{Account: "acct", UIDL: "1", Digest: "d1", User: "alice", Raw: message("ok")},
		{Account: "acct", UIDL: "2", Digest: "d2", User: "nobody", Raw: message("lost")},
	})
	if err == nil {
		defer st.Release()
		_, err = st.Commit(ctx)
	}
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delivery to an unknown user = %v, want ErrNotFound", err)
	}
	if n := len(snapshot(t, b, u.ID, mailbox(t, b, u.ID, store.Inbox).ID).Entries); n != 0 {
		t.Errorf("%d messages stored from a failed batch", n)
	}
	if keys, _ := b.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{}); len(keys) != 0 {
		t.Errorf("ledger rows from a failed batch: %+v", keys)
	}
}

// recorder collects a subscriber's changes.
type recorder struct {
	sub *store.Subscription
	mu  sync.Mutex
	got []store.Change
}

func subscribe(t *testing.T, b Backend, block <-chan struct{}) *recorder {
	r := &recorder{}
	r.sub = b.Subscribe(func(c store.Change) {
		if block != nil {
			<-block
		}
		r.mu.Lock()
		r.got = append(r.got, c)
		r.mu.Unlock()
	})
	t.Cleanup(r.sub.Cancel)
	return r
}

func (r *recorder) take(t *testing.T) []store.Change {
	t.Helper()
	if err := r.sub.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

type origin struct{ name string }

func testSubscribeOrder(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	block := make(chan struct{})
	blocked := subscribe(t, b, block)
	rec := subscribe(t, b, nil)
	me := &origin{"me"}
	mine := store.WithOrigin(ctx, me)
	e1, _, err := b.Append(mine, u.ID, inbox.ID, message("1"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Deliver(ctx, []store.Delivery{{Account: "a", UIDL: "1", Digest: "d", User: "alice", Raw: message("2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateFlags(mine, u.ID, inbox.ID, []store.UID{e1.UID}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge(ctx, u.ID, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	// All four committed although one subscriber is blocked.
	got := rec.take(t)
	kinds := make([]store.ChangeKind, len(got))
	for i, c := range got {
		kinds[i] = c.Kind
	}
	want := []store.ChangeKind{store.ChangeAdd, store.ChangeAdd, store.ChangeFlags, store.ChangeExpunge}
	if !slices.Equal(kinds, want) {
		t.Fatalf("changes %v, want %v", kinds, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ModSeq <= got[i-1].ModSeq {
			t.Errorf("change %d modseq %d after %d", i, got[i].ModSeq, got[i-1].ModSeq)
		}
	}
	if got[0].Origin != me || got[1].Origin != nil || got[2].Origin != me {
		t.Errorf("origins %v %v %v, want me, none, me", got[0].Origin, got[1].Origin, got[2].Origin)
	}
	if got[3].Mailbox != inbox.ID || !slices.Equal(got[3].UIDs, []store.UID{e1.UID}) || got[0].User != u.ID {
		t.Errorf("expunge change %+v", got[3])
	}
	if last := got[len(got)-1].ModSeq; last != mailbox(t, b, u.ID, store.Inbox).HighestModSeq {
		t.Errorf("last change modseq %d, HIGHESTMODSEQ %d", last, mailbox(t, b, u.ID, store.Inbox).HighestModSeq)
	}
	close(block)
	slow := blocked.take(t)
	if len(slow) != len(got) {
		t.Fatalf("blocked subscriber got %d changes, want %d", len(slow), len(got))
	}
	for i := range slow {
		if slow[i].Kind != got[i].Kind || slow[i].ModSeq != got[i].ModSeq {
			t.Errorf("blocked subscriber change %d: %v@%d, want %v@%d", i, slow[i].Kind, slow[i].ModSeq, got[i].Kind, got[i].ModSeq)
		}
	}
}
