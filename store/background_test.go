package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBackgroundRunsAfterQuietAndPeriod checks the worker's schedule: a run
// quiet after the start, one run for a burst of pokes (after it), the
// periodic runs with every, Poked during a run that a poke interrupts, and
// Close cancelling a run in progress.
func TestBackgroundRunsAfterQuietAndPeriod(t *testing.T) {
	runs := make(chan time.Time, 16)
	w := StartBackground(20*time.Millisecond, 0, func(ctx context.Context) { runs <- time.Now() })
	defer w.Close()
	start := time.Now()
	first := <-runs
	if d := first.Sub(start); d < 20*time.Millisecond {
		t.Errorf("first run %v after the start, before quiet", d)
	}
	for range 5 {
		w.Poke()
	}
	<-runs
	select {
	case <-runs:
		t.Error("a burst of pokes caused two runs")
	case <-time.After(100 * time.Millisecond):
	}

	// Periodic: runs keep coming without pokes.
	p := StartBackground(5*time.Millisecond, 10*time.Millisecond, func(ctx context.Context) { runs <- time.Now() })
	for range 3 {
		select {
		case <-runs:
		case <-time.After(10 * time.Second):
			t.Fatal("no periodic run")
		}
	}
	p.Close()

	// Poked inside a run, and Close cancelling it.
	inRun, poked := make(chan struct{}), make(chan bool, 1)
	var c atomic.Pointer[Background]
	var once sync.Once
	c.Store(StartBackground(time.Millisecond, 0, func(ctx context.Context) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return
		}
		close(inRun)
		for c.Load() == nil || !c.Load().Poked() {
			time.Sleep(time.Millisecond)
		}
		poked <- true
		<-ctx.Done()
	}))
	<-inRun
	c.Load().Poke()
	if !<-poked {
		t.Fatal("Poked false after a poke")
	}
	c.Load().Close() // returns only once the run saw its cancellation

	var nilW *Background
	nilW.Poke()
	nilW.Close()
	if nilW.Poked() {
		t.Error("a nil worker was poked")
	}
}
