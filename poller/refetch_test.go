package poller

import (
	"bytes"
	"context"
	"testing"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// TestRefetch: only a message whose UIDL and whole-message digest both
// match the ledger's is handed over; a reused UIDL with other bytes, or a
// message gone from the server, is not; nothing is deleted upstream.
func TestRefetch(t *testing.T) {
	srv := pop3mem.NewServer()
	t.Cleanup(srv.Close)
	one, two := message(1), message(2)
	srv.AddMessageUIDL("u1", one)
	srv.AddMessageUIDL("u2", two)
	p := New(Options{})
	wants := []RefetchWant{
		{UIDL: "u1", Digest: contentDigest(one)},        // still there
		{UIDL: "u2", Digest: contentDigest(message(9))}, // UIDL reused by other bytes
		{UIDL: "gone", Digest: contentDigest(message(3))},
	}
	var got []RefetchWant
	n, err := p.Refetch(context.Background(), testAccount(srv), wants, func(w RefetchWant, raw []byte) error {
		if !bytes.Equal(raw, one) {
			t.Errorf("Refetch handed over other bytes for %q", w.UIDL)
		}
		got = append(got, w)
		return nil
	})
	if err != nil || n != 1 || len(got) != 1 || got[0] != wants[0] {
		t.Errorf("Refetch: %d, %v, %v; want only u1", n, err, got)
	}
	if d := srv.Deleted(); len(d) != 0 || srv.Count("DELE") != 0 {
		t.Errorf("Refetch deleted upstream: %v", d)
	}
}
