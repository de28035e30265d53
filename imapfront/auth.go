package imapfront

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/popbridge/popbridge/internal/lib/passhash"
)

// HashPassword returns a bcrypt hash of password (internal/lib/passhash, the
// one home of the formats), which verifyPassword accepts: quick to make,
// for tests and the demo. `popbridge hash-password` makes argon2id ones.
func HashPassword(password string) (string, error) {
	return passhash.Hash(password, passhash.Bcrypt)
}

// verifyPassword reports whether password matches hash, a bcrypt
// ($2a$/$2b$/$2y$) or argon2id ($argon2id$v=19$m=..,t=..,p=..$salt$hash) PHC
// string, without a cache. A malformed hash is an error, never a match.
func verifyPassword(hash, password string) (bool, error) {
	return verifyHash(hash, password)
}

// verifyPassword is the package function with the server's own
// verification cache: successful verifications are remembered (per
// server, so two servers in one process, as in tests, share nothing); the
// dummy hash is always verified in full, so an unknown user costs a whole
// verification.
func (s *Server) verifyPassword(hash, password string) (bool, error) {
	if hash == dummyHash() {
		return verifyHash(hash, password)
	}
	return s.passwords.verify(hash, password)
}

// verifyHash is verifyPassword without the cache: the real bcrypt or
// argon2id computation.
func verifyHash(hash, password string) (bool, error) {
	return passhash.Verify(hash, password)
}

// dummyHash is verified against for unknown user names, so that a failed
// login costs the same whether the user exists or not.
var dummyHash = sync.OnceValue(func() string {
	h, err := passhash.Hash("popbridge-dummy-password", passhash.Bcrypt)
	if err != nil {
		// bcrypt only fails for passwords over 72 bytes or a bad cost.
		panic(fmt.Sprintf("imapfront: dummy hash: %v", err))
	}
	return h
})

// Bounds of the verification cache, as Dovecot's auth_cache_ttl and
// auth_cache_size.
const (
	verifyCacheTTL  = 5 * time.Minute
	verifyCacheSize = 10_000
)

// verifyCache remembers successful password verifications for a while, so
// that a client reconnecting (or opening many connections) with the same
// credentials pays for bcrypt or argon2id once. An entry is the configured
// hash string and the HMAC-SHA256 of the password under a key drawn at
// random per process, so the cache never holds a password, nor anything
// that outlives the process. Because the hash string is part of the key, a
// changed hash (SetUsers after a password change) never matches an entry
// made for the old one; such entries age out. Failures and errors are never
// remembered. Concurrent verifications of the same hash and password wait
// for the first one (singleflight); when it fails, each waiter verifies on
// its own, so that every failure still costs one full verification.
type verifyCache struct {
	check func(hash, password string) (bool, error) // the real verification
	ttl   time.Duration
	size  int
	now   func() time.Time
	key   [32]byte

	mu      sync.Mutex
	entries map[verifyKey]time.Time // expiry
	flights map[verifyKey]*verifyFlight
}

// verifyKey identifies a hash and password.
type verifyKey struct {
	hash string
	mac  [sha256.Size]byte
}

// verifyFlight is a verification in progress; ok is set before done closes.
type verifyFlight struct {
	done chan struct{}
	ok   bool
}

func newVerifyCache(check func(hash, password string) (bool, error), ttl time.Duration, size int, now func() time.Time) *verifyCache {
	c := &verifyCache{
		check:   check,
		ttl:     ttl,
		size:    size,
		now:     now,
		entries: make(map[verifyKey]time.Time),
		flights: make(map[verifyKey]*verifyFlight),
	}
	rand.Read(c.key[:]) // never fails (crypto/rand, Go 1.24+)
	return c
}

// verify reports whether password matches hash, from the cache when a
// successful verification of the same pair is remembered and fresh.
func (c *verifyCache) verify(hash, password string) (bool, error) {
	k := verifyKey{hash: hash}
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(password))
	m.Sum(k.mac[:0])

	c.mu.Lock()
	if exp, ok := c.entries[k]; ok {
		if c.now().Before(exp) {
			c.mu.Unlock()
			return true, nil
		}
		delete(c.entries, k)
	}
	if fl := c.flights[k]; fl != nil {
		c.mu.Unlock()
		<-fl.done
		if fl.ok {
			return true, nil
		}
		// The first verification failed: this one is not served from it.
		ok, err := c.check(hash, password)
		if ok && err == nil {
			c.remember(k)
		}
		return ok, err
	}
	fl := &verifyFlight{done: make(chan struct{})}
	c.flights[k] = fl
	c.mu.Unlock()

	ok, err := false, error(nil)
	defer func() {
		c.mu.Lock()
		delete(c.flights, k)
		if ok && err == nil {
			c.store(k)
		}
		c.mu.Unlock()
		fl.ok = ok && err == nil
		close(fl.done)
	}()
	ok, err = c.check(hash, password)
	return ok, err
}

// remember records a successful verification of k.
func (c *verifyCache) remember(k verifyKey) {
	c.mu.Lock()
	c.store(k)
	c.mu.Unlock()
}

// store records k with c.mu held, making room first when the cache is full:
// expired entries go, then arbitrary ones.
func (c *verifyCache) store(k verifyKey) {
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		now := c.now()
		for e, exp := range c.entries {
			if !now.Before(exp) {
				delete(c.entries, e)
			}
		}
		for e := range c.entries {
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, e)
		}
	}
	c.entries[k] = c.now().Add(c.ttl)
}
