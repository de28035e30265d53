package imapfront

import (
	"errors"
	"net"
	"os"
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
		// Each wrong password is new to the verification cache: every
		// guess reaches the real verification, which notes when.
		s.passwords = newVerifyCache(func(hash, password string) (bool, error) {
			mu.Lock()
			checked = append(checked, env.clock.Now().Sub(start))
			mu.Unlock()
			return verifyHash(hash, password)
		}, verifyCacheTTL, verifyCacheSize, time.Now)
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

// closedByServer waits until the server closes c (EOF or reset), failing
// after ioWait.
func closedByServer(t *testing.T, c *rawClient) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(ioWait))
	buf := make([]byte, 256)
	for {
		_, err := c.br.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open")
		}
		return
	}
}

// TestPreLoginBudget: connections that never send a byte fill only the
// pre-login budget; each newcomer closes the oldest of them, a real client
// still connects and logs in, and a logged-in client's IDLE keeps working.
func TestPreLoginBudget(t *testing.T) {
	const budget = 3
	env := newEnv(t, func(o *Options) { o.MaxConns = 20; o.MaxPreLoginConns = budget })
	env.deliver("alice", "INBOX", msg("one"))
	idler := env.rawSelected("alice", "INBOX")
	idler.idle()

	var silent []*rawClient
	for range 4 * budget {
		silent = append(silent, env.raw()) // reads the greeting, then says nothing
	}
	if n := env.srv.pre.len(); n != budget {
		t.Fatalf("%d connections not logged in, want the budget %d", n, budget)
	}
	for _, c := range silent[:len(silent)-budget] {
		closedByServer(t, c)
	}
	// A real client, with the budget full of silent connections.
	fresh := env.rawLogin("bob")
	fresh.ok("SELECT INBOX")
	// The logged-in clients are not counted against the budget.
	if n := env.srv.pre.len(); n != budget-1 {
		t.Fatalf("%d connections not logged in after bob's login, want %d", n, budget-1)
	}
	env.deliver("alice", "INBOX", msg("two"))
	idler.expect("* 2 EXISTS")
	idler.done()
	if n := env.srv.pre.evicted.Load(); n != 4*budget-budget+1 {
		t.Fatalf("%d connections closed for room, want %d", n, 4*budget-budget+1)
	}
}

// TestPreLoginGivesWayAtTotal: with the total cap reached, the oldest
// connection that has not logged in gives way to the newcomer; logged-in
// connections never do, and with only those left the newcomer gets BYE.
func TestPreLoginGivesWayAtTotal(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.MaxConns = 3; o.MaxPreLoginConns = -1 })
	a := env.rawLogin("alice")
	s1, s2 := env.raw(), env.raw() // total reached: 1 logged in, 2 silent
	b := env.rawLogin("bob")       // s1 gives way
	closedByServer(t, s1)
	c := env.rawLogin("alice") // s2 gives way
	closedByServer(t, s2)
	expectBye(t, env.addr, "127.0.0.1") // all three logged in
	for _, cl := range []*rawClient{a, b, c} {
		cl.ok("NOOP")
	}
}

// TestReadTimeoutIsFinal: once a read has timed out, every later read fails
// at once with the same error: imapserver, which waits for a command under
// two deadlines in a row, then closes a silent connection after one
// PreAuthTimeout, not two.
func TestReadTimeoutIsFinal(t *testing.T) {
	env := newEnv(t)
	client, server := net.Pipe()
	defer client.Close()
	cs := newConnState(env.srv, server)
	cs.SetReadDeadline(time.Now().Add(-time.Second))
	buf := make([]byte, 8)
	if _, err := cs.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first read: %v, want a deadline error", err)
	}
	cs.SetReadDeadline(time.Now().Add(time.Hour))
	go client.Write([]byte("a NOOP\r\n"))
	if n, err := cs.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a timeout: %d bytes, %v; want the deadline error at once", n, err)
	}
}

// TestIdleMemoryRelease: when the last connection closes and none opens
// for a while, the server empties its converted-metadata cache and returns
// free memory to the system.
func TestIdleMemoryRelease(t *testing.T) {
	released := make(chan struct{}, 4)
	env := newEnvHook(t, func(s *Server) {
		hooksOf(t, s).releaseAfter = 50 * time.Millisecond
		hooksOf(t, s).freeMemory = func() { released <- struct{}{} }
	})
	env.deliver("alice", "INBOX", msg("one"))
	c := env.rawSelected("alice", "INBOX")
	c.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE)")
	if env.srv.conv.len() == 0 {
		t.Fatal("FETCH cached nothing")
	}
	c.cmd("LOGOUT")
	select {
	case <-released:
	case <-time.After(ioWait):
		t.Fatal("no memory release after the last connection closed")
	}
	if n := env.srv.conv.len(); n != 0 {
		t.Fatalf("%d converted entries kept while idle", n)
	}
}
