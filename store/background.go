package store

import (
	"context"
	"time"
)

// Background runs a store's background job (indexing, compaction; the
// SQLite store's and other backends') on its own goroutine: quiet after it starts, then
// after every series of pokes, when quiet has passed since the last one
// (so that a burst of deliveries causes one run, after the burst, and a
// short-lived process is not slowed by it), and, if every is positive,
// every after its last run as well (for work other processes leave).
type Background struct {
	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// StartBackground starts job; Close stops it.
func StartBackground(quiet, every time.Duration, job func(ctx context.Context)) *Background {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Background{kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
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
			if every > 0 {
				timer.Reset(every)
			}
		}
	}()
	return w
}

// Poke asks for a run, without waiting. A nil Background ignores it.
func (w *Background) Poke() {
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Poked reports whether a poke came since the current run began: a long
// job may stop between its steps and let the worker wait for the pause.
// A nil Background was never poked.
func (w *Background) Poked() bool { return w != nil && len(w.kick) > 0 }

// Close stops the worker, cancelling a run in progress, and waits for it.
// A nil Background is already stopped.
func (w *Background) Close() {
	if w == nil {
		return
	}
	w.stop()
	<-w.done
}
