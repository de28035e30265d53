package pgstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// BenchmarkBodies measures Bodies over a 400-message mailbox whose bytes
// are, like the benchmark corpus's (docs/BENCHMARKS.md, "Body fetch"),
// mostly in a few large messages: 380 of 25 KB and 20 of 0.3–1.25 MB,
// 25 MB in all. Each pass reads them all in calls of 40 UIDs, as
// imapfront reads a large FETCH one chunk per call; allocs and B/op show
// what the calls allocate besides the bytes they hand out (the buffers
// are kept across calls, bodybuf.go).
func BenchmarkBodies(b *testing.B) {
	e := benchEnv(b)
	s := benchOpen(b, e, "a")
	ctx := context.Background()
	u, err := s.EnsureUser(ctx, "bob")
	if err != nil {
		b.Fatal(err)
	}
	var (
		uids  []store.UID
		total int64
	)
	for start := 0; start < 400; start += 50 {
		var ds []store.Delivery
		for i := start; i < start+50; i++ {
			n := 25 << 10
			if i%20 == 7 {
				n = 300<<10 + (i/20)*(50<<10)
			}
			ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: "d", User: "bob", Raw: rawOfSize(n, uint64(i))})
			total += int64(n)
		}
		dl, err := s.Deliver(ctx, ds)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range dl {
			uids = append(uids, d.UID)
		}
	}
	mb, err := s.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var got int64
		for i := 0; i < len(uids); i += 40 {
			err := s.Bodies(ctx, u.ID, mb.ID, uids[i:min(i+40, len(uids))], func(_ store.UID, raw []byte, _ error) error {
				got += int64(len(raw))
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		if got != total {
			b.Fatalf("read %d bytes, want %d", got, total)
		}
	}
}
