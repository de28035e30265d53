package storecopy_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/storecopy"
)

var benchMessages = flag.Int("storecopy.messages", 10000, "messages in BenchmarkCopy's store")

// benchSource builds a SQLite store of n messages of about 4 KiB, spread
// over 10 users, delivered as the poller does (500 a batch), with some
// flags set, and opens it again read-only: its background indexer would
// otherwise still be parsing the new messages during the copy, which a
// store being moved has long done.
func benchSource(b *testing.B, n int) *store.Store {
	ctx := context.Background()
	dir := b.TempDir()
	src, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n", 48)
	var ds []store.Delivery
	for i := range n {
		user := fmt.Sprintf("user%d", i%10)
		if i < 10 {
			must(src.EnsureUser(ctx, user))
		}
		raw := fmt.Appendf(nil, "From: a@example.org\r\nTo: %s@example.net\r\nSubject: message %d\r\nMessage-ID: <%d@example.org>\r\n\r\n%s", user, i, i, body)
		ds = append(ds, store.Delivery{Account: "acct-" + user, UIDL: fmt.Sprint(i), Digest: fmt.Sprintf("%064d", i), User: user, Raw: raw,
			InternalDate: time.Date(2025, 1, 1, 0, 0, i%3600, 0, time.UTC)})
		if len(ds) == 500 || i == n-1 {
			must(src.Deliver(ctx, ds))
			ds = ds[:0]
		}
	}
	for u := range 10 {
		user := must(src.UserByName(ctx, fmt.Sprintf("user%d", u)))
		inbox := must(src.MailboxByName(ctx, user.ID, "INBOX"))
		must(src.UpdateFlags(ctx, user.ID, inbox.ID, nil, store.FlagsAdd, []string{store.FlagSeen}))
	}
	if err := src.Close(); err != nil {
		b.Fatal(err)
	}
	ro, err := store.Open(ctx, dir, store.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ro.Close() })
	return ro
}

// BenchmarkCopy copies a store of -storecopy.messages messages (10,000 by
// default) SQLite to SQLite, SQLite to PostgreSQL and PostgreSQL to
// SQLite, verification included, and reports messages per second and the
// peak heap in use during the copy.
func BenchmarkCopy(b *testing.B) {
	n := *benchMessages
	src := benchSource(b, n)
	run := func(b *testing.B, from storecopy.Source, newDest func(b *testing.B) storecopy.Dest) {
		var peak uint64
		var ms runtime.MemStats
		opts := storecopy.Options{Progress: func(storecopy.Progress) {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}}
		for range b.N {
			b.StopTimer()
			dst := newDest(b)
			runtime.GC()
			b.StartTimer()
			rep, err := storecopy.Copy(context.Background(), from, dst, opts)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Messages != n {
				b.Fatalf("copied %d messages, want %d", rep.Messages, n)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	}
	b.Run("sqlite-to-sqlite", func(b *testing.B) {
		run(b, src, func(b *testing.B) storecopy.Dest { return openSQLite(b, b.TempDir()) })
	})
	srv := pgtest.Start(b, pgtest.Options{})
	b.Run("sqlite-to-postgres", func(b *testing.B) {
		run(b, src, func(b *testing.B) storecopy.Dest { return openPG(b, srv) })
	})
	pgSrc := openPG(b, srv)
	if _, err := storecopy.Copy(context.Background(), src, pgSrc, storecopy.Options{}); err != nil {
		b.Fatal(err)
	}
	b.Run("postgres-to-sqlite", func(b *testing.B) {
		run(b, pgSrc, func(b *testing.B) storecopy.Dest { return openSQLite(b, b.TempDir()) })
	})
}
