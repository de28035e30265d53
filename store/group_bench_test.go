package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkConcurrentCommits measures durable commits per second with 1, 8
// and 64 goroutines committing at once, each for its own user and account,
// the way provider mode's polls commit: a staged batch of 3 small messages,
// then the account's status. One op is one such poll's writes; commits/s
// counts the batches.
//
//	go test -run XXX -bench ConcurrentCommits -benchtime 2000x ./store
func BenchmarkConcurrentCommits(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("committers=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := mustOpen(b)
			for i := range n {
				mustUser(b, s, fmt.Sprintf("u%d", i))
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					user := fmt.Sprintf("u%d", g)
					for {
						k := next.Add(1)
						if k > int64(b.N) {
							return
						}
						ds := make([]Delivery, 3)
						for j := range ds {
							tag := fmt.Sprintf("%d-%d", k, j)
							ds[j] = Delivery{Account: user, UIDL: tag, Digest: "d" + tag, User: user, Raw: testMessage(tag)}
						}
						if _, err := s.Deliver(ctx, ds); err != nil {
							b.Error(err)
							return
						}
						if err := s.SetAccountStatus(ctx, AccountStatus{Account: user, Fetched: k}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}
