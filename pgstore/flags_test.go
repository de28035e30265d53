package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// testFlagsStayInPage: mailbox_messages keeps room in its pages (migration
// 0004), so a STORE rewrites each changed row in its own page (a HOT
// update, no index entry added) instead of moving it: with full pages
// every changed row would land elsewhere. The changed rows read back with
// their new flags and modseq, the others unchanged.
func testFlagsStayInPage(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	u := mustUser(t, s, "bob")
	const n = 400
	ds := make([]store.Delivery, n)
	for i := range ds {
		ds[i] = store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: fmt.Sprint("d", i), User: "bob",
			Raw: msg(fmt.Sprint("page ", i), "body\n")}
	}
	if _, err := s.Deliver(ctx, ds); err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, u.ID, store.Inbox)
	blocks := func() map[string]string {
		out := map[string]string{}
		rows := e.srv.Psql(t, e.db, fmt.Sprintf(
			`SELECT uid || ' ' || (ctid::text::point)[0] FROM mailbox_messages WHERE mailbox_id = %d`, inbox.ID))
		for _, l := range strings.Split(strings.TrimSpace(rows), "\n") {
			uid, blk, _ := strings.Cut(l, " ")
			out[uid] = blk
		}
		return out
	}
	before := blocks()
	if len(before) != n {
		t.Fatalf("%d rows, want %d", len(before), n)
	}
	if pages := len(slices.Compact(slices.Sorted(func(yield func(string) bool) {
		for _, b := range before {
			if !yield(b) {
				return
			}
		}
	}))); pages < 3 {
		t.Fatalf("%d rows on %d pages: too few pages for the test", n, pages)
	}
	// A quarter of the rows, spread over every page.
	var uids []store.UID
	for uid := store.UID(1); uid <= n; uid += 4 {
		uids = append(uids, uid)
	}
	got, err := s.UpdateFlags(ctx, u.ID, inbox.ID, uids, store.FlagsAdd, []string{store.FlagSeen, "Work"})
	if err != nil || len(got) != len(uids) {
		t.Fatalf("UpdateFlags: %d entries, %v", len(got), err)
	}
	after := blocks()
	moved := 0
	for _, uid := range uids {
		if after[fmt.Sprint(uid)] != before[fmt.Sprint(uid)] {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d of %d changed rows moved to another page (no room left in theirs)", moved, len(uids))
	}
	snap, err := s.Snapshot(ctx, u.ID, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range snap.Entries {
		want := []string{}
		if en.UID%4 == 1 {
			want = []string{"Work", store.FlagSeen}
		}
		if !slices.Equal(en.Flags, want) {
			t.Fatalf("UID %d: flags %q, want %q", en.UID, en.Flags, want)
		}
		if changed := en.ModSeq == snap.Mailbox.HighestModSeq; changed != (en.UID%4 == 1) {
			t.Fatalf("UID %d: modseq %d (highest %d)", en.UID, en.ModSeq, snap.Mailbox.HighestModSeq)
		}
	}
}
