package poller

import "time"

// timer is the part of *time.Timer the workers use. It is a seam: tests
// install a fake clock whose timers fire when the test advances time, so no
// test sleeps for a poll interval.
type timer interface {
	C() <-chan time.Time
	Stop() bool
}

// realTimer adapts *time.Timer to timer.
type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// newRealTimer is the default timer factory.
func newRealTimer(d time.Duration) timer { return realTimer{time.NewTimer(d)} }
