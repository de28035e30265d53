package store

import (
	"context"
	"slices"
	"testing"
)

// TestRenameAccount: the ledger rows and status of the old name move to
// the new one in one step; rows the new name already has are kept once;
// a second rename moves nothing; other accounts are untouched.
func TestRenameAccount(t *testing.T) {
	s, _ := ledgerZoo(t) // account "a": 9 rows; "b": 1 row (u9-live/d9, which "a" has too)
	ctx := context.Background()
	if err := s.SetAccountStatus(ctx, AccountStatus{Account: "a", Fetched: 7, UpstreamCount: 5}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Ledger(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}

	moved, err := s.RenameAccount(ctx, "a", "work")
	if err != nil {
		t.Fatal(err)
	}
	if moved != 9 {
		t.Errorf("moved %d rows, want 9", moved)
	}
	after, err := s.Ledger(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		before[i].Account = "work"
	}
	if !slices.EqualFunc(before, after, func(x, y LedgerEntry) bool { return x == y }) {
		t.Errorf("ledger after rename differs:\nbefore %+v\nafter  %+v", before, after)
	}
	counts, err := s.LedgerAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 2 || counts["work"] != 9 || counts["b"] != 1 {
		t.Errorf("LedgerAccounts = %v, want work:9 b:1", counts)
	}
	sts, err := s.AccountStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].Account != "work" || sts[0].Fetched != 7 {
		t.Errorf("statuses after rename: %+v", sts)
	}

	// Again: nothing to move.
	if moved, err := s.RenameAccount(ctx, "a", "work"); err != nil || moved != 0 {
		t.Errorf("second rename: moved %d, %v", moved, err)
	}

	// Merging into a name that has rows: "b"'s row for u9-live/d9 is
	// already known to "work", so it is dropped, not duplicated.
	moved, err = s.RenameAccount(ctx, "b", "work")
	if err != nil {
		t.Fatal(err)
	}
	counts, _ = s.LedgerAccounts(ctx)
	if moved != 0 || len(counts) != 1 || counts["work"] != 9 {
		t.Errorf("merge: moved %d, counts %v; want 0 and work:9", moved, counts)
	}
	if _, err := s.RenameAccount(ctx, "work", "work"); err == nil {
		t.Error("rename to the same name accepted")
	}
}
