package pgstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func delivery(account, uidl, user, folder, subject string) store.Delivery {
	return store.Delivery{Account: account, UIDL: uidl, Digest: "d-" + uidl, User: user, Folder: folder, Raw: msg(subject, "body of "+subject)}
}

func testDeliver(t *testing.T, e *env) {
	ctx := context.Background()
	clock := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	s, err := Open(ctx, e.dsn, Options{NodeName: "a", Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := mustUser(t, s, "bob").ID

	ds := []store.Delivery{
		delivery("acct", "u1", "bob", "", "one"),
		delivery("acct", "u2", "bob", "Lists/Go", "two"),
		delivery("acct", "u3", "bob", "INBOX", "three"),
		delivery("acct", "u1", "bob", "", "one"), // the same key twice in a batch
	}
	got, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, u, store.Inbox)
	lists := mustMailbox(t, s, u, "Lists/Go")
	if len(got) != 4 || got[0].Mailbox != inbox.ID || got[0].UID != 1 || got[2].UID != 2 || got[1].Mailbox != lists.ID || got[1].UID != 1 || got[3] != got[0] {
		t.Errorf("delivered %+v", got)
	}
	if c, _ := s.Counts(ctx, u, inbox.ID); c.Messages != 2 {
		t.Errorf("INBOX has %d messages, want 2", c.Messages)
	}
	// Again: nothing stored twice, the existing messages reported.
	again, err := s.Deliver(ctx, ds[:3])
	if err != nil || !slices.Equal(again, got[:3]) {
		t.Errorf("redelivery = %+v, %v; want %+v", again, err, got[:3])
	}
	// Expunged locally: not stored again, zero Delivered.
	if _, err := s.UpdateFlags(ctx, u, inbox.ID, []store.UID{1}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	if again, err = s.Deliver(ctx, ds[:1]); err != nil || again[0] != (store.Delivered{}) {
		t.Errorf("delivery of an expunged message = %+v, %v", again, err)
	}
	// An unknown user fails the whole batch.
	before := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages")
	if _, err := s.Deliver(ctx, []store.Delivery{delivery("acct", "u9", "bob", "", "nine"), delivery("acct", "u8", "nobody", "", "x")}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: err = %v", err)
	}
	if after := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages"); after != before {
		t.Errorf("failed batch stored something: %s messages, was %s", after, before)
	}
	if _, err := s.Deliver(ctx, []store.Delivery{{Account: "a", UIDL: "x", User: "bob", Folder: "bad//name", Raw: msg("x", "y")}}); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("invalid folder: err = %v", err)
	}

	// Skipped, then delivered: stored and the mark cleared.
	if err := s.RecordSkipped(ctx, "acct", "big", "d-big", 1<<30, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSkipped(ctx, "acct", "u2", "d-u2", 5, "too large"); err != nil {
		t.Fatal(err)
	}
	led, err := s.Ledger(ctx, "acct")
	if err != nil {
		t.Fatal(err)
	}
	if len(led) != 4 || led[3].UIDL != "big" || led[3].Skipped != "skipped" || led[1].Skipped != "" || led[0].Message != 0 || !led[0].Expunged {
		t.Errorf("ledger %+v", led)
	}
	if !led[1].StoredAt.Equal(clock.Truncate(time.Microsecond)) || !led[1].LastSeen.Equal(led[1].StoredAt) || led[1].Message != got[1].Message {
		t.Errorf("ledger row u2 %+v", led[1])
	}
	big := store.Delivery{Account: "acct", UIDL: "big", Digest: "d-big", User: "bob", Raw: msg("big", "now fetched")}
	if dl, err := s.Deliver(ctx, []store.Delivery{big}); err != nil || dl[0].UID == 0 {
		t.Errorf("deliver skipped = %+v, %v", dl, err)
	}
	led, _ = s.Ledger(ctx, "acct")
	if led[3].Skipped != "" || led[3].Message == 0 {
		t.Errorf("skipped row after delivery %+v", led[3])
	}

	// Stage then Commit; Release of an uncommitted batch stores nothing.
	st, err := s.Stage(ctx, []store.Delivery{delivery("acct", "u5", "bob", "", "five")})
	if err != nil {
		t.Fatal(err)
	}
	st.Release()
	if _, err := st.Commit(ctx); !errors.Is(err, ErrStagedDone) {
		t.Errorf("Commit after Release: err = %v, want ErrStagedDone", err)
	}
	empty, err := s.Stage(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dl, err := empty.Commit(ctx); err != nil || dl != nil {
		t.Errorf("empty batch: %v, %v", dl, err)
	}
	st, err = s.Stage(ctx, []store.Delivery{delivery("acct", "u6", "bob", "", "six"), delivery("acct", "u7", "bob", "", "seven")})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := st.Commit(ctx)
	if err != nil || len(dl) != 2 || dl[1].UID != dl[0].UID+1 {
		t.Errorf("commit = %+v, %v", dl, err)
	}
	st.Release() // no-op after Commit
	if ks, _ := s.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{}); len(ks) != 6 {
		t.Errorf("ledger has %d keys, want 6 (u5 was released)", len(ks))
	}
}

func testLedger(t *testing.T, e *env) {
	ctx := context.Background()
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	s, err := Open(ctx, e.dsn, Options{NodeName: "a", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustUser(t, s, "bob")
	var ds []store.Delivery
	for _, id := range []string{"c", "a", "b", "d"} {
		ds = append(ds, delivery("acct", id, "bob", "", id))
	}
	if _, err := s.Deliver(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, []store.Delivery{delivery("other", "a", "bob", "", "other-a")}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if err := s.MarkDeletePending(ctx, "acct", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleted(ctx, "acct", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearDeletePending(ctx, "acct", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	seen := clock.Add(time.Minute)
	if err := s.TouchLedger(ctx, "acct", []string{"c"}, seen); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkGone(ctx, "acct", []store.LedgerRef{{UIDL: "d", Digest: "d-d"}, {UIDL: "c", Digest: "wrong"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeletePending(ctx, "acct", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{SeenBefore: seen, PruneBefore: clock.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, k := range keys {
		order = append(order, k.UIDL)
	}
	if !slices.Equal(order, []string{"a", "b", "c", "d"}) {
		t.Fatalf("keys in order %v", order)
	}
	a, b, c, d := keys[0], keys[1], keys[2], keys[3]
	if !a.Deleted || a.DeletePending || !a.Prunable || !a.Stale {
		t.Errorf("a (deleted) %+v", a)
	}
	if b.Deleted || !b.DeletePending || b.Prunable {
		t.Errorf("b (delete pending) %+v", b)
	}
	if c.Deleted || !c.Stale || !c.Prunable {
		t.Errorf("c (touched at SeenBefore: stale) %+v", c)
	}
	if !d.Deleted || d.Expunged || d.Size == 0 || !d.StoredAt.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("d (gone) %+v", d)
	}
	led, _ := s.Ledger(ctx, "acct")
	for _, r := range led {
		if r.UIDL == "d" && !r.DeletedAt.Equal(r.LastSeen) {
			t.Errorf("gone row's DeletedAt %v, want its LastSeen %v", r.DeletedAt, r.LastSeen)
		}
		if r.UIDL == "a" && !r.DeletedAt.Equal(clock) {
			t.Errorf("deleted row's DeletedAt %v, want %v", r.DeletedAt, clock)
		}
	}
	if err := s.MarkListed(ctx, "acct", []store.LedgerRef{{UIDL: "d", Digest: "d-d"}}, clock); err != nil {
		t.Fatal(err)
	}
	if keys, _ = s.LedgerKeys(ctx, "acct", store.LedgerKeyQuery{}); keys[3].Deleted || keys[3].Stale || keys[0].Prunable {
		t.Errorf("after MarkListed (zero query): %+v", keys)
	}
	n, err := s.PruneLedger(ctx, "acct", clock.Add(24*time.Hour))
	if err != nil || n != 3 {
		t.Errorf("prune = %d, %v; want 3 (all but the pending b)", n, err)
	}

	// Status and renames.
	st := store.AccountStatus{Account: "acct", LastAttempt: clock, LastError: "boom", Fetched: 4, FetchedBytes: 400,
		Anomalies: store.IdentityAnomalies{UIDLReused: 1, Twins: 2}}
	if err := s.SetAccountStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Fetched = 5
	if err := s.SetAccountStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	sts, err := s.AccountStatuses(ctx)
	if err != nil || len(sts) != 1 || sts[0] != st {
		t.Errorf("statuses %+v, %v; want [%+v]", sts, err, st)
	}
	if _, err := s.RenameAccount(ctx, "x", "x"); err == nil {
		t.Errorf("rename to itself accepted")
	}
	moved, err := s.RenameAccount(ctx, "acct", "other")
	if err != nil || moved != 1 {
		t.Errorf("rename = %d, %v; want 1 row", moved, err)
	}
	accts, err := s.LedgerAccounts(ctx)
	if err != nil || len(accts) != 1 || accts["other"] != 2 {
		t.Errorf("ledger accounts %v, %v", accts, err)
	}
	if sts, _ = s.AccountStatuses(ctx); len(sts) != 1 || sts[0].Account != "other" {
		t.Errorf("status after rename %+v", sts)
	}
}
