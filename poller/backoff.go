package poller

import (
	"errors"
	"time"
)

// Scheduling constants. They are variables of no one: tests drive them
// through the injected clock, not by changing them.
const (
	// defaultPollInterval applies when Account.PollInterval is zero.
	defaultPollInterval = 5 * time.Minute
	// backoffBase is the first retry delay after a failed poll.
	backoffBase = 15 * time.Second
	// backoffMax caps the retry delay after repeated failures.
	backoffMax = 30 * time.Minute
	// hintEvery is the shortest time between two early polls of one
	// account triggered by Hint.
	hintEvery = 15 * time.Second
	// maxStartDelay bounds the random delay before a worker's first poll,
	// so that many accounts do not all connect at the same instant; with
	// more than maxStartDelay/staggerStep accounts the first polls are
	// spread over staggerStep per account instead (never more than the
	// poll interval).
	maxStartDelay = 10 * time.Second
	// staggerStep is the time per account over which the first polls and
	// a poll of every account (PollAll, SIGUSR1) are spread: 1,000
	// accounts log in over 50 s, not in the same instant.
	staggerStep = 50 * time.Millisecond
	// storeBackoffBase is the first retry delay of a poll that found the
	// store's database unreachable; storeBackoffMax caps it. Short: the
	// account is fine, and mail waits upstream meanwhile.
	storeBackoffBase = time.Second
	storeBackoffMax  = 30 * time.Second
)

// storeBackoff returns how long to wait after the n-th poll in a row
// (n >= 1) that found the store unreachable: storeBackoffBase doubled per
// try, capped at storeBackoffMax, with jitter r in [0,1) spreading it over
// [d/2, d].
func storeBackoff(n int, r float64) time.Duration {
	d := storeBackoffBase
	for i := 1; i < n && d < storeBackoffMax; i++ {
		d *= 2
	}
	d = min(d, storeBackoffMax)
	return d/2 + time.Duration(float64(d/2)*r)
}

// startSpread returns the window over which the first polls of the
// configured accounts are spread, for an account polled every interval.
func (p *Poller) startSpread(interval time.Duration) time.Duration {
	p.mu.Lock()
	n := len(p.accounts)
	p.mu.Unlock()
	return min(interval, max(maxStartDelay, time.Duration(n)*staggerStep))
}

// backoffDelay returns how long to wait after the n-th consecutive failure
// (n >= 1): backoffBase doubled per failure, capped at backoffMax, with
// jitter r in [0,1) spreading it over [d/2, d]. A permanent error (bad
// password, refused account) never retries sooner than the normal interval,
// so a wrong password does not hammer the provider into locking the
// account.
func backoffDelay(n int, interval time.Duration, permanent bool, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	d = d/2 + time.Duration(float64(d/2)*r)
	if permanent && d < interval {
		d = interval
	}
	return d
}

// jitterInterval spreads a poll interval over ±10% (r in [0,1)), so that
// accounts configured alike drift apart instead of polling in lock step.
func jitterInterval(interval time.Duration, r float64) time.Duration {
	return interval - interval/10 + time.Duration(float64(interval/5)*r)
}

// isPermanent reports whether err is an upstream error that retrying soon
// will not fix (authentication refused, account disabled). Everything else,
// including store errors, counts as temporary.
func isPermanent(err error) bool {
	var ae *AccountError
	return errors.As(err, &ae) && !ae.Temporary
}
