package store

import (
	"context"
	"time"
)

// worker is one of the Store's background jobs (the indexer, the pack
// compactor): it runs its job quiet after it starts and then after every
// series of kicks, when quiet has passed since the last one, so that a
// burst of deliveries or expunges causes one run, after the burst, and a
// short-lived Store (a one-shot poll) is not slowed by it.
type worker struct {
	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// startWorker starts job on its own goroutine; close stops it.
func startWorker(quiet time.Duration, job func(ctx context.Context)) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		timer := time.NewTimer(quiet) // the run at start
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
				timer.Reset(quiet)
				continue
			case <-timer.C:
			}
			job(ctx)
		}
	}()
	return w
}

// poke asks for a run, without waiting. A nil worker ignores it.
func (w *worker) poke() {
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// close stops the worker, cancelling a run in progress, and waits for it.
// A nil worker is already stopped.
func (w *worker) close() {
	if w == nil {
		return
	}
	w.stop()
	<-w.done
}
