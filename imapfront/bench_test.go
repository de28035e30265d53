package imapfront

import (
	"context"
	"fmt"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// benchMailbox fills alice's INBOX with n messages in one Deliver call.
func benchMailbox(b *testing.B, env *testEnv, n int) {
	b.Helper()
	env.user("alice")
	ds := make([]store.Delivery, n)
	for i := range ds {
		ds[i] = store.Delivery{Account: "bench", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: "alice", Folder: "INBOX",
			Raw: []byte(msg(fmt.Sprintf("bench %d", i)) + multipartMsg[len(multipartMsg)-200:])}
	}
	if _, err := env.st.Deliver(context.Background(), ds); err != nil {
		b.Fatal(err)
	}
}

// benchSelected fills alice's INBOX with n messages, logs in over a raw
// socket, selects INBOX and resets the benchmark timer.
func benchSelected(b *testing.B, n int) *rawClient {
	b.Helper()
	env := newEnv(b)
	benchMailbox(b, env, n)
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	b.ResetTimer()
	return c
}

// BenchmarkFetchHeaderSync is a client's header sync of a 1000-message
// mailbox: FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
// BODYSTRUCTURE), over a raw socket.
func BenchmarkFetchHeaderSync(b *testing.B) {
	const n = 1000
	c := benchSelected(b, n)
	for i := 0; i < b.N; i++ {
		if u := c.ok("FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"); len(u) != n {
			b.Fatalf("%d responses", len(u))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}

// BenchmarkFetchBodies fetches every body of a 1000-message mailbox.
func BenchmarkFetchBodies(b *testing.B) {
	const n = 1000
	c := benchSelected(b, n)
	for i := 0; i < b.N; i++ {
		if u := c.ok("FETCH 1:* (BODY.PEEK[])"); len(u) != n {
			b.Fatalf("%d responses", len(u))
		}
	}
}

// BenchmarkStoreAll sets and clears a flag on every message.
func BenchmarkStoreAll(b *testing.B) {
	const n = 1000
	c := benchSelected(b, n)
	for i := 0; i < b.N; i++ {
		op := "+"
		if i%2 == 1 {
			op = "-"
		}
		c.ok("UID STORE 1:* %sFLAGS.SILENT (\\Flagged)", op)
	}
}

// BenchmarkFetchFlagsSync is every client's resync of a 10,000-message
// mailbox: UID FETCH 1:* (FLAGS), answered from the mailbox state.
func BenchmarkFetchFlagsSync(b *testing.B) {
	const n = 10_000
	c := benchSelected(b, n)
	for i := 0; i < b.N; i++ {
		if u := c.ok("UID FETCH 1:* (FLAGS)"); len(u) != n {
			b.Fatalf("%d responses", len(u))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}

// BenchmarkFetchHeaderFields is a Thunderbird-style header sync of a
// 10,000-message mailbox: UID FETCH 1:* (RFC822.SIZE FLAGS
// BODY.PEEK[HEADER.FIELDS (…)]), which reads every message's bytes.
func BenchmarkFetchHeaderFields(b *testing.B) {
	const n = 10_000
	c := benchSelected(b, n)
	for i := 0; i < b.N; i++ {
		if u := c.ok("UID FETCH 1:* (RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])"); len(u) != n {
			b.Fatalf("%d responses", len(u))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}
