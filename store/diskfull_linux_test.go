package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/testenv"
)

// TestDiskFullRestarts: on a full disk a write fails with ErrNoSpace and
// nothing committed is lost; restarts that each try a write leave no new
// pack behind, and once space is back the write succeeds.
func TestDiskFullRestarts(t *testing.T) {
	disk := testenv.SmallDisk(t, "4m")
	dir := filepath.Join(disk, "data")
	s, err := Open(context.Background(), hooked(t, dir, testHooks{noIndexer: true}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, mb, raws := appendN(t, s, 3, 2000)
	s.Close()
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// Room for SQLite's shared-memory and WAL files, not for a message.
	if fi, err := f.Stat(); err != nil || f.Truncate(fi.Size()-256<<10) != nil {
		t.Fatal(err)
	}
	f.Close()
	before := packFiles(t, dir)
	for range 3 {
		s, err := Open(context.Background(), hooked(t, dir, testHooks{noIndexer: true}), Options{})
		if err != nil {
			t.Fatalf("Open on a full disk: %v", err)
		}
		_, _, err = s.Append(context.Background(), u.ID, mb.ID, packMessage("full", 1<<20), nil, time.Time{})
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("Append on a full disk: %v, want ErrNoSpace", err)
		}
		s.Close()
	}
	after := packFiles(t, dir)
	if len(after) > len(before)+1 {
		t.Errorf("restarts on a full disk left packs %v (before: %v)", after, before)
	}
	// A disk full to the last byte: Open itself fails (SQLite can't map
	// its shared memory), and says why.
	f, err = os.Create(filepath.Join(disk, "filler2"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if s, err := Open(context.Background(), hooked(t, dir, testHooks{noIndexer: true}), Options{}); err == nil {
		s.Close()
		t.Error("Open on a disk full to the last byte succeeded")
	} else if !errors.Is(err, ErrNoSpace) {
		t.Errorf("Open on a disk full to the last byte: %v, want ErrNoSpace", err)
	}
	if err := os.Remove(filepath.Join(disk, "filler2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s = openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	if _, _, err := s.Append(context.Background(), u.ID, mb.ID, packMessage("after", 64<<10), nil, time.Time{}); err != nil {
		t.Fatalf("Append once space is back: %v", err)
	}
	checkBodies(t, s, u.ID, mb.ID, raws)
	if got := packFiles(t, dir); len(got) != len(after) {
		t.Errorf("packs %v after the first write with space, want the reused %v", got, after)
	}
}

// TestGroupCommitDiskFull: committers filling the disk together get
// ErrNoSpace each, from staging or from a commit (grouped or run again
// alone), and every batch reported committed is stored once while no
// failed batch left a row.
func TestGroupCommitDiskFull(t *testing.T) {
	disk := testenv.SmallDisk(t, "4m")
	s, err := Open(context.Background(), hooked(t, filepath.Join(disk, "data"), testHooks{noIndexer: true}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustUser(t, s, "alice")
	var (
		mu        sync.Mutex
		committed = map[string]bool{}
		failed    = map[string]bool{}
		wg        sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var ds []Delivery
				for j := range 2 {
					uidl := fmt.Sprintf("g%d-%d-%d", g, i, j)
					ds = append(ds, Delivery{Account: "acct-alice", UIDL: uidl, Digest: "d" + uidl, User: "alice",
						Raw: packMessage(uidl, 8<<10+g*512)})
				}
				_, err := s.Deliver(context.Background(), ds)
				mu.Lock()
				for _, d := range ds {
					if err == nil {
						committed[d.UIDL] = true
					} else {
						failed[d.UIDL] = true
					}
				}
				mu.Unlock()
				if err != nil {
					if !errors.Is(err, ErrNoSpace) {
						t.Errorf("committer %d: %v, want ErrNoSpace", g, err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	led, err := s.Ledger(context.Background(), "acct-alice")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range led {
		seen[l.UIDL]++
		if failed[l.UIDL] {
			t.Errorf("%s: its batch failed, yet it is in the ledger", l.UIDL)
		}
	}
	for uidl := range committed {
		if seen[uidl] != 1 {
			t.Errorf("%s: committed, %d times in the ledger", uidl, seen[uidl])
		}
	}
	var integrity string
	if err := s.rdb.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check = %q, %v", integrity, err)
	}
	t.Logf("%d deliveries committed, %d failed; %d groups", len(committed), len(failed), s.wq.groups.Load())
	if len(committed) == 0 || len(failed) == 0 {
		t.Error("the disk filled before anything was committed, or never: the test proved nothing")
	}
}
