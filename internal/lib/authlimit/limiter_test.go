package authlimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTest returns a limiter on a fake clock; opts.Now is overwritten.
func newTest(t *testing.T, opts Options) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	opts.Now = clk.Now
	if opts.Sleep == nil {
		opts.Sleep = func(context.Context, time.Duration) error {
			t.Error("unexpected real sleep")
			return nil
		}
	}
	return New(opts), clk
}

// Addresses from the documentation ranges (RFC 5737, RFC 3849); nothing is
// dialled.
var (
	attacker = netip.MustParseAddr("192.0.2.66")
	phone    = netip.MustParseAddr("198.51.100.7")
)

func TestCurve(t *testing.T) {
	l, _ := newTest(t, Options{})
	if d := l.Delay(attacker, "bob"); d != 0 {
		t.Fatalf("delay before any failure = %v, want 0", d)
	}
	want := []time.Duration{2, 4, 8, 15, 15, 15}
	for i, w := range want {
		l.Failure(attacker, "bob", fmt.Sprintf("fp%d", i))
		if got := l.Delay(attacker, "bob"); got != w*time.Second {
			t.Errorf("after failure %d: delay = %v, want %v", i+1, got, w*time.Second)
		}
	}
}

func TestDelayCountsFromLastFailure(t *testing.T) {
	l, clk := newTest(t, Options{})
	l.Failure(attacker, "bob", "a")
	l.Failure(attacker, "bob", "b") // level 4 s
	clk.Advance(3 * time.Second)
	if got := l.Delay(attacker, "bob"); got != time.Second {
		t.Fatalf("3 s after a 4 s penalty: delay = %v, want 1s", got)
	}
	clk.Advance(time.Minute)
	if got := l.Delay(attacker, "bob"); got != 0 {
		t.Fatalf("after the penalty elapsed: delay = %v, want 0", got)
	}
	// The level is remembered: the next failure escalates.
	l.Failure(attacker, "bob", "c")
	if got := l.Delay(attacker, "bob"); got != 8*time.Second {
		t.Fatalf("third failure a minute later: delay = %v, want 8s", got)
	}
}

func TestForget(t *testing.T) {
	l, clk := newTest(t, Options{Forget: 10 * time.Minute})
	for i := range 5 {
		l.Failure(attacker, "bob", fmt.Sprint(i))
	}
	clk.Advance(10*time.Minute - time.Second)
	l.Failure(attacker, "bob", "late") // still remembered: stays at max
	if got := l.Delay(attacker, "bob"); got != 15*time.Second {
		t.Fatalf("failure just inside Forget: delay = %v, want 15s", got)
	}
	clk.Advance(10 * time.Minute)
	if got := l.Delay(attacker, "bob"); got != 0 {
		t.Fatalf("after Forget: delay = %v, want 0", got)
	}
	l.Failure(attacker, "bob", "again")
	if got := l.Delay(attacker, "bob"); got != 2*time.Second {
		t.Fatalf("first failure after Forget: delay = %v, want 2s (reset)", got)
	}
	if s := l.Stats(); s.Addrs != 1 || s.Users != 1 {
		t.Fatalf("stats = %+v, want 1 address and 1 user", s)
	}
}

func TestSamePasswordDoesNotEscalate(t *testing.T) {
	l, clk := newTest(t, Options{Max: time.Hour})
	for range 5 {
		l.Failure(phone, "Bob", "oldpw")
		clk.Advance(time.Minute)
	}
	if got := l.Delay(phone, "bob"); got != 0 {
		t.Fatalf("delay after 5 repeats a minute apart = %v, want 0", got)
	}
	l.Failure(phone, "BOB", "oldpw")
	if got := l.Delay(phone, "bob"); got != 2*time.Second {
		t.Fatalf("same password retried 6 times: delay = %v, want 2s", got)
	}
	// The user record did not escalate either.
	if got := l.Delay(attacker, "bob"); got != 2*time.Second {
		t.Fatalf("bob from elsewhere: delay = %v, want 2s", got)
	}
	// The same fingerprint for another user is another pair.
	l.Failure(phone, "alice", "oldpw")
	if got := l.Delay(phone, "x"); got != 4*time.Second {
		t.Fatalf("address after a new (user, password) pair: delay = %v, want 4s", got)
	}
}

func TestSamePasswordWindowIsTen(t *testing.T) {
	l, _ := newTest(t, Options{Max: 24 * time.Hour})
	l.Failure(phone, "bob", "p0") // level 2s
	for i := 1; i <= RecentPasswords-1; i++ {
		l.Failure(phone, "bob", fmt.Sprintf("p%d", i))
	}
	// p0 is still among the last 10.
	before := l.Delay(phone, "bob")
	l.Failure(phone, "bob", "p0")
	if got := l.Delay(phone, "bob"); got != before {
		t.Fatalf("p0 within last 10: delay %v -> %v, want unchanged", before, got)
	}
	l.Failure(phone, "bob", "p10") // pushes p0 out
	before = l.Delay(phone, "bob")
	l.Failure(phone, "bob", "p0")
	if got := l.Delay(phone, "bob"); got != 2*before {
		t.Fatalf("p0 after 10 newer failures: delay %v -> %v, want doubled", before, got)
	}
}

func TestEmptyFingerprintAlwaysEscalates(t *testing.T) {
	l, _ := newTest(t, Options{})
	l.Failure(attacker, "bob", "")
	l.Failure(attacker, "bob", "")
	if got := l.Delay(attacker, "bob"); got != 4*time.Second {
		t.Fatalf("two failures without fingerprint: delay = %v, want 4s", got)
	}
}

func TestOtherAddressNotDelayedByAttacker(t *testing.T) {
	l, _ := newTest(t, Options{})
	for i := range 100 {
		l.Failure(attacker, "bob", fmt.Sprint(i))
	}
	tests := []struct {
		name string
		addr netip.Addr
		user string
		want time.Duration
	}{
		{"other user from other address", phone, "alice", 0},
		{"other user from attacker address", attacker, "alice", 15 * time.Second},
		// The documented trade-off: the per-user record applies everywhere, capped.
		{"attacked user from other address", phone, "bob", 15 * time.Second},
		{"attacked user, other case", phone, "BoB", 15 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.Delay(tc.addr, tc.user); got != tc.want {
				t.Fatalf("Delay(%v, %q) = %v, want %v", tc.addr, tc.user, got, tc.want)
			}
		})
	}
	// Bob logs in from his phone: his user record goes, the attacker's
	// address record stays.
	l.Success(phone, "bob")
	if got := l.Delay(phone, "bob"); got != 0 {
		t.Fatalf("after bob's success: Delay(phone, bob) = %v, want 0", got)
	}
	if got := l.Delay(attacker, "mallory"); got != 15*time.Second {
		t.Fatalf("after bob's success: Delay(attacker, mallory) = %v, want 15s", got)
	}
	// The attacker resets its address record with its own account; bob's
	// user record still escalates on the next guesses.
	l.Failure(attacker, "bob", "x1")
	l.Success(attacker, "mallory")
	if got := l.Delay(attacker, "mallory"); got != 0 {
		t.Fatalf("after mallory's success: delay = %v, want 0", got)
	}
	l.Failure(attacker, "bob", "x2")
	if got := l.Delay(phone, "bob"); got != 4*time.Second {
		t.Fatalf("bob's user record after 2 more guesses: delay = %v, want 4s", got)
	}
}

func TestAddrGroup(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"IPv6 same /48", "2001:db8:1::1", "2001:db8:1:ffff:ffff::9", true},
		{"IPv6 other /48", "2001:db8:1::1", "2001:db8:2::1", false},
		{"IPv6 zone ignored", "fe80::1%eth0", "fe80::2", true},
		{"IPv4 per address", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is IPv4", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"IPv4 and IPv6 differ", "192.0.2.1", "2001:db8::1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTest(t, Options{})
			a, b := netip.MustParseAddr(tc.a), netip.MustParseAddr(tc.b)
			if got := AddrGroup(a) == AddrGroup(b); got != tc.same {
				t.Fatalf("AddrGroup(%v)=%v, AddrGroup(%v)=%v: same=%v, want %v",
					a, AddrGroup(a), b, AddrGroup(b), got, tc.same)
			}
			l.Failure(a, "u1", "p")
			want := time.Duration(0)
			if tc.same {
				want = 2 * time.Second
			}
			if got := l.Delay(b, "u2"); got != want {
				t.Fatalf("Delay(%v) after failure from %v = %v, want %v", b, a, got, want)
			}
		})
	}
}

func TestMemoryBound(t *testing.T) {
	const max = 10
	// The clock stands still, so every penalty is still running and Delay
	// shows which records survive.
	l, _ := newTest(t, Options{MaxEntries: max})
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 20 {
		l.Failure(addr(i), fmt.Sprintf("user%d", i), "p")
		if s := l.Stats(); s.Addrs+s.Users > max {
			t.Fatalf("after %d failures: %d records, bound %d", i+1, s.Addrs+s.Users, max)
		}
	}
	// The five newest (address, user) pairs survive, the oldest are gone.
	for i := range 20 {
		got := l.Delay(addr(i), fmt.Sprintf("user%d", i)) > 0
		if want := i >= 15; got != want {
			t.Errorf("pair %d: delayed=%v, want %v", i, got, want)
		}
	}
	// A recently failing key survives newer ones when touched again.
	l.Failure(addr(15), "user15", "q")
	for i := 20; i < 24; i++ {
		l.Failure(addr(i), fmt.Sprintf("user%d", i), "p")
	}
	if l.Delay(addr(15), "") == 0 {
		t.Fatal("address 15, touched after 16..19, was evicted before them")
	}
	if l.Delay(addr(16), "") != 0 {
		t.Fatal("address 16, the oldest, was not evicted")
	}
}

func TestLongUserNames(t *testing.T) {
	l, _ := newTest(t, Options{})
	long := strings.Repeat("a", 5000)
	l.Failure(attacker, long+"X", "p")
	if got := l.Delay(phone, long+"x"); got != 2*time.Second {
		t.Fatalf("same long name, other case: delay = %v, want 2s", got)
	}
	if got := l.Delay(phone, long+"y"); got != 0 {
		t.Fatalf("long name differing in the last byte: delay = %v, want 0", got)
	}
	if k := userKey(long); len(k) > maxUserKey {
		t.Fatalf("userKey of a 5000-byte name is %d bytes", len(k))
	}
}

func TestTrusted(t *testing.T) {
	l, _ := newTest(t, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	proxy := netip.MustParseAddr("203.0.113.9")
	for range 5 {
		l.Failure(proxy, "bob", "")
	}
	if got := l.Delay(phone, "bob"); got != 0 {
		t.Fatalf("failures from a trusted address delayed bob elsewhere by %v", got)
	}
	l.Failure(attacker, "bob", "")
	if got := l.Delay(proxy, "bob"); got != 0 {
		t.Fatalf("trusted address delayed by %v", got)
	}
	if s := l.Stats(); s.Addrs != 1 || s.Users != 1 {
		t.Fatalf("stats = %+v, want only the untrusted failure recorded", s)
	}
}

func TestWait(t *testing.T) {
	var slept []time.Duration
	sleepErr := error(nil)
	l, _ := newTest(t, Options{Sleep: func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		return sleepErr
	}})
	ctx := context.Background()
	if err := l.Wait(ctx, phone, "bob"); err != nil || len(slept) != 0 {
		t.Fatalf("Wait without penalty: err=%v, slept %v; want nil and no sleep", err, slept)
	}
	l.Failure(phone, "bob", "a")
	l.Failure(phone, "bob", "b")
	if err := l.Wait(ctx, phone, "bob"); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if len(slept) != 1 || slept[0] != 4*time.Second {
		t.Fatalf("slept %v, want [4s]", slept)
	}
	sleepErr = context.Canceled
	err := l.Wait(ctx, phone, "bob")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a failing sleeper: err = %v, want context.Canceled", err)
	}
}

func TestDefaultSleep(t *testing.T) {
	clk := newFakeClock()
	l := New(Options{Now: clk.Now, Base: time.Hour, Max: time.Hour})
	l.Failure(phone, "bob", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := l.Wait(ctx, phone, "bob")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled ctx: err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Wait with a cancelled ctx took %v", el)
	}
	if err := sleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("sleepCtx(1ms) = %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	l := New(Options{Base: time.Minute, MaxEntries: 1})
	if l.base != DefaultMax || l.max != DefaultMax {
		t.Errorf("Base above default Max: base=%v max=%v, want both %v", l.base, l.max, DefaultMax)
	}
	if l.forget != DefaultForget || l.maxEntries != 2 {
		t.Errorf("forget=%v maxEntries=%d, want %v and 2", l.forget, l.maxEntries, DefaultForget)
	}
	if New(Options{}).maxEntries != DefaultMaxEntries {
		t.Error("zero MaxEntries does not give the default")
	}
}

func TestConcurrent(t *testing.T) {
	l, clk := newTest(t, Options{MaxEntries: 50, Sleep: func(context.Context, time.Duration) error { return nil }})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 40)})
				u := fmt.Sprintf("user%d", (i+g)%30)
				switch i % 5 {
				case 0, 1:
					l.Failure(a, u, fmt.Sprint(i%7))
				case 2:
					if d := l.Delay(a, u); d < 0 || d > DefaultMax {
						t.Errorf("delay %v out of range", d)
					}
				case 3:
					if err := l.Wait(context.Background(), a, u); err != nil {
						t.Errorf("Wait: %v", err)
					}
				case 4:
					if i%20 == 4 {
						l.Success(a, u)
					}
					clk.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	if s := l.Stats(); s.Addrs+s.Users > 50 {
		t.Fatalf("stats %+v exceed MaxEntries 50", s)
	}
	// Records and LRU list agree.
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.addrs) + len(l.users); n != l.lru.Len() {
		t.Fatalf("%d records in maps, %d in LRU list", n, l.lru.Len())
	}
}

func TestFingerprinter(t *testing.T) {
	f1, f2 := NewFingerprinter(), NewFingerprinter()
	a := f1.Fingerprint("secret")
	if len(a) != 32 {
		t.Fatalf("fingerprint %q: %d chars, want 32", a, len(a))
	}
	if strings.Contains(a, "secret") {
		t.Fatal("fingerprint contains the password")
	}
	if f1.Fingerprint("secret") != a {
		t.Error("same Fingerprinter, same password: fingerprints differ")
	}
	if f1.Fingerprint("secret2") == a {
		t.Error("different passwords: same fingerprint")
	}
	if f2.Fingerprint("secret") == a {
		t.Error("different keys: same fingerprint")
	}
}

// BenchmarkFailureDistinct records failures from distinct addresses and
// users at the MaxEntries bound and reports the heap cost per record.
func BenchmarkFailureDistinct(b *testing.B) {
	const n = 100_000
	clk := newFakeClock()
	l := New(Options{Now: clk.Now, MaxEntries: n})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n / 2 {
		l.Failure(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), fmt.Sprintf("user%06d", i), "p")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perRecord := float64(after.HeapAlloc-before.HeapAlloc) / n
	for i := 0; b.Loop(); i++ {
		l.Failure(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), "u"+strconv.Itoa(i), "p")
	}
	if s := l.Stats(); s.Addrs+s.Users > n {
		b.Fatalf("%d records, bound %d", s.Addrs+s.Users, n)
	}
	b.ReportMetric(perRecord, "heapB/record")
}

// TestAcquireOneAttemptPerAddress: a second attempt from the same address
// group waits for the first one's release; other addresses do not wait.
func TestAcquireOneAttemptPerAddress(t *testing.T) {
	lim := New(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	ctx := context.Background()
	a := netip.MustParseAddr("192.0.2.1")
	relA, err := lim.Acquire(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// Another address and a trusted one get their turn at once.
	relB, err := lim.Acquire(ctx, netip.MustParseAddr("192.0.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	relB()
	for range 2 {
		relT, err := lim.Acquire(ctx, netip.MustParseAddr("10.1.2.3"))
		if err != nil {
			t.Fatal(err)
		}
		defer relT()
	}
	// The same address waits until relA.
	got := make(chan func(), 1)
	go func() {
		rel, err := lim.Acquire(ctx, a)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- rel
	}()
	// A waiter that gives up gets ctx's error and takes no turn.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := lim.Acquire(cctx, a); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", err)
	}
	select {
	case <-got:
		t.Fatal("second attempt got its turn while the first is in progress")
	default:
	}
	relA()
	relA() // a second release does nothing
	rel := <-got
	if rel == nil {
		t.FailNow()
	}
	if n := lim.InProgress(); n != 1 {
		t.Fatalf("InProgress = %d, want 1", n)
	}
	rel()
	if n := lim.InProgress(); n != 0 {
		t.Fatalf("InProgress after release = %d, want 0", n)
	}
}
