package bridge

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/pgstore"
)

// The measurements of docs/BENCHMARKS.md, "PostgreSQL backend", that need
// several nodes: off by default (minutes, and meaningful only on a quiet
// machine), each on a private PostgreSQL with fsync on.
var (
	pgIdleRun    = flag.Bool("pgnodes.idle", false, "run TestPgNodesIdleLatency (IDLE push latency across two nodes on one PostgreSQL)")
	pgIdleEvents = flag.Int("pgnodes.events", 400, "TestPgNodesIdleLatency: events per phase (STORE and APPEND alternating)")
	pgLoadRun    = flag.Bool("pgnodes.load", false, "run TestPgNodesLoad (two serve processes on one PostgreSQL, many IMAP clients; minutes)")
	pgClients    = flag.Int("pgnodes.clients", 500, "TestPgNodesLoad: IMAP clients, split evenly over the two nodes")
	pgUsers      = flag.Int("pgnodes.users", 50, "TestPgNodesLoad: users the clients log in as (each user's clients on both nodes)")
	pgMsgs       = flag.Int("pgnodes.msgs", 200, "TestPgNodesLoad: messages in each user's INBOX")
	pgDuration   = flag.Duration("pgnodes.duration", time.Minute, "TestPgNodesLoad: how long the clients run their command mix")
	pgThink      = flag.Duration("pgnodes.think", time.Second, "TestPgNodesLoad: mean pause between a client's commands")
	pgOut        = flag.String("pgnodes.out", "", "append the results as JSON lines to this file")
)

// latencies is a set of durations with percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// summary returns the count and the p50, p90, p99 and maximum in ms.
func (l *latencies) summary() map[string]float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.d)
	slices.Sort(d)
	out := map[string]float64{"n": float64(len(d))}
	if len(d) == 0 {
		return out
	}
	pct := func(p float64) float64 {
		i := int(p*float64(len(d))+0.5) - 1
		i = max(0, min(i, len(d)-1))
		return float64(d[i].Microseconds()) / 1000
	}
	out["p50_ms"], out["p90_ms"], out["p99_ms"] = pct(0.50), pct(0.90), pct(0.99)
	out["max_ms"] = float64(d[len(d)-1].Microseconds()) / 1000
	return out
}

// writeResult logs rec and appends it to -pgnodes.out.
func writeResult(t *testing.T, rec map[string]any) {
	t.Helper()
	rec["time"] = time.Now().UTC().Format(time.RFC3339)
	rec["load1"] = loadavg()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", b)
	if *pgOut == "" {
		return
	}
	f, err := os.OpenFile(*pgOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// pushEvent is what an IDLE session saw: a flag change of message 1 or a
// new message count, and when.
type pushEvent struct {
	flagged bool
	exists  uint32
	at      time.Time
}

// TestPgNodesIdleLatency measures IDLE push latency between two nodes on
// one PostgreSQL (fsync on): a client on node A alternately sets or
// clears \Flagged on message 1 (UID STORE .SILENT) and APPENDs a message;
// a client in IDLE on node B (phase "cross-node") or on node A itself
// (phase "same-node") waits for the FETCH or EXISTS. Latency: from just
// before the command is sent until the push arrives. Run:
//
//	go test ./bridge -run 'TestPgNodesIdleLatency$' -pgnodes.idle -v [-pgnodes.events 400] [-pgnodes.out FILE]
func TestPgNodesIdleLatency(t *testing.T) {
	if !*pgIdleRun {
		t.Skip("-pgnodes.idle not set")
	}
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.CreateDatabase(t, "idle")
	a := startNode(t, pgConfig(t, dsn, "a"))
	b := startNode(t, pgConfig(t, dsn, "b"))
	writer := a.login(t, nil)
	appendMsg(t, writer, "INBOX", "first")
	if _, err := writer.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	count := uint32(1)
	flagged := false
	for _, phase := range []struct {
		name string
		on   *pgNode
	}{{"cross-node", b}, {"same-node", a}} {
		events := make(chan pushEvent, 64)
		idler := phase.on.login(t, &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					events <- pushEvent{exists: *d.NumMessages, at: time.Now()}
				}
			},
			Fetch: func(m *imapclient.FetchMessageData) {
				buf, err := m.Collect()
				if err != nil || buf.SeqNum != 1 {
					return
				}
				events <- pushEvent{flagged: slices.Contains(buf.Flags, imap.FlagFlagged), at: time.Now()}
			},
		})
		if sel, err := idler.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != count {
			t.Fatalf("%s: select: %v, %+v (want %d messages)", phase.name, err, sel, count)
		}
		idle, err := idler.Idle()
		if err != nil {
			t.Fatal(err)
		}
		var store, add latencies
		for i := range *pgIdleEvents {
			t0 := time.Now()
			var match func(pushEvent) bool
			if i%2 == 0 {
				flagged = !flagged
				op := imap.StoreFlagsDel
				if flagged {
					op = imap.StoreFlagsAdd
				}
				if err := writer.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
					t.Fatalf("%s: store: %v", phase.name, err)
				}
				want := flagged
				match = func(e pushEvent) bool { return e.exists == 0 && e.flagged == want }
			} else {
				if _, err := appendUID(writer, "INBOX", fmt.Sprintf("%s-%d", phase.name, i)); err != nil {
					t.Fatalf("%s: append: %v", phase.name, err)
				}
				count++
				want := count
				match = func(e pushEvent) bool { return e.exists == want }
			}
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case e := <-events:
					if match(e) {
						if i%2 == 0 {
							store.add(e.at.Sub(t0))
						} else {
							add.add(e.at.Sub(t0))
						}
						break wait
					}
				case <-deadline:
					t.Fatalf("%s: event %d not pushed within 10 s", phase.name, i)
				}
			}
		}
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
		var all latencies
		all.d = append(slices.Clone(store.d), add.d...)
		writeResult(t, map[string]any{"bench": "idle-push", "phase": phase.name,
			"store": store.summary(), "append": add.summary(), "all": all.summary()})
	}
}

// pgCPU returns the CPU time used so far by the PostgreSQL server of
// dataDir: its live processes' user+system time and the postmaster's
// children's that it has reaped (backends that have exited).
func pgCPU(t *testing.T, dataDir string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pm := strings.SplitN(string(b), "\n", 2)[0]
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var ticks int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if e.Name() != pm && f[1] != pm {
			continue
		}
		for _, k := range []int{11, 12} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		if e.Name() == pm {
			for _, k := range []int{13, 14} {
				v, _ := strconv.ParseInt(f[k], 10, 64)
				ticks += v
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ = 100
}

// loadMessage is message i of a user's INBOX in TestPgNodesLoad: a few KB
// of text with the usual header fields.
func loadMessage(user string, i int, rng *rand.Rand) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "From: Sender %d <s%d@example.org>\r\nTo: %s <%s@example.net>\r\nSubject: report %d for %s\r\n", i%37, i%37, user, user, i, user)
	fmt.Fprintf(&sb, "Date: Mon, 2 Nov 2026 %02d:%02d:00 +0000\r\nMessage-ID: <%s.%d@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i%24, i%60, user, i)
	words := []string{"quarterly", "schedule", "budget", "meeting", "review", "draft", "figures", "agreed", "attached", "team"}
	for n := 1000 + rng.IntN(5000); sb.Len() < n; {
		for range 12 {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		sb.WriteString("\r\n")
	}
	return []byte(sb.String())
}

// loadNode is one `popbridge serve` of TestPgNodesLoad, in a child process.
type loadNode struct {
	name string
	addr string
	cmd  *exec.Cmd
	peak atomic.Int64 // KiB
}

// TestPgNodesLoad runs two popbridge serve processes (the test binary
// re-executed as TestNodeChild) on one private PostgreSQL (fsync
// on) and -pgnodes.clients IMAP clients, half on each node, logged in as
// -pgnodes.users users (each user's clients on both nodes, so that its
// changes cross nodes), each user's INBOX holding -pgnodes.msgs messages.
// After every client has logged in and selected INBOX, each runs for
// -pgnodes.duration a mix of commands with a random pause (mean
// -pgnodes.think) before each: 40 % FETCH of 20 messages (UID FLAGS
// RFC822.SIZE ENVELOPE), 10 % FETCH BODY.PEEK[] of one message, 30 % UID
// STORE ±\Flagged of one message (.SILENT; the user's other sessions get
// the push), 20 % IDLE for 1 to 5 s. It reports errors (any command that
// failed), the latency of each command kind, the pushes the clients
// received, each node's CPU and peak RSS and PostgreSQL's CPU over the
// window. Run:
//
//	go test ./bridge -run 'TestPgNodesLoad$' -pgnodes.load -v -timeout 30m [-pgnodes.out FILE]
func TestPgNodesLoad(t *testing.T) {
	if !*pgLoadRun {
		t.Skip("-pgnodes.load not set")
	}
	ctx := context.Background()
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.CreateDatabase(t, "load")
	nUsers, nClients := *pgUsers, *pgClients

	// The users' mailboxes, written through pgstore before the nodes start.
	t0 := time.Now()
	st, err := pgstore.Open(ctx, dsn, pgstore.Options{NodeName: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	users := make([]string, nUsers)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d", i)
	}
	var wg sync.WaitGroup
	errc := make(chan error, nUsers)
	sem := make(chan struct{}, 8)
	for _, name := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u, err := st.EnsureUser(ctx, name)
			if err != nil {
				errc <- err
				return
			}
			mb, err := st.MailboxByName(ctx, u.ID, "INBOX")
			if err != nil {
				errc <- err
				return
			}
			rng := rand.New(rand.NewPCG(uint64(u.ID), 1))
			for i := range *pgMsgs {
				if _, _, err := st.Append(ctx, u.ID, mb.ID, loadMessage(name, i, rng), nil, time.Time{}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	st.Close()
	close(errc)
	for err := range errc {
		t.Fatalf("seed: %v", err)
	}
	t.Logf("%d users × %d messages stored in %v", nUsers, *pgMsgs, time.Since(t0).Round(time.Second))

	// Two nodes, each its own process, data_dir and listeners.
	dir := t.TempDir()
	var userCfg strings.Builder
	for _, name := range users {
		fmt.Fprintf(&userCfg, "[[user]]\nname = %q\npassword_hash = %q\n", name, realHash(t))
	}
	var nodes []*loadNode
	for _, name := range []string{"a", "b"} {
		imapPort, httpPort := freeTCPPort(t), freeTCPPort(t)
		cfgPath := filepath.Join(dir, name+".toml")
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("data_dir = %q\n[store]\nbackend = \"postgres\"\ndsn = %q\nnode_name = %q\n"+
			"[imap]\nlisten = \"127.0.0.1:%d\"\nmax_connections = %d\n[http]\nlisten = \"127.0.0.1:%d\"\n%s",
			filepath.Join(dir, name), dsn, name, imapPort, nClients+100, httpPort, userCfg.String())
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &loadNode{name: name, addr: fmt.Sprintf("127.0.0.1:%d", imapPort)}
		n.cmd = exec.Command(os.Args[0], "-test.run=^TestNodeChild$")
		n.cmd.Env = append(os.Environ(), nodeChildEnv+"="+cfgPath)
		n.cmd.Stderr = os.Stderr
		stdin, err := n.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); n.cmd.Wait() })
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", n.addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s: not listening on %s after 60 s", n.name, n.addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Log every client in (20 at a time: each LOGIN costs an argon2id
	// hash) and SELECT INBOX.
	var (
		pushes   atomic.Int64
		nErrors  atomic.Int64
		errMu    sync.Mutex
		firstErr []string
		lat      = map[string]*latencies{"login": {}, "select": {}, "fetch": {}, "body": {}, "store": {}, "idle": {}, "done": {}}
	)
	fail := func(what string, err error) {
		nErrors.Add(1)
		errMu.Lock()
		if len(firstErr) < 10 {
			firstErr = append(firstErr, what+": "+err.Error())
		}
		errMu.Unlock()
	}
	handler := &imapclient.UnilateralDataHandler{
		Mailbox: func(*imapclient.UnilateralDataMailbox) { pushes.Add(1) },
		Fetch: func(m *imapclient.FetchMessageData) {
			m.Collect()
			pushes.Add(1)
		},
	}
	clients := make([]*imapclient.Client, nClients)
	t0 = time.Now()
	sem = make(chan struct{}, 20)
	for i := range clients {
		n := nodes[(i/nUsers)%2]
		user := users[i%nUsers]
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := imapclient.DialInsecure(n.addr, &imapclient.Options{UnilateralDataHandler: handler})
			if err != nil {
				fail("dial", err)
				return
			}
			s := time.Now()
			if err := c.Login(user, "pw").Wait(); err != nil {
				fail("login", err)
				c.Close()
				return
			}
			lat["login"].add(time.Since(s))
			s = time.Now()
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				fail("select", err)
				c.Close()
				return
			}
			lat["select"].add(time.Since(s))
			clients[i] = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	if e := nErrors.Load(); e > 0 {
		t.Fatalf("%d clients could not log in and select: %v", e, firstErr)
	}
	t.Logf("%d clients logged in and selected in %v", nClients, time.Since(t0).Round(time.Millisecond))

	// The window: the command mix, with each node's RSS sampled every second.
	cpu0 := map[string]time.Duration{}
	for _, n := range nodes {
		cpu0[n.name], _ = procStat(t, n.cmd.Process.Pid)
	}
	pg0 := pgCPU(t, srv.DataDir)
	start := time.Now()
	end := start.Add(*pgDuration)
	sampleDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-tick.C:
			}
			for _, n := range nodes {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid)); err == nil {
					for _, l := range strings.Split(string(b), "\n") {
						if strings.HasPrefix(l, "VmRSS:") {
							if v, err := strconv.ParseInt(strings.Fields(l)[1], 10, 64); err == nil && v > n.peak.Load() {
								n.peak.Store(v)
							}
						}
					}
				}
			}
		}
	}()
	var commands atomic.Int64
	for i, c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			msgs := uint32(*pgMsgs)
			for {
				pause := time.Duration(rng.Int64N(int64(2 * *pgThink)))
				if time.Now().Add(pause).After(end) {
					return
				}
				time.Sleep(pause)
				s := time.Now()
				var kind string
				var err error
				switch r := rng.IntN(100); {
				case r < 40:
					kind = "fetch"
					from := 1 + rng.Uint32N(max(msgs-19, 1))
					var set imap.SeqSet
					set.AddRange(from, min(from+19, msgs))
					err = c.Fetch(set, &imap.FetchOptions{
						UID: true, Flags: true, RFC822Size: true, Envelope: true}).Close()
				case r < 50:
					kind = "body"
					err = c.Fetch(imap.SeqSetNum(1+rng.Uint32N(msgs)), &imap.FetchOptions{
						BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Close()
				case r < 80:
					kind = "store"
					op := imap.StoreFlagsAdd
					if rng.IntN(2) == 0 {
						op = imap.StoreFlagsDel
					}
					err = c.Store(imap.UIDSetNum(imap.UID(1+rng.Uint32N(msgs))), &imap.StoreFlags{
						Op: op, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
				default:
					kind = "idle"
					var idle *imapclient.IdleCommand
					if idle, err = c.Idle(); err == nil {
						lat["idle"].add(time.Since(s))
						commands.Add(1)
						time.Sleep(min(time.Second+time.Duration(rng.Int64N(int64(4*time.Second))), time.Until(end)))
						s, kind = time.Now(), "done"
						if err = idle.Close(); err == nil {
							err = idle.Wait()
						}
					}
				}
				if err != nil {
					fail(kind, err)
					continue
				}
				lat[kind].add(time.Since(s))
				commands.Add(1)
			}
		})
	}
	wg.Wait()
	window := time.Since(start)
	close(sampleDone)
	pgUsed := pgCPU(t, srv.DataDir) - pg0

	rec := map[string]any{"bench": "two-node-load", "clients": nClients, "users": nUsers, "msgs_per_user": *pgMsgs,
		"window_s": window.Seconds(), "think_ms": pgThink.Milliseconds(), "commands": commands.Load(),
		"commands_per_s": float64(commands.Load()) / window.Seconds(), "errors": nErrors.Load(), "first_errors": firstErr,
		"pushes_received": pushes.Load(), "pg_cpu_pct_of_one_core": 100 * pgUsed.Seconds() / window.Seconds()}
	for k, l := range lat {
		rec[k] = l.summary()
	}
	for _, n := range nodes {
		cpu, rss := procStat(t, n.cmd.Process.Pid)
		rec["node_"+n.name] = map[string]any{"cpu_pct_of_one_core": 100 * (cpu - cpu0[n.name]).Seconds() / window.Seconds(),
			"rss_end_mib": rss / 1024, "rss_peak_mib": max(rss, n.peak.Load()) / 1024}
	}
	writeResult(t, rec)
	if nErrors.Load() != 0 {
		t.Errorf("%d commands failed: %v", nErrors.Load(), firstErr)
	}
	if pushes.Load() == 0 {
		t.Errorf("no client received a push, though %d sessions changed flags of shared mailboxes", nClients)
	}
}
