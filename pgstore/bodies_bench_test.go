package pgstore

import (
	"context"
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
	var total int64
	u, mb, uids := benchInbox(b, s, 400, func(i int) []byte {
		n := 25 << 10
		if i%20 == 7 {
			n = 300<<10 + (i/20)*(50<<10)
		}
		total += int64(n)
		return rawOfSize(n, uint64(i))
	})
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var got int64
		for i := 0; i < len(uids); i += 40 {
			err := s.Bodies(ctx, u, mb.ID, uids[i:min(i+40, len(uids))], func(_ store.UID, raw []byte, _ error) error {
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
