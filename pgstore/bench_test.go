package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// benchEnv starts a private PostgreSQL (with fsync, as in production) for
// one benchmark.
func benchEnv(b *testing.B) *env {
	srv := pgtest.Start(b, pgtest.Options{})
	return &env{srv: srv, db: srv.Database, dsn: srv.DSN()}
}

func benchOpen(b *testing.B, e *env, node string) *Store {
	s, err := Open(context.Background(), e.dsn, Options{NodeName: node, PollInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchMessage is a message of about 4 KB.
func benchMessage(i int) []byte {
	return msg(fmt.Sprint("bench ", i), strings.Repeat(fmt.Sprintf("line %d of a message body that goes on a while\n", i), 80))
}

// BenchmarkDeliver measures durable delivery in batches of 100 messages
// of about 4 KB (one transaction, one fsync each): msgs/s.
func BenchmarkDeliver(b *testing.B) {
	e := benchEnv(b)
	s := benchOpen(b, e, "a")
	if _, err := s.EnsureUser(context.Background(), "bob"); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	n := 0
	b.ResetTimer()
	for b.Loop() {
		ds := make([]store.Delivery, batch)
		for i := range ds {
			ds[i] = store.Delivery{Account: "acct", UIDL: fmt.Sprint(n), Digest: fmt.Sprint("d", n), User: "bob", Raw: benchMessage(n)}
			n++
		}
		if _, err := s.Deliver(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMetaAll measures a FETCH of the metadata of a 2,000-message
// mailbox (what a client's header sync asks for).
func BenchmarkMetaAll(b *testing.B) {
	e := benchEnv(b)
	s := benchOpen(b, e, "a")
	ctx := context.Background()
	const total = 2000
	u, mb, _ := benchInbox(b, s, total, benchMessage)
	b.ResetTimer()
	for b.Loop() {
		ms, err := s.Meta(ctx, u, mb.ID, nil)
		if err != nil || len(ms) != total {
			b.Fatal(len(ms), err)
		}
	}
	b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCrossNodePush measures the time from a STORE committed on node
// a to its change reaching a subscriber of node b (IDLE push across
// nodes), and reports its median and 99th percentile.
func BenchmarkCrossNodePush(b *testing.B) {
	e := benchEnv(b)
	a := benchOpen(b, e, "a")
	nb := benchOpen(b, e, "b")
	ctx := context.Background()
	u, err := a.EnsureUser(ctx, "bob")
	if err != nil {
		b.Fatal(err)
	}
	mb, err := a.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := a.Append(ctx, u.ID, mb.ID, benchMessage(0), nil, time.Time{}); err != nil {
		b.Fatal(err)
	}
	got := make(chan uint64, 16)
	sub := nb.Subscribe(func(c store.Change) {
		if c.Kind == store.ChangeFlags {
			got <- c.ModSeq
		}
	})
	defer sub.Cancel()
	var lat []time.Duration
	ops := []store.FlagOp{store.FlagsAdd, store.FlagsRemove}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		ents, err := a.UpdateFlags(ctx, u.ID, mb.ID, []store.UID{1}, ops[i%2], []string{store.FlagSeen})
		if err != nil {
			b.Fatal(err)
		}
		i++
		for m := range got {
			if m == ents[0].ModSeq {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// benchInbox delivers n messages (raw(i) for the i-th, in batches of 500)
// into bob's INBOX on s, and returns bob, his INBOX and the UIDs in order.
func benchInbox(b *testing.B, s *Store, n int, raw func(i int) []byte) (store.UserID, store.Mailbox, []store.UID) {
	b.Helper()
	ctx := context.Background()
	u, err := s.EnsureUser(ctx, "bob")
	if err != nil {
		b.Fatal(err)
	}
	var uids []store.UID
	for start := 0; start < n; start += 500 {
		var ds []store.Delivery
		for i := start; i < min(start+500, n); i++ {
			ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: fmt.Sprint("d", i), User: "bob", Raw: raw(i)})
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
	return u.ID, mb, uids
}
