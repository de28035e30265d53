package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashDirEnv = "POPBRIDGE_STORE_CRASH_DIR"
	crashRunEnv = "POPBRIDGE_STORE_CRASH_RUN"
	crashAcct   = "crash"
	crashPrefix = "DELIVERED "
	// crashFailedPrefix precedes the UIDLs of a batch whose Commit failed;
	// crashGrouped is printed once a group commit has happened.
	crashFailedPrefix = "FAILED "
	crashGrouped      = "GROUPED"
	crashCommitters   = 4
)

// TestCrashChild is the child of TestCrashRecovery: crashCommitters
// goroutines deliver batches in a loop (so that commits are grouped) and
// print each committed delivery's UIDL after Deliver returns, and those of
// the batches that failed, until it is killed. It does nothing unless started by the parent.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestCrashRecovery only")
	}
	run := os.Getenv(crashRunEnv)
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if _, err := s.EnsureUser(ctx, "alice"); err != nil {
		fmt.Fprintln(os.Stderr, "ensure user:", err)
		os.Exit(2)
	}
	// Several committers at once, so that kills also land in group
	// commits; one batch in five fails (a last delivery for an unknown
	// user, after its good ones ran) and must leave nothing.
	var (
		outMu   sync.Mutex
		grouped bool
	)
	for g := range crashCommitters {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			for i := 0; ; i++ {
				var ds []Delivery
				for j := range 1 + rng.IntN(4) {
					uidl := fmt.Sprintf("%s-%d-%d-%d", run, g, i, j)
					ds = append(ds, Delivery{Account: crashAcct, UIDL: uidl, Digest: "d-" + uidl, User: "alice",
						Raw: testMessage(uidl)})
				}
				bad := rng.IntN(5) == 0
				if bad {
					uidl := fmt.Sprintf("%s-%d-%d-bad", run, g, i)
					ds = append(ds, Delivery{Account: crashAcct, UIDL: uidl, Digest: "d-" + uidl, User: "nobody", Raw: testMessage(uidl)})
				}
				_, err := s.Deliver(ctx, ds)
				prefix := crashPrefix
				switch {
				case bad && errors.Is(err, ErrNotFound):
					prefix = crashFailedPrefix
				case err != nil || bad:
					fmt.Fprintln(os.Stderr, "deliver:", err)
					os.Exit(2)
				}
				var b strings.Builder
				for _, d := range ds {
					b.WriteString(prefix + d.UIDL + "\n")
				}
				outMu.Lock()
				if !grouped && s.wq.groups.Load() > 0 {
					grouped = true
					b.WriteString(crashGrouped + "\n")
				}
				os.Stdout.WriteString(b.String())
				outMu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashRecovery SIGKILLs a delivering child process at random moments
// and checks that every delivery the child reported as committed is present
// exactly once, that UIDs were never reused and that the database is intact.
func TestCrashRecovery(t *testing.T) {
	kills := 20
	if *long {
		kills = 100
	}
	dir := t.TempDir()
	reported, failedBatch := map[string]bool{}, map[string]bool{}
	grouped := false
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	note := func(l string) {
		l = strings.TrimSuffix(l, "\n")
		if uidl, ok := strings.CutPrefix(l, crashPrefix); ok {
			reported[uidl] = true
		} else if uidl, ok := strings.CutPrefix(l, crashFailedPrefix); ok {
			failedBatch[uidl] = true
		} else if l == crashGrouped {
			grouped = true
		}
	}
	for k := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=r%d", crashRunEnv, k))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		done := make(chan struct{})
		go func() {
			defer close(done)
			br := bufio.NewReader(out)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					if err != io.EOF {
						t.Errorf("read child output: %v", err)
					}
					return
				}
				lines <- l
			}
		}()
		var timer <-chan time.Time
		if k%5 == 0 {
			// Sometimes kill during start-up (open, migrations).
			timer = time.After(time.Duration(rng.IntN(150)) * time.Millisecond)
		}
		startup := time.After(30 * time.Second)
	wait:
		for {
			select {
			case l := <-lines:
				note(l)
				if timer == nil {
					timer = time.After(time.Duration(rng.IntN(200)) * time.Millisecond)
				}
			case <-timer:
				break wait
			case <-startup:
				cmd.Process.Kill()
				t.Fatal("child delivered nothing within 30s")
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// Drain what the child wrote before it died, then reap it.
		for drained := false; !drained; {
			select {
			case l := <-lines:
				note(l)
			case <-done:
				drained = true
			}
		}
		if err := cmd.Wait(); err == nil {
			t.Fatal("child exited normally; it should have been killed")
		}
	}

	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var integrity string
	if err := s.rdb.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	led, err := s.Ledger(ctx, crashAcct)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := s.MailboxByName(ctx, u.ID, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, u.ID, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	byMsg := map[MessageID][]UID{}
	for _, e := range snap.Entries {
		byMsg[e.Message] = append(byMsg[e.Message], e.UID)
		if e.UID >= snap.Mailbox.UIDNext {
			t.Errorf("UID %d not below UIDNEXT %d", e.UID, snap.Mailbox.UIDNext)
		}
	}
	count := map[string]int{}
	var prevUID UID
	for _, l := range led {
		count[l.UIDL]++
		us := byMsg[l.Message]
		if len(us) != 1 {
			t.Errorf("ledger %s: message %d has %d INBOX entries", l.UIDL, l.Message, len(us))
			continue
		}
		// Ledger order is commit order: UIDs must increase along it, so
		// no UID was handed out twice across crashes.
		if us[0] <= prevUID {
			t.Errorf("ledger %s: UID %d not above previous %d", l.UIDL, us[0], prevUID)
		}
		prevUID = us[0]
		body, err := s.Body(ctx, u.ID, inbox.ID, us[0])
		if err != nil || !strings.Contains(string(body), l.UIDL) {
			t.Errorf("ledger %s: body %q, %v", l.UIDL, body, err)
		}
	}
	if len(led) != len(snap.Entries) {
		t.Errorf("%d ledger rows but %d INBOX entries", len(led), len(snap.Entries))
	}
	for uidl := range failedBatch {
		if count[uidl] != 0 {
			t.Errorf("delivery %s of a batch whose Commit failed is in the ledger", uidl)
		}
	}
	if !grouped {
		t.Error("no group commit happened in any child: the kills hit no group")
	}
	for uidl := range reported {
		if count[uidl] != 1 {
			t.Errorf("reported delivery %s is in the ledger %d times", uidl, count[uidl])
		}
	}
	t.Logf("%d kills, %d deliveries reported committed, %d committed in total (the rest committed before a kill, unreported), %d in failed batches",
		kills, len(reported), len(led), len(failedBatch))
	if len(reported) == 0 {
		t.Error("no delivery was reported: the test proved nothing")
	}
}
