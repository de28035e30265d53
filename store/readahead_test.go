package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
)

// TestReadAheadScan: Bodies and SearchText read records through a
// read-ahead window. Over a mailbox whose records span several windows and
// packs, every message's bytes are those Body (which reads each record on
// its own) returns, and a damaged record in the middle of a window costs
// only its own message.
func TestReadAheadScan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: 200 << 10}), Options{})
	var tags []string
	for i := range 300 {
		tags = append(tags, fmt.Sprintf("ra%03d", i))
	}
	// 300 × ~3 KB in batches of 50 (a pack is sealed between group
	// commits): several windows, several packs.
	mustUser(t, s, "ra")
	for b := range 6 {
		var ds []Delivery
		for _, tag := range tags[b*50 : b*50+50] {
			ds = append(ds, Delivery{Account: "acct", UIDL: tag, Digest: tag, User: "ra", Raw: packMessage(tag, 3000)})
		}
		if _, err := s.Deliver(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.indexPending(ctx); err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "ra")
	mb := mustMailbox(t, s, u.ID, Inbox)
	if n := len(packFiles(t, dir)); n < 2 {
		t.Fatalf("%d packs, want several", n)
	}
	flipInPacks(t, dir, "mark-ra150-end")

	var all, seen, damaged []UID
	for uid := range UID(300) {
		all = append(all, uid+1)
	}
	err := s.Bodies(ctx, u.ID, mb.ID, all, func(uid UID, raw []byte, bad error) error {
		if bad != nil {
			damaged = append(damaged, uid)
			return nil
		}
		want, err := s.Body(ctx, u.ID, mb.ID, uid)
		if err != nil {
			return fmt.Errorf("Body(%d): %w", uid, err)
		}
		if !bytes.Equal(raw, want) {
			t.Errorf("uid %d: Bodies and Body differ", uid)
		}
		seen = append(seen, uid)
		return nil
	})
	if err != nil {
		t.Fatalf("Bodies: %v", err)
	}
	if len(seen) != 299 || !slices.Equal(damaged, []UID{151}) {
		t.Fatalf("Bodies: %d read, damaged %v; want 299 and [151]", len(seen), damaged)
	}
	for _, tt := range []struct {
		needle string
		want   []UID
	}{
		{"mark-ra149-end", []UID{150}},
		{"mark-ra151-end", []UID{152}},
		{"mark-ra299-end", []UID{300}},
		{"mark-ra000-end", []UID{1}},
	} {
		hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextBody, Needle: tt.needle}, nil)
		if err != nil || !slices.Equal(hits, tt.want) {
			t.Errorf("SearchText %s: %v, %v; want %v", tt.needle, hits, err, tt.want)
		}
	}
	// The body texts are derived from the bytes: the damaged message's
	// cannot be, and only it is skipped.
	hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextBody, Needle: "filler line"}, nil)
	if err != nil || len(hits) != 299 || slices.Contains(hits, 151) {
		t.Errorf("SearchText over all: %d hits, %v; want 299 without 151", len(hits), err)
	}
}

// TestReleaseMemory: ReleaseMemory empties the metadata cache, and Meta
// answers the same afterwards.
func TestReleaseMemory(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	u := mustUser(t, s, "rm")
	mb := mustMailbox(t, s, u.ID, Inbox)
	for i := range 5 {
		mustAppend(t, s, u.ID, mb.ID, fmt.Sprintf("rm%d", i))
	}
	before, err := s.Meta(ctx, u.ID, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _, _ := s.metaCache.stats(); n == 0 {
		t.Fatal("nothing cached before the release")
	}
	s.ReleaseMemory()
	if n, b, _, _ := s.metaCache.stats(); n != 0 || b != 0 {
		t.Fatalf("after ReleaseMemory: %d entries, %d bytes cached", n, b)
	}
	after, err := s.Meta(ctx, u.ID, mb.ID, nil)
	if err != nil || len(after) != len(before) {
		t.Fatalf("Meta after the release: %d, %v", len(after), err)
	}
	for i := range after {
		if after[i].Envelope.Subject != before[i].Envelope.Subject || after[i].Size != before[i].Size {
			t.Errorf("uid %d differs after the release", after[i].UID)
		}
	}
}
