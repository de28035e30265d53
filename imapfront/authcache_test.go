package imapfront

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// countingCache is a verifyCache over the real verification, counting the
// verifications it really runs, with a settable clock.
type countingCache struct {
	*verifyCache
	calls atomic.Int64
	mu    sync.Mutex
	now   time.Time
}

func newCountingCache(size int) *countingCache {
	c := &countingCache{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c.verifyCache = newVerifyCache(func(hash, password string) (bool, error) {
		c.calls.Add(1)
		return verifyHash(hash, password)
	}, verifyCacheTTL, size, c.clock)
	return c
}

func (c *countingCache) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *countingCache) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *countingCache) mustVerify(t *testing.T, hash, password string, want bool) {
	t.Helper()
	ok, err := c.verify(hash, password)
	if err != nil || ok != want {
		t.Fatalf("verify(%q) = %v, %v; want %v", password, ok, err, want)
	}
}

func testBcrypt(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestVerifyCache(t *testing.T) {
	hash := testBcrypt(t, "right")
	tests := []struct {
		name string
		run  func(t *testing.T, c *countingCache)
		want int64 // real verifications
	}{
		{"repeated logins verify once", func(t *testing.T, c *countingCache) {
			for range 5 {
				c.mustVerify(t, hash, "right", true)
			}
		}, 1},
		{"wrong password never cached", func(t *testing.T, c *countingCache) {
			c.mustVerify(t, hash, "wrong", false)
			c.mustVerify(t, hash, "wrong", false)
			c.mustVerify(t, hash, "right", true)
			c.mustVerify(t, hash, "wrong", false) // a cached success does not cover another password
			c.mustVerify(t, hash, "right", true)
		}, 4},
		{"changed hash verifies again", func(t *testing.T, c *countingCache) {
			c.mustVerify(t, hash, "right", true)
			newHash := testBcrypt(t, "newpw")
			c.mustVerify(t, newHash, "right", false) // the old password under the new hash
			c.mustVerify(t, newHash, "newpw", true)
			c.mustVerify(t, newHash, "newpw", true)
		}, 3},
		{"expired entry verifies again", func(t *testing.T, c *countingCache) {
			c.mustVerify(t, hash, "right", true)
			c.advance(verifyCacheTTL - time.Second)
			c.mustVerify(t, hash, "right", true)
			c.advance(time.Second)
			c.mustVerify(t, hash, "right", true)
			c.mustVerify(t, hash, "right", true)
		}, 2},
		{"malformed hash is an error, never cached", func(t *testing.T, c *countingCache) {
			for range 2 {
				if ok, err := c.verify("$2a$garbage", "right"); ok || err == nil {
					t.Fatalf("verify(bad hash) = %v, %v", ok, err)
				}
			}
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCountingCache(verifyCacheSize)
			tt.run(t, c)
			if got := c.calls.Load(); got != tt.want {
				t.Errorf("%d real verifications, want %d", got, tt.want)
			}
		})
	}
}

func TestVerifyCacheBounded(t *testing.T) {
	c := newCountingCache(3)
	hashes := make([]string, 5)
	for i := range hashes {
		hashes[i] = testBcrypt(t, "pw")
		c.mustVerify(t, hashes[i], "pw", true)
	}
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	// The newest is always kept.
	before := c.calls.Load()
	c.mustVerify(t, hashes[4], "pw", true)
	if c.calls.Load() != before {
		t.Error("the newest entry was evicted")
	}
}

// TestVerifyCacheConcurrent checks that simultaneous identical logins wait
// for one verification, and that waiters on a failed one verify on their
// own.
func TestVerifyCacheConcurrent(t *testing.T) {
	tests := []struct {
		name      string
		password  string
		want      bool
		wantCalls int64
	}{
		{"success shared", "right", true, 1},
		{"failure not shared", "wrong", false, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				var calls atomic.Int64
				c := newVerifyCache(func(hash, password string) (bool, error) {
					if calls.Add(1) == 1 {
						<-release // hold the first verification until all have arrived
					}
					return password == "right", nil
				}, verifyCacheTTL, verifyCacheSize, time.Now)
				var wg sync.WaitGroup
				results := make([]bool, 20)
				for i := range results {
					wg.Go(func() {
						ok, err := c.verify("$2a$hash", tt.password)
						if err != nil {
							t.Errorf("verify: %v", err)
						}
						results[i] = ok
					})
				}
				synctest.Wait() // 1 verifying, 19 waiting for it
				if got := calls.Load(); got != 1 {
					t.Fatalf("%d verifications started while the first ran, want 1", got)
				}
				close(release)
				wg.Wait()
				for i, ok := range results {
					if ok != tt.want {
						t.Errorf("login %d: ok = %v, want %v", i, ok, tt.want)
					}
				}
				if got := calls.Load(); got != tt.wantCalls {
					t.Errorf("%d verifications, want %d", got, tt.wantCalls)
				}
			})
		})
	}
}

// TestLoginCacheEndToEnd checks through the server that a cached success
// serves neither a wrong password nor a password replaced by SetUsers.
func TestLoginCacheEndToEnd(t *testing.T) {
	env := newEnv(t)
	env.rawLogin("alice")
	env.rawLogin("alice") // from the cache
	if _, st := env.raw().cmd("LOGIN alice wrong-password"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("wrong password after a cached success: %s", st)
	}
	newHash, err := HashPassword("alice-new")
	if err != nil {
		t.Fatal(err)
	}
	users := []User{{Name: "alice", PasswordHash: newHash}}
	env.srv.SetUsers(users)
	if _, st := env.raw().cmd("LOGIN alice %s", testPasswords["alice"]); !strings.HasPrefix(st, "NO") {
		t.Fatalf("old password after SetUsers: %s", st)
	}
	env.raw().ok("LOGIN alice alice-new")
}

// TestLoginCachePerServer: each Server has its own verification cache, so
// a login remembered by one is not by another in the same process.
func TestLoginCachePerServer(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	if a.srv.passwords == b.srv.passwords {
		t.Fatal("two servers share one login cache")
	}
	h, err := HashPassword("pw-one")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a.srv.verifyPassword(h, "pw-one"); !ok || err != nil {
		t.Fatalf("verify = %v, %v", ok, err)
	}
	count := func(c *verifyCache) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.entries)
	}
	if count(a.srv.passwords) != 1 || count(b.srv.passwords) != 0 {
		t.Errorf("cache entries: a %d, b %d; want 1 and 0", count(a.srv.passwords), count(b.srv.passwords))
	}
}
