package pgstore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testMetaBrief: MetaBrief lists what Meta does (UIDs, message ids, flags,
// modseqs, dates with their zones, sizes) for every selection, without
// envelope or structure, for indexed and not yet indexed messages alike,
// and caches nothing.
func testMetaBrief(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.openWith(t, Options{NodeName: "brief", MetaCacheEntries: -1})
	u := mustUser(t, s, "brief").ID
	inbox := mustMailbox(t, s, u, store.Inbox)
	other, err := s.CreateMailbox(ctx, u, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	flags := [][]string{nil, {store.FlagSeen}, {store.FlagSeen, "$Work"}, {`\Flagged`}}
	var uids []store.UID
	for i := range 12 {
		date := time.Date(2025, 1, 2, 3, 4, i, 0, time.FixedZone("", (i%5-2)*3600+1800))
		ent, _, err := s.Append(ctx, u, inbox.ID, msg("m"+string(rune('a'+i)), strings.Repeat("x", i*1000)), flags[i%len(flags)], date)
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, ent.UID)
	}
	mustAppend(t, s, u, other.ID, msg("elsewhere", "x"))
	// Two expunged from the middle: a gap in the UIDs.
	if _, err := s.UpdateFlags(ctx, u, inbox.ID, uids[4:6], store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u, inbox.ID, uids[4:6]); err != nil {
		t.Fatal(err)
	}
	for _, sel := range [][]store.UID{nil, uids[1:3], {uids[0], uids[5], uids[len(uids)-1], 99999}, {99999}, {}, uids} {
		full, err := s.Meta(ctx, u, inbox.ID, sel)
		if err != nil {
			t.Fatal(err)
		}
		brief, err := s.MetaBrief(ctx, u, inbox.ID, sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(brief) != len(full) {
			t.Fatalf("selection %v: MetaBrief %d messages, Meta %d", sel, len(brief), len(full))
		}
		for i, b := range brief {
			f := full[i]
			_, bz := b.InternalDate.Zone()
			_, fz := f.InternalDate.Zone()
			if b.UID != f.UID || b.Message != f.Message || !slices.Equal(b.Flags, f.Flags) || b.ModSeq != f.ModSeq ||
				!b.InternalDate.Equal(f.InternalDate) || bz != fz || b.Size != f.Size || b.Envelope != nil || b.Structure != nil || b.Damaged {
				t.Errorf("selection %v, uid %d: MetaBrief %+v, Meta %+v", sel, f.UID, b, f)
			}
		}
	}
	if got, err := s.MetaBrief(ctx, u, inbox.ID, nil); err != nil || len(got) != len(uids)-2 {
		t.Errorf("MetaBrief of all: %d messages, %v; want %d", len(got), err, len(uids)-2)
	}
	if _, err := s.MetaBrief(ctx, mustUser(t, s, "stranger").ID, inbox.ID, nil); err == nil {
		t.Errorf("another user's mailbox listed")
	}
}
