package imapfront

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestParallelGuessesCostSequentialPenalty: N wrong passwords sent at once
// from one address, on N connections, are checked one after the other, each
// after the penalty of the one before, so they take at least as long as N
// sequential guesses would. The fake clock of the throttle (which sleeping
// advances) dates each password check; nothing really waits.
func TestParallelGuessesCostSequentialPenalty(t *testing.T) {
	var mu sync.Mutex
	var checked []time.Duration
	var env *testEnv
	var start time.Time
	env = newEnvHook(t, func(s *Server) {
		s.faultHook = func(p string) {
			if p == "login-verify" {
				mu.Lock()
				checked = append(checked, env.clock.Now().Sub(start))
				mu.Unlock()
			}
		}
	})
	start = env.clock.Now()
	const n = 5
	conns := make([]*rawClient, n)
	for i := range conns {
		conns[i] = env.raw()
	}
	for i, c := range conns {
		c.write("a LOGIN alice wrong-%d", i)
	}
	for i, c := range conns {
		if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("guess %d: %q", i, l)
		}
	}
	// Sequential guesses: the k-th is checked once the penalties of the
	// k-1 before it (2, 4, 8, 15 s) have passed.
	penalty := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(checked)
	if len(checked) != n {
		t.Fatalf("%d password checks, want %d", len(checked), n)
	}
	var due time.Duration
	for k, at := range checked {
		if at < due {
			t.Fatalf("guess %d checked at +%v, before the sequential penalty of the guesses before it (+%v); all checks: %v", k+1, at, due, checked)
		}
		due += penalty[k]
	}
	if total := env.clock.Now().Sub(start); total < due {
		t.Fatalf("%d parallel guesses took %v, %d sequential ones take %v", n, total, n, due)
	}
}
