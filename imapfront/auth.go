package imapfront

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// bcryptCost is the cost HashPassword uses.
const bcryptCost = 10

// Bounds on argon2id parameters read from the configuration, so that a typo
// cannot make every login allocate gigabytes.
const (
	argonMaxMemoryKiB = 1 << 21 // 2 GiB
	argonMaxTime      = 100
	argonMaxThreads   = 255
)

// errBadHash reports a password hash in a format popbridge cannot verify.
var errBadHash = errors.New("imapfront: unsupported password hash")

// HashPassword returns a bcrypt hash (cost 10) of password, the format of
// User.PasswordHash and of `popbridge hash-password`.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// verifyPassword reports whether password matches hash, a bcrypt
// ($2a$/$2b$/$2y$) or argon2id ($argon2id$v=19$m=..,t=..,p=..$salt$hash) PHC
// string. A malformed hash is an error, never a match. Successful
// verifications are remembered by passwordCache; the dummy hash is always
// verified in full, so an unknown user costs a whole verification.
func verifyPassword(hash, password string) (bool, error) {
	if hash == dummyHash() {
		return verifyHash(hash, password)
	}
	return passwordCache.verify(hash, password)
}

// verifyHash is verifyPassword without the cache: the real bcrypt or
// argon2id computation.
func verifyHash(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("verify bcrypt hash: %w", err)
		}
		return true, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	}
	return false, errBadHash
}

// verifyArgon2id checks password against a PHC argon2id string.
func verifyArgon2id(hash, password string) (bool, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[1] != "argon2id" {
		return false, fmt.Errorf("parse argon2id hash: %w", errBadHash)
	}
	if f[2] != "v=19" {
		return false, fmt.Errorf("parse argon2id hash: version %q: %w", f[2], errBadHash)
	}
	var m, t, p uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return false, fmt.Errorf("parse argon2id parameters: %w", errBadHash)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, fmt.Errorf("parse argon2id parameter %s: %w", k, errBadHash)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return false, fmt.Errorf("parse argon2id parameter %s: %w", k, errBadHash)
		}
	}
	if m == 0 || t == 0 || p == 0 || m > argonMaxMemoryKiB || t > argonMaxTime || p > argonMaxThreads {
		return false, fmt.Errorf("argon2id parameters out of range: %w", errBadHash)
	}
	salt, err := decodePHCBase64(f[4])
	if err != nil {
		return false, fmt.Errorf("decode argon2id salt: %w", errBadHash)
	}
	want, err := decodePHCBase64(f[5])
	if err != nil || len(want) < 4 {
		return false, fmt.Errorf("decode argon2id hash: %w", errBadHash)
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// decodePHCBase64 decodes the unpadded standard base64 of PHC strings,
// accepting padding too.
func decodePHCBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// dummyHash is verified against for unknown user names, so that a failed
// login costs the same whether the user exists or not.
var dummyHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("popbridge-dummy-password"), bcryptCost)
	if err != nil {
		// bcrypt only fails for passwords over 72 bytes or a bad cost.
		panic(fmt.Sprintf("imapfront: dummy hash: %v", err))
	}
	return string(h)
})

// Bounds of the verification cache, as Dovecot's auth_cache_ttl and
// auth_cache_size.
const (
	verifyCacheTTL  = 5 * time.Minute
	verifyCacheSize = 10_000
)

// passwordCache is the process's verification cache.
var passwordCache = newVerifyCache(verifyHash, verifyCacheTTL, verifyCacheSize, time.Now)

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
