package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// deliverGolden delivers every golden parse input (fuzz corpus, realistic
// mail, edge cases) to INBOX of user "ix" and returns the UIDs in order.
func deliverGolden(t *testing.T, s *Store) []UID {
	t.Helper()
	in := goldenInputs(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range in {
			if !yield(k) {
				return
			}
		}
	})
	mustUser(t, s, "ix")
	var ds []Delivery
	for i, name := range names {
		ds = append(ds, Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: name, User: "ix", Raw: in[name]})
	}
	out, err := s.Deliver(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]UID, len(out))
	for i, d := range out {
		uids[i] = d.UID
	}
	return uids
}

func unindexedCount(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM messages WHERE indexed = 0`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// searchProbe are the text searches compared before and after indexing.
var searchProbe = []TextQuery{
	{Kind: TextAll, Needle: "istanbul"},
	{Kind: TextBody, Needle: "the"},
	{Kind: TextBody, Needle: "café"},
	{Kind: TextHeader, Needle: "example"},
	{Kind: TextHeader, Header: "subject", Needle: "edge"},
	{Kind: TextHeader, Header: "from"},
}

// TestUnindexedAnswersLikeIndexed delivers messages of every shape the
// parser knows, reads their metadata and searches them while unindexed
// (parsed on demand), indexes them, and checks that a cold store answers
// exactly the same.
func TestUnindexedAnswersLikeIndexed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	uids := deliverGolden(t, s)
	u := mustUser(t, s, "ix")
	mb := mustMailbox(t, s, u.ID, Inbox)
	if n := unindexedCount(t, s); n != len(uids) {
		t.Fatalf("%d unindexed messages after Deliver, want all %d", n, len(uids))
	}
	before, err := s.Meta(ctx, u.ID, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(uids) {
		t.Fatalf("Meta: %d messages, want %d", len(before), len(uids))
	}
	hits := make([][]UID, len(searchProbe))
	for i, q := range searchProbe {
		if hits[i], err = s.SearchText(ctx, u.ID, mb.ID, q, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(hits[0]) == 0 || len(hits[5]) == 0 || len(hits[5]) == len(uids) {
		t.Fatalf("probe searches found %v / %v: the probes test nothing", hits[0], hits[5])
	}
	if n := unindexedCount(t, s); n != len(uids) {
		t.Fatalf("reads indexed %d messages: they must not write", len(uids)-n)
	}
	n, err := s.indexPending(ctx)
	if err != nil || n != len(uids) {
		t.Fatalf("indexPending = %d, %v; want %d", n, err, len(uids))
	}
	if n := unindexedCount(t, s); n != 0 {
		t.Fatalf("%d messages still unindexed", n)
	}
	if n, err := s.indexPending(ctx); err != nil || n != 0 {
		t.Fatalf("second indexPending = %d, %v; want 0", n, err)
	}
	s.Close()
	// A new Store, so the metadata cache is cold: everything comes from
	// the stored index.
	s = openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{MetaCacheEntries: -1})
	after, err := s.Meta(ctx, u.ID, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if !reflect.DeepEqual(before[i], after[i]) {
			t.Errorf("uid %d: metadata parsed on demand differs from the indexed:\n%+v\n%+v", before[i].UID, before[i], after[i])
		}
	}
	for i, q := range searchProbe {
		got, err := s.SearchText(ctx, u.ID, mb.ID, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, hits[i]) {
			t.Errorf("SearchText(%+v): %v indexed, %v on demand", q, got, hits[i])
		}
	}
}

// TestIndexerRunsAfterDeliveries checks that the background indexer indexes
// delivered messages once deliveries pause, and that their metadata is
// then cached.
func TestIndexerRunsAfterDeliveries(t *testing.T) {
	runs := make(chan int, 64)
	s := openPacked(t, hooked(t, t.TempDir(), testHooks{onIndexed: func(n int, err error) {
		if err != nil {
			t.Errorf("background indexing: %v", err)
		}
		runs <- n
	}}), Options{})
	uids := deliverGolden(t, s)
	total := 0
	deadline := time.After(60 * time.Second)
	for total < len(uids) {
		select {
		case n := <-runs:
			total += n
		case <-deadline:
			t.Fatalf("indexed %d of %d within 60 s", total, len(uids))
		}
	}
	if total != len(uids) {
		t.Errorf("indexed %d, delivered %d", total, len(uids))
	}
	if n := unindexedCount(t, s); n != 0 {
		t.Errorf("%d messages unindexed after the indexer ran", n)
	}
	ids := make([]MessageID, 0, len(uids))
	if err := func() error {
		rows, err := s.rdb.Query(`SELECT id FROM messages ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id MessageID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	}(); err != nil {
		t.Fatal(err)
	}
	infos := make([]*messageInfo, len(ids))
	if hit := s.metaCache.lookup(ids, infos); hit != len(ids) {
		t.Errorf("%d of %d indexed messages in the metadata cache", hit, len(ids))
	}
}
