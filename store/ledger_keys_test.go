package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// keyFromEntry is what LedgerKeys must return for a row that Ledger returns
// as e, written out from the documented semantics.
func keyFromEntry(e LedgerEntry, q LedgerKeyQuery) LedgerKey {
	seen := e.LastSeen
	if seen.IsZero() {
		seen = e.StoredAt
	}
	return LedgerKey{
		UIDL: e.UIDL, Digest: e.Digest, Size: e.Size, StoredAt: e.StoredAt, Skipped: e.Skipped,
		Expunged: e.Expunged, DeletePending: e.DeletePending, Deleted: !e.DeletedAt.IsZero(),
		Stale: e.LastSeen.IsZero() || (!q.SeenBefore.IsZero() && !e.LastSeen.After(q.SeenBefore)),
		Prunable: !q.PruneBefore.IsZero() && !e.DeletePending && seen.Before(q.PruneBefore) &&
			(e.DeletedAt.IsZero() || e.DeletedAt.Before(q.PruneBefore)),
	}
}

// ledgerZoo fills account "a" of a store with one row of every kind a poll
// meets, at distinct times (each step advances the clock by an hour), and a
// row of account "b" under a UIDL that "a" uses too.
func ledgerZoo(t *testing.T) (*Store, func() time.Time) {
	t.Helper()
	var mu sync.Mutex
	clock := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	step := func() { mu.Lock(); clock = clock.Add(time.Hour); mu.Unlock() }
	s, err := Open(context.Background(), t.TempDir(), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	deliver := func(account, uidl, digest string) Delivered {
		t.Helper()
		dl, err := s.Deliver(ctx, []Delivery{{Account: account, UIDL: uidl, Digest: digest, User: "alice", Raw: testMessage(account + uidl + digest)}})
		must(err)
		step()
		return dl[0]
	}
	// Delivered in reverse UIDL order, so that recording order is not the
	// order LedgerKeys promises.
	deliver("a", "u9-live", "d9")
	deliver("a", "u8-reused", "d8a")
	deliver("a", "u8-reused", "d8b") // a reused UIDL: two rows
	gone := deliver("a", "u7-expunged", "d7")
	deliver("a", "u6-pending", "d6")
	deliver("a", "u5-deleted", "d5")
	deliver("a", "u4-neverseen", "d4")
	deliver("b", "u9-live", "d9")
	must(s.RecordSkipped(ctx, "a", "u3-toolarge", "", 1<<30, "too large"))
	step()
	must(s.RecordSkipped(ctx, "a", "u2-dup", "d9", 100, "duplicate of u9-live"))
	step()

	inbox := mustMailbox(t, s, u.ID, "INBOX")
	snap, err := s.Snapshot(ctx, u.ID, inbox.ID)
	must(err)
	for _, e := range snap.Entries {
		if e.Message == gone.Message {
			_, err := s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{e.UID}, FlagsAdd, []string{FlagDeleted})
			must(err)
		}
	}
	_, err = s.Expunge(ctx, u.ID, inbox.ID, nil)
	must(err)
	must(s.MarkDeletePending(ctx, "a", []string{"u6-pending", "u5-deleted"}))
	step()
	must(s.MarkDeleted(ctx, "a", []string{"u5-deleted"}))
	step()
	must(s.TouchLedger(ctx, "a", []string{"u4-neverseen"}, time.Time{})) // LastSeen NULL
	must(s.TouchLedger(ctx, "a", []string{"u9-live", "u2-dup"}, now()))
	step()
	return s, now
}

// TestLedgerKeysMatchLedger pins LedgerKeys to Ledger: the same rows, the
// same fields, Stale and Prunable as documented, sorted by UIDL and digest,
// for thresholds before, between and after the rows' times.
func TestLedgerKeysMatchLedger(t *testing.T) {
	s, now := ledgerZoo(t)
	ctx := context.Background()
	full, err := s.Ledger(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 9 {
		t.Fatalf("zoo has %d rows, want 9", len(full))
	}
	byKind := map[string]LedgerEntry{}
	for _, e := range full {
		byKind[e.UIDL+"/"+e.Digest] = e
	}
	// The zoo holds what it claims to (otherwise the comparison proves
	// little).
	if e := byKind["u7-expunged/d7"]; !e.Expunged {
		t.Errorf("expunged row = %+v", e)
	}
	if e := byKind["u6-pending/d6"]; !e.DeletePending {
		t.Errorf("pending row = %+v", e)
	}
	if e := byKind["u5-deleted/d5"]; e.DeletedAt.IsZero() || e.DeletePending {
		t.Errorf("deleted row = %+v", e)
	}
	if e := byKind["u4-neverseen/d4"]; !e.LastSeen.IsZero() {
		t.Errorf("never-seen row = %+v", e)
	}
	if e := byKind["u3-toolarge/"]; e.Skipped != "too large" || e.Expunged {
		t.Errorf("skipped row = %+v", e)
	}

	start := full[0].StoredAt
	end := now()
	var queries []LedgerKeyQuery
	for at := start.Add(-time.Hour); !at.After(end.Add(time.Hour)); at = at.Add(30 * time.Minute) {
		queries = append(queries, LedgerKeyQuery{SeenBefore: at, PruneBefore: at})
		queries = append(queries, LedgerKeyQuery{SeenBefore: at, PruneBefore: end.Add(start.Sub(at))})
	}
	queries = append(queries, LedgerKeyQuery{}, LedgerKeyQuery{SeenBefore: end}, LedgerKeyQuery{PruneBefore: end})
	sawStale, sawFresh, sawPrunable := false, false, false
	for _, q := range queries {
		t.Run(fmt.Sprintf("seen<=%s prune<%s", q.SeenBefore.Format(time.TimeOnly), q.PruneBefore.Format(time.TimeOnly)), func(t *testing.T) {
			keys, err := s.LedgerKeys(ctx, "a", q)
			if err != nil {
				t.Fatal(err)
			}
			var want []LedgerKey
			for _, e := range full {
				want = append(want, keyFromEntry(e, q))
			}
			slices.SortFunc(want, func(a, b LedgerKey) int {
				return cmp.Or(cmp.Compare(a.UIDL, b.UIDL), cmp.Compare(a.Digest, b.Digest))
			})
			if len(keys) != len(want) {
				t.Fatalf("LedgerKeys returned %d rows, want %d", len(keys), len(want))
			}
			for i := range want {
				if !keys[i].StoredAt.Equal(want[i].StoredAt) {
					t.Errorf("row %d StoredAt = %v, want %v", i, keys[i].StoredAt, want[i].StoredAt)
				}
				keys[i].StoredAt = want[i].StoredAt
				if keys[i] != want[i] {
					t.Errorf("row %d = %+v\nwant    %+v", i, keys[i], want[i])
				}
				sawStale = sawStale || want[i].Stale
				sawFresh = sawFresh || !want[i].Stale
				sawPrunable = sawPrunable || want[i].Prunable
			}
		})
	}
	if !sawStale || !sawFresh || !sawPrunable {
		t.Errorf("thresholds never exercised both ways: stale %v, fresh %v, prunable %v", sawStale, sawFresh, sawPrunable)
	}
	if keys, err := s.LedgerKeys(ctx, "nobody", LedgerKeyQuery{}); err != nil || len(keys) != 0 {
		t.Errorf("LedgerKeys of an unknown account = %v, %v", keys, err)
	}
}

// TestLedgerKeysPrunableIsWhatPruneDrops checks Prunable against what
// PruneLedger actually drops, for each threshold.
func TestLedgerKeysPrunableIsWhatPruneDrops(t *testing.T) {
	s0, now := ledgerZoo(t)
	ctx := context.Background()
	full, err := s0.Ledger(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	end := now()
	for at := full[0].StoredAt; !at.After(end.Add(time.Hour)); at = at.Add(2 * time.Hour) {
		t.Run(at.Format(time.TimeOnly), func(t *testing.T) {
			s, _ := ledgerZoo(t)
			keys, err := s.LedgerKeys(ctx, "a", LedgerKeyQuery{PruneBefore: at})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, k := range keys {
				if k.Prunable {
					want = append(want, k.UIDL+"/"+k.Digest)
				}
			}
			n, err := s.PruneLedger(ctx, "a", at)
			if err != nil || n != len(want) {
				t.Fatalf("PruneLedger = %d, %v; Prunable rows %v", n, err, want)
			}
			after, err := s.LedgerKeys(ctx, "a", LedgerKeyQuery{})
			if err != nil {
				t.Fatal(err)
			}
			var dropped []string
			for _, k := range keys {
				if !slices.ContainsFunc(after, func(a LedgerKey) bool { return a.UIDL == k.UIDL && a.Digest == k.Digest }) {
					dropped = append(dropped, k.UIDL+"/"+k.Digest)
				}
			}
			if !slices.Equal(dropped, want) {
				t.Errorf("PruneLedger dropped %v, Prunable said %v", dropped, want)
			}
			if b, _ := s.LedgerKeys(ctx, "b", LedgerKeyQuery{}); len(b) != 1 {
				t.Errorf("account b has %d rows after pruning a, want 1", len(b))
			}
		})
	}
}
