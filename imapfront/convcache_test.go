package imapfront

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

func metaFor(id store.MessageID, subject, subtype string) *store.MessageMeta {
	return &store.MessageMeta{
		Entry:     store.Entry{UID: store.UID(id), Message: id},
		Envelope:  &store.Envelope{Subject: subject},
		Structure: &store.Part{Type: "text", Subtype: subtype, Encoding: "7BIT"},
	}
}

// TestConvCacheBounded: the cache never holds more than its bound, and
// every answer is the conversion of the metadata asked about, also for
// messages that were evicted and come back.
func TestConvCacheBounded(t *testing.T) {
	const bound = 64
	c := newConvCache(bound)
	metas := make([]*store.MessageMeta, 1000)
	for i := range metas {
		metas[i] = metaFor(store.MessageID(i+1), fmt.Sprintf("subject %d", i), "plain")
	}
	for round := range 3 {
		for i, m := range metas {
			got := c.get(m)
			if got.envelope.Subject != m.Envelope.Subject {
				t.Fatalf("round %d message %d: subject %q, want %q", round, i, got.envelope.Subject, m.Envelope.Subject)
			}
			if n := c.len(); n > bound {
				t.Fatalf("round %d: %d entries, bound %d", round, n, bound)
			}
		}
	}
	// A working set within the bound stays cached: the same values come
	// back.
	first := make([]*converted, 20)
	for i := range first {
		first[i] = c.get(metas[i])
	}
	for i := range first {
		if c.get(metas[i]) != first[i] {
			t.Fatalf("message %d converted again", i)
		}
	}
}

// TestConvCacheNoStale: an entry is used only for the very metadata it was
// made from. The same MessageID with other metadata (as another user's
// message would have if an id were ever reused, or after the store reloaded
// it) gets its own conversion, never the cached one.
func TestConvCacheNoStale(t *testing.T) {
	c := newConvCache(16)
	alice := metaFor(7, "alice's secret", "plain")
	if got := c.get(alice); got.envelope.Subject != "alice's secret" {
		t.Fatalf("alice: %q", got.envelope.Subject)
	}
	bob := metaFor(7, "bob's mail", "html")
	got := c.get(bob)
	if got.envelope.Subject != "bob's mail" {
		t.Fatalf("bob got %q", got.envelope.Subject)
	}
	if sp, ok := got.bs.(*imap.BodyStructureSinglePart); !ok || sp.Subtype != "html" {
		t.Fatalf("bob's structure: %#v", got.bs)
	}
	if got := c.get(alice); got.envelope.Subject != "alice's secret" {
		t.Fatalf("alice again: %q", got.envelope.Subject)
	}
	// Disabled cache: plain conversion.
	if got := newConvCache(0).get(bob); got.envelope.Subject != "bob's mail" {
		t.Fatalf("no cache: %q", got.envelope.Subject)
	}
}

// TestFetchHeadersThroughSmallCache: header syncs of more messages than the
// cache holds, by two users with look-alike mail, return each user's own
// envelopes and structures, every time.
func TestFetchHeadersThroughSmallCache(t *testing.T) {
	env := newEnvHook(t, func(s *Server) { s.conv = newConvCache(8) })
	const n = 40
	for i := range n {
		env.deliver("alice", "INBOX", msg(fmt.Sprintf("alice %d", i)))
		if i%2 == 0 {
			env.deliver("bob", "INBOX", multipartMsg)
		} else {
			env.deliver("bob", "INBOX", msg(fmt.Sprintf("bob %d", i)))
		}
	}
	a := env.rawLogin("alice")
	a.ok("SELECT INBOX")
	b := env.rawLogin("bob")
	b.ok("SELECT INBOX")
	for round := range 2 {
		ua := a.ok("FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
		ub := b.ok("FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
		if len(ua) != n || len(ub) != n {
			t.Fatalf("round %d: %d and %d responses", round, len(ua), len(ub))
		}
		for i := range n {
			if !strings.Contains(ua[i], fmt.Sprintf(`"alice %d"`, i)) || !strings.Contains(ua[i], `BODYSTRUCTURE ("text" "plain"`) || strings.Contains(ua[i], `"bob `) {
				t.Fatalf("round %d alice %d: %q", round, i, ua[i])
			}
			wantB := fmt.Sprintf(`"bob %d"`, i)
			if i%2 == 0 {
				wantB = `"mixed" ("boundary" "b1")`
			}
			if !strings.Contains(ub[i], wantB) || strings.Contains(ub[i], `"alice `) {
				t.Fatalf("round %d bob %d: %q lacks %q", round, i, ub[i], wantB)
			}
		}
		if l := env.srv.conv.len(); l > 8 {
			t.Fatalf("cache holds %d entries", l)
		}
	}
}
