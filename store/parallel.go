package store

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// ParallelEach calls fn(i) for every i in [0, n), on up to GOMAXPROCS
// goroutines (none when n is 0, the caller's alone when n is 1), and
// returns when every call has returned: for CPU-bound work over
// independent items, such as parsing a batch of messages (the SQLite
// store's and other backends'). Each i is handed to exactly one call; fn must be
// safe to run concurrently for different i.
func ParallelEach(n int, fn func(i int)) {
	if n <= 0 {
		return
	}
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers == 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
