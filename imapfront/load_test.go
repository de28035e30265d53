package imapfront

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/popbridge/popbridge/store"
)

var (
	loadFlag  = flag.Bool("load", false, "run TestLoad (500 IMAP connections for -load-secs)")
	loadSecs  = flag.Int("load-secs", 60, "duration of TestLoad in seconds")
	loadConns = flag.Int("load-conns", 500, "concurrent IMAP connections in TestLoad")
)

// Load-test shape.
const (
	loadUsers        = 10                     // users the connections are spread over
	loadDeliverEvery = 20 * time.Millisecond  // one delivery (to the next user) per tick
	loadThinkMin     = 100 * time.Millisecond // client pause between commands
	loadThinkMax     = 400 * time.Millisecond
)

// TestLoad runs -load-conns concurrent connections over loopback for
// -load-secs: a third IDLE in INBOX, a third FETCH, a third STORE flags,
// while a goroutine delivers through store.Deliver (the poller's path).
// Nothing may be lost (every delivered message is in the user's INBOX for a
// final session, every IDLE session's EXISTS counts rise and end at the
// final count) and no command may fail. Peak RSS (client and server share
// the process), peak goroutines and command latencies are logged.
//
//	go test ./imapfront -run TestLoad -load [-load-secs 60] [-load-conns 500]
//
// (the package before the flags: cmd/go passes everything after an unknown
// flag to the test binary).
func TestLoad(t *testing.T) {
	if !*loadFlag {
		t.Skip("load test: run with -load")
	}
	raiseNoFile(t, uint64(4*(*loadConns)+256))
	users := make(map[string]string, loadUsers) // name -> password
	var extra []User
	for i := range loadUsers {
		name, pw := fmt.Sprintf("load%d", i), fmt.Sprintf("pw-%d", i)
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users[name] = pw
		extra = append(extra, User{Name: name, PasswordHash: string(h)})
	}
	env := newEnv(t, func(o *Options) {
		o.Users = append(o.Users, extra...)
		o.MaxConns = 2 * (*loadConns)
		o.Hinter = nil
	})
	names := make([]string, 0, loadUsers)
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	initial := make(map[string]int)
	for _, n := range names {
		for range 5 {
			deliverTo(t, env.st, n, "INBOX", msg("load seed"))
		}
		initial[n] = 5
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*loadSecs)*time.Second)
	defer cancel()
	var (
		cmds, protoErrs atomic.Int64
		latMu           sync.Mutex
		lats            []time.Duration
		latsByKind      = map[string][]time.Duration{}
		errMu           sync.Mutex
		errs            []string
	)
	fail := func(format string, args ...any) {
		protoErrs.Add(1)
		errMu.Lock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
		errMu.Unlock()
	}

	// Connect everyone first.
	type sess struct {
		c    *rawClient
		user string
		role int // 0 IDLE, 1 FETCH, 2 STORE
	}
	sessions := make([]*sess, *loadConns)
	for i := range sessions {
		u := names[i%len(names)]
		conn, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer conn.Close()
		c := &rawClient{t: t, conn: conn, br: bufio.NewReaderSize(conn, 16<<10)}
		c.line() // greeting
		c.ok("LOGIN %s %s", u, users[u])
		sessions[i] = &sess{c: c, user: u, role: i % 3}
	}
	t.Logf("%d connections logged in; goroutines %d", len(sessions), runtime.NumGoroutine())

	// Deliver until the deadline.
	delivered := make(map[string][]store.UID)
	var delivMu sync.Mutex
	var wg, delivWG sync.WaitGroup
	delivWG.Add(1)
	go func() {
		defer delivWG.Done()
		tick := time.NewTicker(loadDeliverEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			u := names[i%len(names)]
			d, err := env.st.Deliver(context.Background(), []store.Delivery{{
				Account: "load-" + u, UIDL: fmt.Sprintf("load-%d", i), Digest: "d",
				User: u, Folder: "INBOX", Raw: []byte(msg(fmt.Sprintf("load %d", i))),
			}})
			if err != nil {
				fail("deliver: %v", err)
				return
			}
			delivMu.Lock()
			delivered[u] = append(delivered[u], d[0].UID)
			delivMu.Unlock()
		}
	}()

	var peakG atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			if g := int64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	// idleSeen[i] is the EXISTS sequence seen by IDLE session i.
	idleSeen := make([][]uint32, len(sessions))
	idleDone := make(chan struct{}) // closed when deliveries have stopped
	expected := make(map[string]uint32)
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			exists, err := loadSelect(s.c)
			if err != nil {
				fail("session %d SELECT: %v", i, err)
				return
			}
			if s.role == 0 {
				idleSeen[i] = loadIdle(s.c, exists, idleDone, func() uint32 { return expected[s.user] }, fail, i)
				return
			}
			var local []time.Duration
			kind := map[int]string{1: "FETCH", 2: "STORE"}[s.role]
			defer func() {
				latMu.Lock()
				lats = append(lats, local...)
				latsByKind[kind] = append(latsByKind[kind], local...)
				latMu.Unlock()
			}()
			for n := 0; ctx.Err() == nil; n++ {
				select {
				case <-ctx.Done():
				case <-time.After(loadThinkMin + time.Duration(rng.Int64N(int64(loadThinkMax-loadThinkMin)))):
				}
				var cmd string
				switch {
				case s.role == 1 && n%2 == 0:
					cmd = "FETCH 1:* (UID FLAGS)"
				case s.role == 1:
					cmd = fmt.Sprintf("FETCH %d (UID RFC822.SIZE BODY.PEEK[])", 1+rng.IntN(int(exists)))
				case n%2 == 0:
					cmd = fmt.Sprintf("STORE %d +FLAGS (\\Seen $Load%d)", 1+rng.IntN(int(exists)), i)
				default:
					cmd = fmt.Sprintf("STORE %d -FLAGS.SILENT ($Load%d)", 1+rng.IntN(int(exists)), i)
				}
				start := time.Now()
				untagged, st, err := loadCmd(s.c, cmd)
				local = append(local, time.Since(start))
				cmds.Add(1)
				if err != nil || !strings.HasPrefix(st, "OK") {
					fail("session %d %q: %q %v", i, cmd, st, err)
					return
				}
				if e, ok := lastExists(untagged); ok {
					if e < exists {
						fail("session %d: EXISTS went down %d -> %d", i, exists, e)
					}
					exists = e
				}
			}
		}()
	}

	<-ctx.Done()
	// The deliverer's last Deliver has committed once it returns; then the
	// IDLE sessions learn the count to wait for.
	delivWG.Wait()
	delivMu.Lock()
	for _, u := range names {
		expected[u] = uint32(initial[u] + len(delivered[u]))
	}
	delivMu.Unlock()
	close(idleDone)
	wg.Wait()

	// Final sessions: every delivered message is there.
	totalDelivered := 0
	for _, u := range names {
		totalDelivered += len(delivered[u])
		c := env.raw()
		c.ok("LOGIN %s %s", u, users[u])
		c.ok("SELECT INBOX")
		got := map[store.UID]bool{}
		for _, l := range c.ok("UID SEARCH ALL") {
			if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
				for _, f := range strings.Fields(rest) {
					n, _ := strconv.ParseUint(f, 10, 32)
					got[store.UID(n)] = true
				}
			}
		}
		for _, uid := range delivered[u] {
			if !got[uid] {
				t.Errorf("%s: delivered UID %d missing", u, uid)
			}
		}
		if len(got) != int(expected[u]) {
			t.Errorf("%s: %d messages, want %d", u, len(got), expected[u])
		}
	}
	idleSessions, idleOK := 0, 0
	for i, s := range sessions {
		if s.role != 0 {
			continue
		}
		idleSessions++
		seen := idleSeen[i]
		if len(seen) > 0 && slices.IsSorted(seen) && seen[len(seen)-1] == expected[s.user] && !hasDup(seen) {
			idleOK++
		} else if len(seen) > 0 {
			t.Errorf("IDLE session %d (%s): EXISTS %v... ending %d, want strictly rising to %d", i, s.user, seen[:min(5, len(seen))], seen[len(seen)-1], expected[s.user])
		}
	}
	for _, e := range errs {
		t.Error(e)
	}
	pctOf := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		slices.Sort(l)
		return l[min(len(l)-1, int(float64(len(l))*p))].Round(time.Microsecond)
	}
	pct := func(p float64) time.Duration { return pctOf(lats, p) }
	for k, l := range latsByKind {
		t.Logf("%s: %d commands, p50 %v p99 %v", k, len(l), pctOf(l, 0.5), pctOf(l, 0.99))
	}
	t.Logf("load: %d conns, %d s, %d deliveries, %d commands (%.0f/s), %d protocol errors, %d/%d IDLE sessions saw every EXISTS",
		len(sessions), *loadSecs, totalDelivered, cmds.Load(), float64(cmds.Load())/float64(*loadSecs), protoErrs.Load(), idleOK, idleSessions)
	t.Logf("latency p50 %v p99 %v max %v; peak goroutines %d; peak RSS %s (client and server in one process); panics %d",
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond), peakG.Load(), procStatus("VmHWM"), hooksOf(t, env.srv).panics.Load())
	if protoErrs.Load() != 0 || idleOK != idleSessions {
		t.Fatalf("%d protocol errors, %d/%d IDLE sessions complete", protoErrs.Load(), idleOK, idleSessions)
	}
}

func hasDup(s []uint32) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return true
		}
	}
	return false
}

// loadSelect selects INBOX and returns its EXISTS count.
func loadSelect(c *rawClient) (uint32, error) {
	u, st, err := loadCmd(c, "SELECT INBOX")
	if err != nil || !strings.HasPrefix(st, "OK") {
		return 0, fmt.Errorf("SELECT: %q %v", st, err)
	}
	e, ok := lastExists(u)
	if !ok {
		return 0, fmt.Errorf("SELECT without EXISTS: %q", u)
	}
	return e, nil
}

// loadCmd runs one tagged command without failing the test from a
// goroutine.
func loadCmd(c *rawClient, cmd string) ([]string, string, error) {
	c.n++
	tag := fmt.Sprintf("L%d", c.n)
	if _, err := io.WriteString(c.conn, tag+" "+cmd+"\r\n"); err != nil {
		return nil, "", err
	}
	var untagged []string
	for {
		l, err := c.readLine(60 * time.Second)
		if err != nil {
			return untagged, "", err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest, nil
		}
		untagged = append(untagged, l)
	}
}

// lastExists returns the last "* n EXISTS" count in lines.
func lastExists(lines []string) (uint32, bool) {
	var n uint32
	found := false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "*" && f[2] == "EXISTS" {
			v, err := strconv.ParseUint(f[1], 10, 32)
			if err == nil {
				n, found = uint32(v), true
			}
		}
	}
	return n, found
}

// loadIdle idles until done is closed and the session has seen EXISTS
// reach want() (or 30 s pass), then ends IDLE. It returns the EXISTS counts
// seen, starting with the one from SELECT.
func loadIdle(c *rawClient, exists uint32, done <-chan struct{}, want func() uint32, fail func(string, ...any), i int) []uint32 {
	seen := []uint32{exists}
	if _, err := io.WriteString(c.conn, "I1 IDLE\r\n"); err != nil {
		fail("session %d IDLE: %v", i, err)
		return seen
	}
	if l, err := c.readLine(30 * time.Second); err != nil || !strings.HasPrefix(l, "+") {
		fail("session %d IDLE: %q %v", i, l, err)
		return seen
	}
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		for {
			l, err := c.readLine(10 * time.Minute)
			if err != nil {
				readErr <- err
				close(lines)
				return
			}
			lines <- l
		}
	}()
	var doneCh = done
	var deadline <-chan time.Time
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				fail("session %d IDLE read: %v", i, <-readErr)
				return seen
			}
			if strings.HasPrefix(l, "I1 ") {
				if !strings.HasPrefix(l, "I1 OK") {
					fail("session %d IDLE end: %q", i, l)
				}
				// The reader ends when the test closes the connection.
				return seen
			}
			if e, ok := lastExists([]string{l}); ok {
				seen = append(seen, e)
			}
			if doneCh == nil && deadline != nil && seen[len(seen)-1] >= want() {
				io.WriteString(c.conn, "DONE\r\n")
				deadline = nil
			}
		case <-doneCh:
			doneCh = nil
			if seen[len(seen)-1] >= want() {
				io.WriteString(c.conn, "DONE\r\n")
			} else {
				deadline = time.After(30 * time.Second)
			}
		case <-deadline:
			io.WriteString(c.conn, "DONE\r\n")
			deadline = nil
		}
	}
}

// raiseNoFile raises RLIMIT_NOFILE's soft limit to at least n (up to the
// hard limit).
func raiseNoFile(t *testing.T, n uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur >= n {
		return
	}
	rl.Cur = min(n, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	if rl.Cur < n {
		t.Logf("RLIMIT_NOFILE hard limit %d < %d wanted", rl.Max, n)
	}
}
