package store

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestParallelEachCallsEveryIndexOnce checks that ParallelEach hands every index to
// exactly one call, for sizes around the number of workers, and that it
// returns only after every call has.
func TestParallelEachCallsEveryIndexOnce(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, n := range []int{0, 1, 2, procs - 1, procs, procs + 1, 1000} {
		counts := make([]atomic.Int32, n)
		var done atomic.Int32
		ParallelEach(n, func(i int) {
			counts[i].Add(1)
			done.Add(1)
		})
		if int(done.Load()) != n {
			t.Errorf("n=%d: ParallelEach returned after %d calls", n, done.Load())
		}
		for i := range counts {
			if c := counts[i].Load(); c != 1 {
				t.Errorf("n=%d: index %d called %d times", n, i, c)
			}
		}
	}
}
