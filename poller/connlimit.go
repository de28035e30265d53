package poller

import (
	"context"
	"slices"
	"sync"

	"github.com/popbridge/popbridge/store"
)

// urgentKey marks a context whose session someone waits for (see
// withUrgent).
type urgentKey struct{}

// withUrgent marks ctx so that its session's connection slot is granted
// before those of background polls, and its writes to the store go ahead
// of theirs in the store's writer queue (store.WithUrgent).
func withUrgent(ctx context.Context) context.Context {
	return context.WithValue(store.WithUrgent(ctx), urgentKey{}, true)
}

// isUrgent reports whether ctx was marked by withUrgent.
func isUrgent(ctx context.Context) bool {
	return ctx.Value(urgentKey{}) != nil
}

// Default caps on upstream POP3 sessions (Options.MaxConnections and
// Options.MaxConnectionsPerHost).
const (
	DefaultMaxConnections        = 20
	DefaultMaxConnectionsPerHost = 10
)

// connLimiter caps the POP3 sessions open at once, in total and per
// upstream host (host:port as configured). A session holds its slot from
// before it dials until it has QUIT or was aborted, so logins count.
// Waiters are served in arrival order, urgent ones (someone waits for the
// answer: an IMAP login's check, an early poll asked for) before the
// others, except that a waiter whose host is at its cap does not hold up
// waiters for other hosts. Limits may change
// at any time (a reload); lowering them closes nothing, new sessions wait
// until the count is under the new cap.
type connLimiter struct {
	mu      sync.Mutex
	max     int // 0: no limit
	perHost int // 0: no limit
	open    int
	byHost  map[string]int
	queue   []*connWaiter
}

// connWaiter is a session waiting for a slot; ready is closed when the
// slot is granted.
type connWaiter struct {
	host   string
	urgent bool
	ready  chan struct{}
}

func newConnLimiter(max, perHost int) *connLimiter {
	return &connLimiter{max: max, perHost: perHost, byHost: make(map[string]int)}
}

// roomLocked reports whether a session to host may open now. l.mu held.
func (l *connLimiter) roomLocked(host string) bool {
	return (l.max <= 0 || l.open < l.max) && (l.perHost <= 0 || l.byHost[host] < l.perHost)
}

func (l *connLimiter) takeLocked(host string) {
	l.open++
	l.byHost[host]++
}

// grantLocked hands free slots to waiters, in order. l.mu held.
func (l *connLimiter) grantLocked() {
	kept := l.queue[:0]
	for _, w := range l.queue {
		if l.roomLocked(w.host) {
			l.takeLocked(w.host)
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(l.queue[len(kept):])
	l.queue = kept
}

// acquire waits for a slot towards host. waiting, if not nil, is called
// with true when the caller has to wait and with false when the wait ends
// (slot granted or ctx done). It returns the function that gives the slot
// back (idempotent), or ctx's error.
func (l *connLimiter) acquire(ctx context.Context, host string, waiting func(bool)) (release func(), err error) {
	return l.acquireUrgent(ctx, host, false, waiting)
}

// acquireUrgent is acquire, queued ahead of every waiter that is not
// urgent when urgent is set.
func (l *connLimiter) acquireUrgent(ctx context.Context, host string, urgent bool, waiting func(bool)) (release func(), err error) {
	l.mu.Lock()
	if len(l.queue) == 0 && l.roomLocked(host) {
		l.takeLocked(host)
		l.mu.Unlock()
		return l.releaser(host), nil
	}
	w := &connWaiter{host: host, urgent: urgent, ready: make(chan struct{})}
	i := len(l.queue)
	if urgent {
		i = 0
		for i < len(l.queue) && l.queue[i].urgent {
			i++
		}
	}
	l.queue = slices.Insert(l.queue, i, w)
	l.grantLocked() // the queue may hold only waiters for full hosts
	l.mu.Unlock()
	select {
	case <-w.ready:
		return l.releaser(host), nil
	default:
	}
	if waiting != nil {
		waiting(true)
		defer waiting(false)
	}
	select {
	case <-w.ready:
		return l.releaser(host), nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		l.releaseLocked(host)
	default:
		for i, q := range l.queue {
			if q == w {
				l.queue = append(l.queue[:i], l.queue[i+1:]...)
				break
			}
		}
	}
	return nil, ctx.Err()
}

func (l *connLimiter) releaser(host string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.releaseLocked(host)
		})
	}
}

func (l *connLimiter) releaseLocked(host string) {
	l.open--
	if l.byHost[host]--; l.byHost[host] <= 0 {
		delete(l.byHost, host)
	}
	l.grantLocked()
}

// setLimits changes the caps (0: no limit) and wakes waiters that now fit.
func (l *connLimiter) setLimits(max, perHost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max, l.perHost = max, perHost
	l.grantLocked()
}

// stats returns the sessions open and the sessions waiting for a slot.
func (l *connLimiter) stats() (open, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, len(l.queue)
}

// limitedSession is a session holding a connection slot, given back when
// the session ends (Quit or Abort).
type limitedSession struct {
	popSession
	release func()
}

// Quit implements popSession.
func (s *limitedSession) Quit(ctx context.Context) error {
	defer s.release()
	return s.popSession.Quit(ctx)
}

// Abort implements popSession.
func (s *limitedSession) Abort() {
	s.popSession.Abort()
	s.release()
}
