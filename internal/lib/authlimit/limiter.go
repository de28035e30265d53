package authlimit

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Defaults used for zero fields of [Options].
const (
	// DefaultBase is the delay after the first failure.
	DefaultBase = 2 * time.Second
	// DefaultMax caps the delay.
	DefaultMax = 15 * time.Second
	// DefaultForget is how long a record survives without a new failure.
	DefaultForget = 15 * time.Minute
	// DefaultMaxEntries bounds the number of address plus user records.
	DefaultMaxEntries = 100_000
)

// RecentPasswords is how many recent (user, password fingerprint) pairs are
// remembered per address group; a failure repeating one of them does not
// raise the penalty.
const RecentPasswords = 10

// maxUserKey is the longest user name kept verbatim; longer ones are hashed.
const maxUserKey = 128

// ipv6GroupBits is the IPv6 prefix length that forms one address group.
const ipv6GroupBits = 48

// Options configures a [Limiter]. The zero value gives Dovecot's curve.
type Options struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Base is the delay after the first failure. Zero means DefaultBase
	// (2 s). A Base above Max is lowered to Max.
	Base time.Duration
	// Max caps the delay, for addresses and users alike. Zero means
	// DefaultMax (15 s).
	Max time.Duration
	// Forget is how long a record is kept after its last failure; after
	// that the address or user starts again from no penalty. Zero means
	// DefaultForget (15 min).
	Forget time.Duration
	// MaxEntries bounds the number of records (address groups plus user
	// names). When it is reached the record with the oldest last failure is
	// evicted. Zero means DefaultMaxEntries (100,000); values below 2 are
	// raised to 2 so one failure's two records fit.
	MaxEntries int
	// Sleep waits for d or until ctx is done, whichever comes first, and
	// returns ctx's error in the second case. [Limiter.Wait] uses it. Nil
	// means a timer raced against ctx.Done().
	Sleep func(ctx context.Context, d time.Duration) error
	// Trusted lists networks whose addresses are never delayed and whose
	// failures are not recorded (Dovecot's login_trusted_networks), e.g. a
	// webmail front end that does its own throttling. Empty means none.
	Trusted []netip.Prefix
}

// Limiter records failed logins and computes the delay for the next
// attempt. Create it with [New]; the zero value is not usable. It is safe
// for concurrent use.
type Limiter struct {
	now        func() time.Time
	sleep      func(ctx context.Context, d time.Duration) error
	base, max  time.Duration
	forget     time.Duration
	maxEntries int
	trusted    []netip.Prefix
	seed       maphash.Seed

	mu    sync.Mutex
	addrs map[netip.Prefix]*record
	users map[string]*record
	lru   *list.List // of *record, front = most recent failure
	turns map[netip.Prefix]*turn
}

// turn is the attempt of an address group in progress (Acquire); waiters
// wait for done to be closed. It exists only while an attempt holds it.
type turn struct {
	done chan struct{}
}

// record is the penalty state of one address group or one user name.
type record struct {
	isUser bool
	addr   netip.Prefix // when !isUser
	user   string       // when isUser
	level  time.Duration
	last   time.Time
	elem   *list.Element
	// recent holds hashes of the last RecentPasswords (user, fingerprint)
	// pairs that failed from this address group (address records only);
	// zero slots are empty.
	recent [RecentPasswords]uint64
	next   int
}

// New returns a Limiter with opts' zero fields set to their defaults. It has
// no side effects and starts no goroutine.
func New(opts Options) *Limiter {
	l := &Limiter{
		now:        opts.Now,
		sleep:      opts.Sleep,
		base:       opts.Base,
		max:        opts.Max,
		forget:     opts.Forget,
		maxEntries: opts.MaxEntries,
		trusted:    append([]netip.Prefix(nil), opts.Trusted...),
		seed:       maphash.MakeSeed(),
		addrs:      make(map[netip.Prefix]*record),
		users:      make(map[string]*record),
		lru:        list.New(),
		turns:      make(map[netip.Prefix]*turn),
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.sleep == nil {
		l.sleep = sleepCtx
	}
	if l.base <= 0 {
		l.base = DefaultBase
	}
	if l.max <= 0 {
		l.max = DefaultMax
	}
	if l.base > l.max {
		l.base = l.max
	}
	if l.forget <= 0 {
		l.forget = DefaultForget
	}
	if l.maxEntries <= 0 {
		l.maxEntries = DefaultMaxEntries
	}
	if l.maxEntries < 2 {
		l.maxEntries = 2
	}
	return l
}

// sleepCtx is the default Options.Sleep.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AddrGroup returns the key addr is counted under: the address itself for
// IPv4 (including IPv4-mapped IPv6), its /48 for IPv6, with any zone
// dropped. The invalid (zero) Addr maps to the zero Prefix, so all callers
// that cannot tell the address share one record.
func AddrGroup(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = ipv6GroupBits
	}
	p, err := addr.Prefix(bits)
	if err != nil { // cannot happen for a valid address and these lengths
		return netip.Prefix{}
	}
	return p
}

// userKey lower-cases user and replaces names longer than maxUserKey bytes
// by a digest.
func userKey(user string) string {
	u := strings.ToLower(user)
	if len(u) <= maxUserKey {
		return u
	}
	sum := sha256.Sum256([]byte(u))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// isTrusted reports whether addr is in Options.Trusted.
func (l *Limiter) isTrusted(addr netip.Addr) bool {
	if len(l.trusted) == 0 || !addr.IsValid() {
		return false
	}
	a := addr.Unmap().WithZone("")
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Delay returns how long to wait before answering a login attempt for user
// from addr: the larger of the time left on the address group's penalty and
// on the user's penalty, each at most Max. It is 0 when neither has failed
// within Forget, when both penalties have already elapsed, and for trusted
// addresses. Delay does not record anything.
func (l *Limiter) Delay(addr netip.Addr, user string) time.Duration {
	if l.isTrusted(addr) {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.remaining(l.addrs[AddrGroup(addr)], now)
	if u := l.remaining(l.users[userKey(user)], now); u > d {
		d = u
	}
	return d
}

// remaining returns the time left on r's penalty at now, 0 for nil or
// forgotten records. Must be called with l.mu held.
func (l *Limiter) remaining(r *record, now time.Time) time.Duration {
	if r == nil || l.expired(r, now) {
		return 0
	}
	left := r.level - now.Sub(r.last)
	if left <= 0 {
		return 0
	}
	return min(left, r.level)
}

// expired reports whether r's last failure is at least Forget ago.
func (l *Limiter) expired(r *record, now time.Time) bool {
	return now.Sub(r.last) >= l.forget
}

// Acquire waits until no other login attempt from addr's group is in
// progress and makes the caller's attempt the one in progress, until it
// calls release (once; later calls do nothing). Hold it from before the
// first [Limiter.Wait] until the answer is sent: then parallel attempts
// from one address are answered one after the other, each after the
// penalty the one before it earned, exactly as if they had been sent one
// after the other, instead of all being checked at once while the penalty
// is still low. Trusted addresses never wait. The error wraps ctx's when
// ctx is done first.
func (l *Limiter) Acquire(ctx context.Context, addr netip.Addr) (release func(), err error) {
	if l.isTrusted(addr) {
		return func() {}, nil
	}
	key := AddrGroup(addr)
	for {
		l.mu.Lock()
		t := l.turns[key]
		if t == nil {
			t = &turn{done: make(chan struct{})}
			l.turns[key] = t
			l.mu.Unlock()
			return sync.OnceFunc(func() {
				l.mu.Lock()
				delete(l.turns, key)
				l.mu.Unlock()
				close(t.done)
			}), nil
		}
		l.mu.Unlock()
		select {
		case <-t.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("authlimit: wait for a turn: %w", ctx.Err())
		}
	}
}

// InProgress returns the number of address groups with an attempt in
// progress (Acquire).
func (l *Limiter) InProgress() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.turns)
}

// Wait sleeps for [Limiter.Delay](addr, user) using Options.Sleep. It returns
// nil at once when the delay is 0, and an error wrapping ctx's error when
// ctx is done first.
func (l *Limiter) Wait(ctx context.Context, addr netip.Addr, user string) error {
	d := l.Delay(addr, user)
	if d <= 0 {
		return nil
	}
	if err := l.sleep(ctx, d); err != nil {
		return fmt.Errorf("authlimit: wait %v: %w", d, err)
	}
	return nil
}

// Failure records a failed login for user from addr. passwordFingerprint
// identifies the password tried without revealing it: the caller must pass
// a keyed hash (e.g. HMAC under a random per-process key), never the
// password itself. The first failure within Forget sets the address group's
// and the user's level to Base; each later one doubles it, up to Max; a
// failure whose (user, fingerprint) pair is among the last
// [RecentPasswords] failures from the address group refreshes the records'
// time but leaves their levels as they are. Trusted addresses are ignored.
func (l *Limiter) Failure(addr netip.Addr, user, passwordFingerprint string) {
	if l.isTrusted(addr) {
		return
	}
	ukey := userKey(user)
	var pair uint64
	if passwordFingerprint != "" {
		var h maphash.Hash
		h.SetSeed(l.seed)
		h.WriteString(ukey)
		h.WriteByte(0)
		h.WriteString(passwordFingerprint)
		pair = h.Sum64() | 1 // never 0, which marks an empty slot
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropForgotten(now)

	ar := l.get(false, AddrGroup(addr), "", now)
	ur := l.get(true, netip.Prefix{}, ukey, now)
	repeat := false
	if pair != 0 {
		for _, h := range ar.recent {
			if h == pair {
				repeat = true
				break
			}
		}
		if !repeat {
			ar.recent[ar.next] = pair
			ar.next = (ar.next + 1) % RecentPasswords
		}
	}
	for _, r := range []*record{ar, ur} {
		switch {
		case r.level == 0:
			r.level = l.base
		case !repeat:
			r.level = min(2*r.level, l.max)
		}
		r.last = now
		l.lru.MoveToFront(r.elem)
	}
	l.evict()
}

// get returns the live record for the key, creating it (level 0) when it is
// missing or forgotten. Must be called with l.mu held.
func (l *Limiter) get(isUser bool, addr netip.Prefix, user string, now time.Time) *record {
	var r *record
	if isUser {
		r = l.users[user]
	} else {
		r = l.addrs[addr]
	}
	if r != nil && !l.expired(r, now) {
		return r
	}
	if r != nil {
		l.remove(r)
	}
	r = &record{isUser: isUser, addr: addr, user: user, last: now}
	r.elem = l.lru.PushFront(r)
	if isUser {
		l.users[user] = r
	} else {
		l.addrs[addr] = r
	}
	return r
}

// remove deletes r. Must be called with l.mu held.
func (l *Limiter) remove(r *record) {
	l.lru.Remove(r.elem)
	if r.isUser {
		if l.users[r.user] == r {
			delete(l.users, r.user)
		}
	} else if l.addrs[r.addr] == r {
		delete(l.addrs, r.addr)
	}
}

// dropForgotten removes records forgotten at now, oldest first. Must be
// called with l.mu held.
func (l *Limiter) dropForgotten(now time.Time) {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		r := e.Value.(*record)
		if !l.expired(r, now) {
			return
		}
		l.remove(r)
	}
}

// evict removes the records with the oldest last failure until at most
// maxEntries remain. The records just touched are at the front of the list
// and maxEntries is at least 2, so a failure never evicts its own two
// records. Must be called with l.mu held.
func (l *Limiter) evict() {
	for l.lru.Len() > l.maxEntries {
		l.remove(l.lru.Back().Value.(*record))
	}
}

// Success forgets the records of addr's group and of user after a
// successful login, so neither is delayed any more. Other users' records,
// including those raised from the same address, are kept.
func (l *Limiter) Success(addr netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.addrs[AddrGroup(addr)]; r != nil {
		l.remove(r)
	}
	if r := l.users[userKey(user)]; r != nil {
		l.remove(r)
	}
}

// Stats is a snapshot of a [Limiter]'s size.
type Stats struct {
	// Addrs is the number of address-group records held.
	Addrs int
	// Users is the number of user-name records held.
	Users int
}

// Stats returns the number of records currently held. Forgotten records may
// still be counted until the next [Limiter.Failure] drops them.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Addrs: len(l.addrs), Users: len(l.users)}
}
