package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"
)

func TestDeliver(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	rec := record(t, s)
	ds := []Delivery{
		{Account: "work", UIDL: "u1", Digest: "d1", User: "alice", Raw: testMessage("1")},
		{Account: "work", UIDL: "u2", Digest: "d2", User: "alice", Folder: "Lists/Go", Raw: testMessage("2")},
		{Account: "work", UIDL: "u1", Digest: "d1", User: "alice", Raw: testMessage("1")}, // duplicate within the batch
	}
	got, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	lists := mustMailbox(t, s, u.ID, "Lists/Go")
	if got[0] != (Delivered{Mailbox: inbox.ID, UID: 1, Message: got[0].Message}) || got[2] != got[0] ||
		got[1].Mailbox != lists.ID || got[1].UID != 1 {
		t.Errorf("Deliver = %+v", got)
	}
	var kinds []ChangeKind
	for _, c := range rec.take() {
		kinds = append(kinds, c.Kind)
	}
	if want := fmt.Sprint([]ChangeKind{ChangeAdd, ChangeMailboxCreated, ChangeMailboxCreated, ChangeAdd}); fmt.Sprint(kinds) != want {
		t.Errorf("change kinds = %v, want %v", kinds, want)
	}
	// Delivering again (a crash after commit, before the poller noticed)
	// stores nothing new.
	again, err := s.Deliver(ctx, ds[:1])
	if err != nil || again[0] != got[0] {
		t.Errorf("re-Deliver = %+v, %v; want %+v", again, err, got[0])
	}
	// Same UIDL, other content: a new message.
	other, err := s.Deliver(ctx, []Delivery{{Account: "work", UIDL: "u1", Digest: "dX", User: "alice", Raw: testMessage("X")}})
	if err != nil || other[0].UID != 2 || other[0].Mailbox != inbox.ID {
		t.Errorf("reused UIDL = %+v, %v", other, err)
	}
	if c, _ := s.Counts(ctx, u.ID, inbox.ID); c.Messages != 2 {
		t.Errorf("INBOX has %d messages, want 2", c.Messages)
	}
	led, err := s.Ledger(ctx, "work")
	if err != nil || len(led) != 3 {
		t.Fatalf("Ledger = %+v, %v", led, err)
	}
	if l := led[0]; l.UIDL != "u1" || l.Digest != "d1" || l.Message != got[0].Message || l.Expunged || l.Size != int64(len(ds[0].Raw)) || l.StoredAt.IsZero() {
		t.Errorf("ledger[0] = %+v", l)
	}
	// Expunged locally: the ledger keeps a tombstone and a re-delivery is
	// not stored again.
	if _, err := s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{1}, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u.ID, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	led, _ = s.Ledger(ctx, "work")
	if !led[0].Expunged || led[0].Message != 0 {
		t.Errorf("ledger after expunge = %+v", led[0])
	}
	third, err := s.Deliver(ctx, ds[:1])
	if err != nil || third[0] != (Delivered{}) {
		t.Errorf("Deliver of expunged = %+v, %v", third, err)
	}
	if c, _ := s.Counts(ctx, u.ID, inbox.ID); c.Messages != 1 {
		t.Errorf("INBOX has %d messages, want 1", c.Messages)
	}
	// Unknown user: nothing of the batch is stored.
	_, err = s.Deliver(ctx, []Delivery{
		{Account: "work", UIDL: "u9", Digest: "d9", User: "alice", Raw: testMessage("9")},
		{Account: "work", UIDL: "u10", Digest: "d10", User: "mallory", Raw: testMessage("10")},
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Deliver to unknown user = %v", err)
	}
	if led, _ := s.Ledger(ctx, "work"); len(led) != 3 {
		t.Errorf("ledger grew to %d rows after failed batch", len(led))
	}
	if _, err := s.Deliver(ctx, []Delivery{{Account: "w", User: "alice", Folder: "../x", Raw: testMessage("x")}}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Deliver to bad folder = %v", err)
	}
}

func TestLedgerLifecycle(t *testing.T) {
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(context.Background(), t.TempDir(), Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustUser(t, s, "alice")
	var ds []Delivery
	for i := range 3 {
		ds = append(ds, Delivery{Account: "a", UIDL: fmt.Sprint("u", i), Digest: fmt.Sprint("d", i), User: "alice", Raw: testMessage(fmt.Sprint(i))})
	}
	if _, err := s.Deliver(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSkipped(ctx, "a", "big", "dbig", 1<<30, "too large"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeletePending(ctx, "a", []string{"u0", "u1"}); err != nil {
		t.Fatal(err)
	}
	byUIDL := func() map[string]LedgerEntry {
		led, err := s.Ledger(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]LedgerEntry{}
		for _, e := range led {
			m[e.UIDL] = e
		}
		return m
	}
	m := byUIDL()
	if !m["u0"].DeletePending || !m["u1"].DeletePending || m["u2"].DeletePending {
		t.Errorf("pending marks wrong: %+v", m)
	}
	if b := m["big"]; b.Skipped != "too large" || b.Message != 0 || b.Expunged || b.Size != 1<<30 {
		t.Errorf("skipped row = %+v", b)
	}
	clock = clock.Add(time.Hour)
	if err := s.MarkDeleted(ctx, "a", []string{"u0"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearDeletePending(ctx, "a", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchLedger(ctx, "a", []string{"u1", "u2", "big"}, clock.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	m = byUIDL()
	if u0 := m["u0"]; u0.DeletePending || !u0.DeletedAt.Equal(clock) {
		t.Errorf("u0 = %+v", u0)
	}
	if u1 := m["u1"]; u1.DeletePending || !u1.DeletedAt.IsZero() || !u1.LastSeen.Equal(clock.Add(time.Hour)) {
		t.Errorf("u1 = %+v", u1)
	}
	// Prune: u0 (deleted, last seen at delivery) goes; the others were seen later.
	n, err := s.PruneLedger(ctx, "a", clock.Add(30*time.Minute))
	if err != nil || n != 1 {
		t.Errorf("PruneLedger = %d, %v; want 1", n, err)
	}
	if m = byUIDL(); len(m) != 3 {
		t.Errorf("after prune: %+v", m)
	}
	// A skipped message that is later delivered takes over its row.
	dl, err := s.Deliver(ctx, []Delivery{{Account: "a", UIDL: "big", Digest: "dbig", User: "alice", Raw: testMessage("big")}})
	if err != nil || dl[0].Message == 0 {
		t.Fatalf("Deliver of skipped = %+v, %v", dl, err)
	}
	if b := byUIDL()["big"]; b.Skipped != "" || b.Message != dl[0].Message {
		t.Errorf("big after delivery = %+v", b)
	}
	// RecordSkipped does not touch a stored message's row.
	if err := s.RecordSkipped(ctx, "a", "big", "dbig", 5, "too large"); err != nil {
		t.Fatal(err)
	}
	if b := byUIDL()["big"]; b.Skipped != "" {
		t.Errorf("stored row marked skipped: %+v", b)
	}
	if led, _ := s.Ledger(ctx, "other"); len(led) != 0 {
		t.Errorf("other account sees %d rows", len(led))
	}
}

func TestAccountStatus(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	at := time.Date(2025, 2, 3, 4, 5, 6, 7, time.UTC)
	sts := []AccountStatus{
		{Account: "b", LastAttempt: at, LastError: "dial: refused", LastErrorAt: at, UpstreamCount: 3},
		{Account: "a", LastAttempt: at, LastSuccess: at, Fetched: 10, FetchedBytes: 1000, Skipped: 1,
			Anomalies: IdentityAnomalies{UIDLReused: 1, Renumbered: 2, Twins: 3, Unproven: 4}},
	}
	for _, st := range sts {
		if err := s.SetAccountStatus(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	sts[0].LastError, sts[0].LastErrorAt = "", time.Time{}
	if err := s.SetAccountStatus(ctx, sts[0]); err != nil {
		t.Fatal(err)
	}
	got, err := s.AccountStatuses(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("AccountStatuses = %+v, %v", got, err)
	}
	if got[0] != sts[1] || got[1] != sts[0] {
		t.Errorf("AccountStatuses = %+v, want %+v", got, []AccountStatus{sts[1], sts[0]})
	}
}

// TestMarkGoneAndListed follows one row through MarkGone and MarkListed:
// only the named (UIDL, digest) changes, a gone row keeps the time it was
// last listed (so its retention counts from there), and listing it again
// clears it.
func TestMarkGoneAndListed(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustUser(t, s, "alice")
	if _, err := s.Deliver(ctx, []Delivery{
		{Account: "w", UIDL: "u1", Digest: "d1", User: "alice", Raw: testMessage("1")},
		{Account: "w", UIDL: "u1", Digest: "d2", User: "alice", Raw: testMessage("2")},
	}); err != nil {
		t.Fatal(err)
	}
	stored := now
	if err := s.MarkDeletePending(ctx, "w", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	ref := []LedgerRef{{UIDL: "u1", Digest: "d1"}}
	if err := s.MarkGone(ctx, "w", ref); err != nil {
		t.Fatal(err)
	}
	rows := func() map[string]LedgerEntry {
		t.Helper()
		led, err := s.Ledger(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]LedgerEntry{}
		for _, e := range led {
			out[e.Digest] = e
		}
		return out
	}
	r := rows()
	if !r["d1"].DeletedAt.Equal(stored) || r["d1"].DeletePending {
		t.Errorf("gone row: DeletedAt %v pending %v, want %v and not pending", r["d1"].DeletedAt, r["d1"].DeletePending, stored)
	}
	if !r["d2"].DeletedAt.IsZero() || !r["d2"].DeletePending {
		t.Errorf("the other digest changed: %+v", r["d2"])
	}
	now = now.Add(time.Hour)
	if err := s.MarkGone(ctx, "w", ref); err != nil { // again: keeps its time
		t.Fatal(err)
	}
	if r := rows(); !r["d1"].DeletedAt.Equal(stored) {
		t.Errorf("gone twice: DeletedAt %v, want %v", r["d1"].DeletedAt, stored)
	}
	keys, err := s.LedgerKeys(ctx, "w", LedgerKeyQuery{})
	if err != nil || len(keys) != 2 || !keys[0].Deleted || keys[1].Deleted {
		t.Errorf("LedgerKeys = %+v, %v: want d1 a tombstone, d2 not", keys, err)
	}
	if err := s.MarkListed(ctx, "w", ref, now); err != nil {
		t.Fatal(err)
	}
	if r := rows(); !r["d1"].DeletedAt.IsZero() || !r["d1"].LastSeen.Equal(now) {
		t.Errorf("listed again: DeletedAt %v LastSeen %v, want zero and %v", r["d1"].DeletedAt, r["d1"].LastSeen, now)
	}
}

// TestStageCommitsInCallersOrder stages two batches, commits the later one
// first, and checks that nothing is visible before each Commit and that
// UIDs follow the commit order, not the staging order.
func TestStageCommitsInCallersOrder(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "bob")
	ctx := context.Background()
	rec := record(t, s)
	first, err := s.Stage(ctx, []Delivery{{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("first")}})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	second, err := s.Stage(ctx, []Delivery{{Account: "acct", UIDL: "2", Digest: "d2", User: "bob", Raw: testMessage("second")}})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release()
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 0 {
		t.Fatalf("staged only: %d entries, %v", len(snap.Entries), err)
	}
	if keys, err := s.LedgerKeys(ctx, "acct", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("staged only: ledger %v, %v", keys, err)
	}
	if cs := rec.take(); len(cs) != 0 {
		t.Fatalf("staged only: published %+v", cs)
	}
	out2, err := second.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out1, err := first.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out2[0].UID != 1 || out1[0].UID != 2 {
		t.Fatalf("UIDs: second %d, first %d; want 1 and 2 (commit order)", out2[0].UID, out1[0].UID)
	}
	body, err := s.Body(ctx, u.ID, mb.ID, out1[0].UID)
	if err != nil || string(body) != string(testMessage("first")) {
		t.Fatalf("Body of first = %q, %v", body, err)
	}
	if _, err := first.Commit(ctx); !errors.Is(err, ErrStagedDone) {
		t.Errorf("second Commit = %v, want ErrStagedDone", err)
	}
}

// TestStageRelease checks that a released batch stores nothing, cannot be
// committed afterwards, and that Release after Commit changes nothing.
func TestStageRelease(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "bob")
	ctx := context.Background()
	d := Delivery{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("rel")}
	st, err := s.Stage(ctx, []Delivery{d})
	if err != nil {
		t.Fatal(err)
	}
	st.Release()
	st.Release()
	if _, err := st.Commit(ctx); !errors.Is(err, ErrStagedDone) {
		t.Fatalf("Commit after Release = %v, want ErrStagedDone", err)
	}
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 0 {
		t.Fatalf("after Release: %d entries, %v", len(snap.Entries), err)
	}
	if keys, err := s.LedgerKeys(ctx, "acct", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("after Release: ledger %v, %v", keys, err)
	}
	// The same key can be delivered afterwards, once.
	st, err = s.Stage(ctx, []Delivery{d})
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Commit(ctx)
	st.Release()
	if err != nil || len(out) != 1 || out[0].UID != 1 {
		t.Fatalf("Commit = %+v, %v", out, err)
	}
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 1 {
		t.Fatalf("after Release following Commit: %d entries, %v", len(snap.Entries), err)
	}
}

// TestStageDuplicateAcrossBatches stages the same ledger key in two batches
// at once: the first Commit stores it, the second reports that message.
func TestStageDuplicateAcrossBatches(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "bob")
	ctx := context.Background()
	d := Delivery{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("dup")}
	a, err := s.Stage(ctx, []Delivery{d})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := s.Stage(ctx, []Delivery{d})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	outA, errA := a.Commit(ctx)
	outB, errB := b.Commit(ctx)
	if errA != nil || errB != nil || outA[0] != outB[0] || outA[0].UID != 1 {
		t.Fatalf("Commits = %+v, %v and %+v, %v; want the same delivery twice", outA, errA, outB, errB)
	}
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 1 {
		t.Fatalf("%d entries, %v; want 1", len(snap.Entries), err)
	}
}

// TestStageUnknownUser checks that a batch naming an unknown user fails at
// Commit with ErrNotFound and stores nothing, not even for its known users.
func TestStageUnknownUser(t *testing.T) {
	s := mustOpen(t)
	u := mustUser(t, s, "bob")
	ctx := context.Background()
	st, err := s.Stage(ctx, []Delivery{
		{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("ok")},
		{Account: "acct", UIDL: "2", Digest: "d2", User: "nobody", Raw: testMessage("lost")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	if _, err := st.Commit(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Commit = %v, want ErrNotFound", err)
	}
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 0 {
		t.Fatalf("%d entries, %v; want none", len(snap.Entries), err)
	}
	if keys, err := s.LedgerKeys(ctx, "acct", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("ledger %v, %v; want empty", keys, err)
	}
}

// TestStagedNeverCommitted closes the store with a batch staged and not
// committed (what a crash leaves): after a reopen nothing of it is
// visible, the key is still new, and its bytes are dead space that
// compaction reclaims.
func TestStagedNeverCommitted(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const packMax = 16 << 10
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: packMax, noIndexer: true}), Options{})
	u := mustUser(t, s, "bob")
	big := packMessage("staged", packMax)
	st, err := s.Stage(ctx, []Delivery{{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: big}})
	if err != nil {
		t.Fatal(err)
	}
	staged := packFiles(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
	s = openPacked(t, hooked(t, dir, testHooks{packMaxBytes: packMax, noIndexer: true}), Options{})
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 0 {
		t.Fatalf("after reopen: %d entries, %v", len(snap.Entries), err)
	}
	if keys, err := s.LedgerKeys(ctx, "acct", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("after reopen: ledger %v, %v", keys, err)
	}
	// A new write seals the pack holding the dead record; compaction
	// retires it.
	mustAppend(t, s, u.ID, mb.ID, "next")
	if _, err := s.compact(ctx); err != nil {
		t.Fatal(err)
	}
	if files := packFiles(t, dir); slices.Contains(files, staged[len(staged)-1]) {
		t.Errorf("pack %s of the uncommitted batch survived compaction: %v", staged[len(staged)-1], files)
	}
}

// stagedChildEnv names the data directory of TestStagedCrashChild.
const stagedChildEnv = "POPBRIDGE_STORE_STAGED_CHILD_DIR"

// TestStagedCrashChild is the child of TestStagedCrash: it stages a batch,
// says STAGED and waits, never committing, until it is killed. It does
// nothing unless started by the parent.
func TestStagedCrashChild(t *testing.T) {
	dir := os.Getenv(stagedChildEnv)
	if dir == "" {
		t.Skip("child of TestStagedCrash only")
	}
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fmt.Println("ERROR open:", err)
		os.Exit(2)
	}
	if _, err := s.Stage(ctx, []Delivery{{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("crash")}}); err != nil {
		fmt.Println("ERROR stage:", err)
		os.Exit(2)
	}
	fmt.Println("STAGED")
	io.Copy(io.Discard, os.Stdin) // the parent keeps stdin open and kills the child
	os.Exit(3)
}

// TestStagedCrash SIGKILLs a process holding a staged, uncommitted batch:
// after the crash nothing of it is visible, the ledger does not know its
// key, the database is intact, and the key is delivered normally later.
func TestStagedCrash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "bob")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	child := startChild(t, "TestStagedCrashChild", stagedChildEnv, dir)
	child.expect("STAGED")
	child.kill()
	s = openPacked(t, dir, Options{})
	mb := mustMailbox(t, s, u.ID, Inbox)
	if snap, err := s.Snapshot(ctx, u.ID, mb.ID); err != nil || len(snap.Entries) != 0 {
		t.Fatalf("after the crash: %d entries, %v", len(snap.Entries), err)
	}
	if keys, err := s.LedgerKeys(ctx, "acct", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Fatalf("after the crash: ledger %v, %v", keys, err)
	}
	var res string
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	out, err := s.Deliver(ctx, []Delivery{{Account: "acct", UIDL: "1", Digest: "d1", User: "bob", Raw: testMessage("crash")}})
	if err != nil || len(out) != 1 || out[0].UID == 0 {
		t.Fatalf("Deliver after the crash = %+v, %v", out, err)
	}
}
