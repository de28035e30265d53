package poller

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// watchedLease is the lease of an account whose worker waits while
// another node holds it.
type watchedLease struct {
	account string
	holder  string        // the holder last seen
	due     time.Time     // when to look again: it could have lapsed by then
	free    chan struct{} // closed when a look finds it free
}

// lookAfter is how long after learning that a lease another node holds
// has left to run the keeper looks at it again: when it would lapse (by
// the database's clock), plus a little so as not to race the holder's
// renewal; no sooner than ttl/10, so that the looks stay few, and no later
// than ttl/2, so that a lease released by a clean stop is taken within
// half a lease period.
func (k *leaseKeeper) lookAfter(left time.Duration, r float64) time.Duration {
	return min(max(left, k.ttl/10), k.ttl/2) + time.Duration(float64(k.ttl/20)*r)
}

// watch registers the lease of account, which another node holds (other,
// as the refused acquire told), with the keeper's looks. The returned
// channel is closed once a look finds the lease free (lapsed or
// released): the worker then acquires it. unwatch ends the watch
// (idempotent). Every watched lease costs one name in one statement per
// look, however many there are, instead of one acquire per account.
func (k *leaseKeeper) watch(account string, other store.Lease) (free <-chan struct{}, unwatch func()) {
	name := LeaseName(account)
	w := &watchedLease{account: account, holder: other.Holder, free: make(chan struct{}),
		due: k.p.now().Add(k.lookAfter(other.Left, k.p.rand()))}
	k.mu.Lock()
	k.watched[name] = w
	if !k.looking {
		k.looking = true
		go k.lookLoop()
	}
	k.mu.Unlock()
	select {
	case k.lookKick <- struct{}{}:
	default:
	}
	return w.free, func() {
		k.mu.Lock()
		if k.watched[name] == w {
			delete(k.watched, name)
		}
		last := len(k.watched) == 0
		k.mu.Unlock()
		if last {
			select { // the look loop ends now, not at its timer
			case k.lookKick <- struct{}{}:
			default:
			}
		}
	}
}

// lookRetry is how soon a look that failed (the database unreachable) is
// tried again.
func (k *leaseKeeper) lookRetry() time.Duration { return k.ttl / 10 }

// lookLoop looks at the watched leases, all of them in one call, when the
// first of them is due, until none is watched.
func (k *leaseKeeper) lookLoop() {
	for {
		k.mu.Lock()
		if len(k.watched) == 0 {
			k.looking = false
			k.mu.Unlock()
			return
		}
		var at time.Time
		for _, w := range k.watched {
			if at.IsZero() || w.due.Before(at) {
				at = w.due
			}
		}
		k.mu.Unlock()
		if d := at.Sub(k.p.now()); d > 0 {
			t := k.p.timer(d)
			select {
			case <-t.C():
			case <-k.lookKick:
				t.Stop()
				continue // a new watch may be due sooner
			}
		}
		k.look()
	}
}

// look asks who holds every watched lease, in one call: the workers of
// those found free are woken (and stop watching them), the holders shown
// in the accounts' status follow the database, and each lease is looked
// at again when it could have lapsed.
func (k *leaseKeeper) look() {
	k.mu.Lock()
	names := make([]string, 0, len(k.watched))
	for name := range k.watched {
		names = append(names, name)
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), k.ttl)
	ls, err := k.l.LookLeases(ctx, names)
	cancel()

	// p.mu before k.mu: a holder shown is one the worker, still
	// watching, would show (its exit clears the status after unwatching).
	k.p.mu.Lock()
	defer k.p.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.looks++
	now := k.p.now()
	if err != nil {
		if len(k.watched) == 0 {
			return // nothing waits for it any more (the node stops)
		}
		if !k.lookFailing {
			k.p.log.Warn("looking at the account leases other nodes hold failed; trying again", "leases", len(names), "err", err)
		}
		k.lookFailing = true
		for _, w := range k.watched {
			w.due = now.Add(k.lookRetry())
		}
		return
	}
	if k.lookFailing {
		k.p.log.Info("looking at the account leases other nodes hold works again", "leases", len(names))
	}
	k.lookFailing = false
	for _, l := range ls {
		w := k.watched[l.Name]
		if w == nil {
			continue // unwatched meanwhile
		}
		if l.Holder == "" || l.Left <= 0 {
			delete(k.watched, l.Name)
			close(w.free)
			continue
		}
		if l.Holder != w.holder {
			w.holder = l.Holder
			st := k.p.stateLocked(w.account)
			st.status.LeaseHolder, st.status.LeaseHeld = l.Holder, false
		}
		w.due = now.Add(k.lookAfter(l.Left, k.p.rand()))
	}
	for _, w := range k.watched {
		if !w.due.After(now) {
			w.due = now.Add(k.lookRetry()) // not answered for: ask again soon
		}
	}
}
