package poller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/store"
)

var (
	crashKills = flag.Int("crash.kills", 10, "SIGKILLs per crash test run")
	crashMsgs  = flag.Int("crash.msgs", 2000, "upstream messages in the crash test (500 under -race unless set)")
	crashSeed  = flag.Uint64("crash.seed", 0, "seed of the crash test's kill moments (0: from the clock)")
)

// Environment of the crash test's child process.
const (
	envCrashChild = "POPBRIDGE_POLLER_CRASH_CHILD"
	envCrashAddr  = "POPBRIDGE_POLLER_CRASH_ADDR"
	envCrashDir   = "POPBRIDGE_POLLER_CRASH_DIR"
	envCrashLeave = "POPBRIDGE_POLLER_CRASH_LEAVE"
)

// TestCrashChild is the child side of TestCrashKill: one poll pass of the
// parent's pop3mem server into the store in the given directory. It is
// skipped unless the parent started it.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("child process of TestCrashKill")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv(envCrashDir), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.EnsureUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	host, portStr, err := net.SplitHostPort(os.Getenv(envCrashAddr))
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	a := Account{
		Name: "crash", User: "alice", Host: host, Port: port, TLS: "none",
		Username: pop3mem.DefaultUser, Auth: "user", LeaveOnServer: os.Getenv(envCrashLeave) == "1",
		Secret: func(context.Context) (string, error) { return pop3mem.DefaultPassword, nil },
	}
	p := New(Options{Sink: st, Accounts: []Account{a}})
	if _, err := p.PollOnce(ctx, "crash", nil); err != nil {
		t.Fatal(err)
	}
}

// TestCrashKill fetches 2,000 messages (500 under -race; -crash.msgs) in a
// child process that is killed with SIGKILL at random moments at least 10
// times (-crash.kills), then runs a clean pass in-process and checks that
// every upstream message is in the store exactly once, by Message-ID and by
// body digest; with leave_on_server=false, also that the upstream is empty
// and nothing was lost. The kill counts and outcome are logged (-v).
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	n := *crashMsgs
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "crash.msgs" })
	if raceEnabled && !explicit {
		// The race-instrumented child is ~15x slower; keep the package's
		// -race run short. The 2,000-message figure comes from a normal
		// run (or -crash.msgs=2000).
		n = 500
	}
	for _, leave := range []bool{true, false} {
		t.Run(fmt.Sprintf("leave_on_server=%v", leave), func(t *testing.T) {
			crashRun(t, leave, n, *crashKills)
		})
	}
}

func crashRun(t *testing.T, leave bool, n, wantKills int) {
	srv := pop3mem.NewServer()
	t.Cleanup(srv.Close)
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("kill moments from -crash.seed=%d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	byID := map[string][32]byte{}
	for i := 0; i < n; i++ {
		raw := []byte(realisticMessage(r, i, 3000))
		srv.AddMessage(raw)
	}
	upstream := srv.Messages()
	for _, m := range upstream {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		if err != nil {
			t.Fatal(err)
		}
		byID[msg.Header.Get("Message-ID")] = sha256.Sum256(m.Raw)
	}
	dir := t.TempDir()
	leaveEnv := "0"
	if leave {
		leaveEnv = "1"
	}

	kills, completed, runs := 0, 0, 0
	killedAfterDele, killedAfterQuit := 0, 0
	lastCompleted := false
	for (kills < wantKills || (!leave && len(srv.Messages()) > 0 && (killedAfterDele < 2 || killedAfterQuit < 1))) && runs < wantKills*6 {
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashAddr+"="+srv.Addr(), envCrashDir+"="+dir, envCrashLeave+"="+leaveEnv)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		retr0, dele0, user0, quit0 := srv.Count("RETR"), srv.Count("DELE"), srv.Count("USER"), srv.Count("QUIT")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Wait until the child has logged in, then kill it a random
		// moment later (mid-RETR, mid-commit, between commit and DELE,
		// or around QUIT).
		deadline := time.Now().Add(30 * time.Second)
		for srv.Count("USER") == user0 && time.Now().Before(deadline) {
			select {
			case err := <-exited:
				t.Fatalf("child exited before logging in: %v\n%s", err, out.String())
			case <-time.After(2 * time.Millisecond):
			}
		}
		// Kill moments: mostly after a random number (1-250) of RETRs, so
		// that every run makes some progress and the fetch needs many
		// runs; every fourth run at a random time (login, listing, ledger
		// read, commit); with leave_on_server=false, the last runs just
		// after the first DELE, between the commits and a confirmed QUIT.
		stop := make(chan struct{})
		var fire <-chan struct{}
		var how string
		upstreamLeft := len(srv.Messages()) > 0
		switch {
		case !leave && upstreamLeft && kills >= wantKills-3 && killedAfterDele < 2:
			how = "after DELE"
			fire = waitCount(srv, "DELE", dele0, time.Duration(r.IntN(5))*time.Millisecond, stop)
		case !leave && upstreamLeft && kills >= wantKills-1 && killedAfterQuit < 1:
			how = "after QUIT"
			fire = waitCount(srv, "QUIT", quit0, 0, stop)
		case lastCompleted:
			// A child has finished: nothing is left to retrieve, and
			// an idle pass takes a few ms, so kill it just after login.
			d := time.Duration(r.IntN(3)) * time.Millisecond
			how = "idle, after " + d.String()
			fire = waitCount(srv, "USER", -1, d, stop)
		case runs%4 == 0:
			// Within the first 60 ms of a pass: login, listing, the
			// ledger read, the first commits (a whole 2,000-message
			// fetch takes a few hundred ms, so later moments would
			// often find it done).
			d := time.Duration(r.IntN(60)) * time.Millisecond
			how = "after " + d.String()
			fire = waitCount(srv, "USER", -1, d, stop)
		default:
			k := 1 + r.IntN(max(2, n/8))
			how = fmt.Sprintf("after RETR #%d", k)
			fire = waitCount(srv, "RETR", retr0+k-1, time.Duration(r.IntN(5))*time.Millisecond, stop)
		}
		lastCompleted = false
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("child failed: %v\n%s", err, out.String())
			}
			completed++
			lastCompleted = true
		case <-fire:
			cmd.Process.Signal(syscall.SIGKILL)
			if err := <-exited; err == nil {
				completed++ // it finished before the signal
				lastCompleted = true
				break
			}
			kills++
			if srv.Count("DELE") > dele0 {
				killedAfterDele++
			}
			if srv.Count("QUIT") > quit0 {
				killedAfterQuit++
			}
			t.Logf("kill %d (%s): child sent %d RETR, %d DELE, %d QUIT", kills, how,
				srv.Count("RETR")-retr0, srv.Count("DELE")-dele0, srv.Count("QUIT")-quit0)
		}
		close(stop)
	}
	if kills < wantKills {
		t.Errorf("only %d kills in %d runs", kills, runs)
	}

	// Final clean pass, in-process.
	ctx := context.Background()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := upstreamAccount(srv, func(a *Account) { a.Name = "crash"; a.LeaveOnServer = leave })
	p := New(Options{Sink: st, Accounts: []Account{a}})
	for i := 0; i < 2; i++ {
		if _, err := p.PollOnce(ctx, "crash", nil); err != nil {
			t.Fatalf("clean pass %d: %v", i, err)
		}
	}

	bodies := mailboxBodies(t, st, "alice", "INBOX")
	seenID := map[string]int{}
	seenDigest := map[[32]byte]int{}
	for _, b := range bodies {
		msg, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("stored message does not parse: %v", err)
		}
		id := msg.Header.Get("Message-ID")
		seenID[id]++
		d := sha256.Sum256(b)
		seenDigest[d]++
		if want, ok := byID[id]; !ok || want != d {
			t.Errorf("stored message %s is not an upstream message byte for byte", id)
		}
	}
	lost, dups := 0, 0
	for id, d := range byID {
		switch {
		case seenID[id] == 0 || seenDigest[d] == 0:
			lost++
		case seenID[id] > 1 || seenDigest[d] > 1:
			dups++
		}
	}
	if lost != 0 || dups != 0 || len(bodies) != n {
		t.Errorf("store holds %d messages for %d upstream: lost %d, duplicated %d", len(bodies), n, lost, dups)
	}
	if !leave {
		if left := srv.Messages(); len(left) != 0 {
			t.Errorf("upstream still holds %d messages after the clean pass", len(left))
		}
		if got := len(srv.Deleted()); got != n {
			t.Errorf("upstream deleted %d messages, want %d", got, n)
		}
	}
	t.Logf("crash test (leave_on_server=%v): %d runs, %d SIGKILLs (%d after DELE was sent, %d after QUIT), %d completed runs; stored %d of %d, lost %d, duplicates %d",
		leave, runs, kills, killedAfterDele, killedAfterQuit, completed, len(bodies), n, lost, dups)
}

// waitCount returns a channel that is closed extra after srv has received
// more than base cmd commands, observed from another process, so polled.
// The goroutine ends when stop is closed.
func waitCount(srv *pop3mem.Server, cmd string, base int, extra time.Duration, stop <-chan struct{}) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for srv.Count(cmd) <= base {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		select {
		case <-stop:
		case <-time.After(extra):
			close(ch)
		}
	}()
	return ch
}
