package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// DefaultFeedQueue bounds what one subscriber of a Feed may have queued and
// not yet handled, in items: one per change plus one per entry or UID it
// carries. A subscriber that falls further behind loses its queue and gets
// one ChangeResync instead.
const DefaultFeedQueue = 1 << 18

// Feed fans committed changes out to subscribers. A backend publishes each
// transaction's changes once it has committed, in commit order, and
// Publish only queues them: every Subscription has its own goroutine that
// calls its callback, so a slow or blocked subscriber delays no writer and
// no other subscriber. Each subscriber sees the changes in commit order.
// Memory is bounded per subscriber (DefaultFeedQueue): a subscriber that
// falls too far behind has its queued changes replaced by one
// ChangeResync.
//
// Feed is shared by the store backends: the SQLite Store publishes under
// its writer lock; another backend publishes whatever order its database
// commits in. The zero value is not usable: use NewFeed.
type Feed struct {
	maxQueue int

	// seq counts the changes published so far; written under mu.
	seq atomic.Uint64

	mu     sync.Mutex
	subs   []*Subscription // in registration order
	closed bool
}

// NewFeed returns an empty Feed.
func NewFeed() *Feed { return &Feed{maxQueue: DefaultFeedQueue} }

// Publish queues changes, tagged with origin (see WithOrigin), to every
// subscriber. The caller publishes transactions in commit order, one
// Publish at a time; Publish never waits for a subscriber. Changes
// published after Close are dropped.
func (f *Feed) Publish(origin any, changes []Change) {
	if len(changes) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if len(f.subs) == 0 {
		f.seq.Add(uint64(len(changes)))
		return
	}
	items := make([]queued, len(changes))
	seq := f.seq.Load()
	for i, c := range changes {
		c.Origin = origin
		seq++
		items[i] = queued{c: c, seq: seq}
	}
	f.seq.Store(seq)
	for _, sub := range f.subs {
		sub.enqueue(items, f.maxQueue)
	}
}

// Subscribe registers fn to receive every Change published from now on, in
// publication (commit) order, on the subscription's own goroutine: fn may
// take its time and may call the store, reads and writes alike (a write
// from fn is published to fn too, later). A ChangeResync tells fn that
// changes were dropped because it fell behind: it must re-read whatever
// state it keeps; changes after the ChangeResync may already be contained
// in what it reads (each carries its ModSeq to tell). fn never runs
// concurrently with itself.
func (f *Feed) Subscribe(fn func(Change)) *Subscription {
	sub := &Subscription{
		f:       f,
		fn:      fn,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		advance: make(chan struct{}),
	}
	f.mu.Lock()
	sub.handled.Store(f.seq.Load())
	if f.closed {
		sub.cancelled = true
		close(sub.done)
		f.mu.Unlock()
		return sub
	}
	f.subs = append(f.subs, sub)
	f.mu.Unlock()
	go sub.run()
	return sub
}

// Close stops the feed: nothing is published any more, and every
// subscription's goroutine ends once it has handled what was queued
// before. Close does not wait for them.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for _, sub := range f.subs {
		sub.mu.Lock()
		sub.ending = true
		sub.mu.Unlock()
		sub.poke()
	}
	f.subs = nil
}

// remove unregisters sub.
func (f *Feed) remove(sub *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.subs {
		if s == sub {
			f.subs = append(f.subs[:i:i], f.subs[i+1:]...)
			return
		}
	}
}

// queued is one change waiting for a subscriber, with its number in the
// feed (for a ChangeResync, the number of the last change it replaces).
type queued struct {
	c   Change
	seq uint64
}

// weight is what c counts towards a subscriber's queue bound.
func weight(c Change) int { return 1 + len(c.Entries) + len(c.UIDs) }

// Subscription is one subscriber of a Feed.
type Subscription struct {
	f    *Feed
	fn   func(Change)
	wake chan struct{} // capacity 1: the queue is not empty, or ending/cancelled changed
	done chan struct{} // closed when the goroutine has ended

	// handled is the number of the last change fn has returned from (or
	// that was published before Subscribe).
	handled atomic.Uint64
	// advance is closed and replaced whenever handled grows or the
	// goroutine ends; guarded by mu.
	advance chan struct{}

	mu        sync.Mutex
	queue     []queued
	weight    int
	ending    bool // the feed was closed: finish the queue, then end
	cancelled bool // Cancel: end now
}

// enqueue appends items (called under the feed's lock): when they would
// take the queue over max, the queue is replaced by one ChangeResync
// standing for everything up to the last item.
func (sub *Subscription) enqueue(items []queued, max int) {
	sub.mu.Lock()
	if sub.cancelled {
		sub.mu.Unlock()
		return
	}
	add := 0
	for _, it := range items {
		add += weight(it.c)
	}
	if sub.weight+add > max {
		last := items[len(items)-1].seq
		sub.queue = append(sub.queue[:0], queued{c: Change{Kind: ChangeResync}, seq: last})
		sub.weight = 1
	} else {
		sub.queue = append(sub.queue, items...)
		sub.weight += add
	}
	sub.mu.Unlock()
	sub.poke()
}

func (sub *Subscription) poke() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// run calls fn for every queued change until the subscription is
// cancelled, or the feed closed and the queue empty.
func (sub *Subscription) run() {
	defer func() {
		sub.mu.Lock()
		close(sub.done)
		close(sub.advance)
		sub.advance = nil
		sub.mu.Unlock()
	}()
	for {
		sub.mu.Lock()
		for len(sub.queue) == 0 {
			if sub.cancelled || sub.ending {
				sub.mu.Unlock()
				return
			}
			sub.mu.Unlock()
			<-sub.wake
			sub.mu.Lock()
		}
		if sub.cancelled {
			sub.mu.Unlock()
			return
		}
		it := sub.queue[0]
		sub.queue[0] = queued{}
		sub.queue = sub.queue[1:]
		if len(sub.queue) == 0 {
			sub.queue = nil // let a burst's backing array go
		}
		sub.weight -= weight(it.c)
		sub.mu.Unlock()

		sub.fn(it.c)

		sub.mu.Lock()
		sub.handled.Store(it.seq)
		close(sub.advance)
		sub.advance = make(chan struct{})
		sub.mu.Unlock()
	}
}

// Cancel unregisters the subscriber and drops what it has queued: once
// Cancel returns fn is not called again, except for a call already
// running. Cancel may be called from fn, and more than once.
func (sub *Subscription) Cancel() {
	sub.mu.Lock()
	if sub.cancelled {
		sub.mu.Unlock()
		return
	}
	sub.cancelled = true
	sub.queue, sub.weight = nil, 0
	sub.mu.Unlock()
	sub.f.remove(sub)
	sub.poke()
}

// Sync waits until fn has handled every change published before Sync was
// called (a dropped change counts once its ChangeResync is handled), or
// the subscription has ended (Cancel, or a closed Feed with nothing
// queued). A writer that calls Sync after its write returns knows that fn
// has seen the write's changes. It must not be called from fn (that would
// wait for itself); it returns ctx's error if ctx ends first.
func (sub *Subscription) Sync(ctx context.Context) error {
	target := sub.f.seq.Load()
	for {
		if sub.handled.Load() >= target {
			return nil
		}
		// handled only grows under mu, together with the channel: read
		// both there, so no advance is missed between them.
		sub.mu.Lock()
		ch, cancelled, handled := sub.advance, sub.cancelled, sub.handled.Load()
		sub.mu.Unlock()
		if ch == nil || cancelled || handled >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("store: waiting for the change feed: %w", ctx.Err())
		}
	}
}
