package imapfront

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// BenchmarkFetchBodiesLarge fetches every body of a 2,000-message mailbox
// of ≈ 50 KB messages, the shape of a client's first full download.
func BenchmarkFetchBodiesLarge(b *testing.B) {
	env := newEnv(b)
	const n = 2000
	env.user("alice")
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 1) + "\r\n"
	filler := strings.Repeat(line, 50_000/len(line))
	for i := 0; i < n; i += 250 {
		ds := make([]store.Delivery, 0, 250)
		for j := i; j < min(n, i+250); j++ {
			ds = append(ds, store.Delivery{Account: "bench", UIDL: fmt.Sprint(j), Digest: fmt.Sprint(j), User: "alice", Folder: "INBOX",
				Raw: []byte(msg(fmt.Sprintf("bench %d", j)) + filler)})
		}
		if _, err := env.st.Deliver(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
	}
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if u := c.ok("FETCH 1:* (BODY.PEEK[])"); len(u) != n {
			b.Fatalf("%d responses", len(u))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}
