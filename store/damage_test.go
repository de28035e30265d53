package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// flipInPacks flips a byte in the middle of the first occurrence of needle
// in dir's pack files, as a failing disk would.
func flipInPacks(tb testing.TB, dir, needle string) {
	tb.Helper()
	for _, name := range packFiles(tb, dir) {
		p := filepath.Join(dir, blobDirName, name)
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		if i := bytes.Index(data, []byte(needle)); i >= 0 {
			data[i+len(needle)/2] ^= 0x04
			if err := os.WriteFile(p, data, 0o600); err != nil {
				tb.Fatal(err)
			}
			return
		}
	}
	tb.Fatalf("%q is in no pack", needle)
}

// deliverTagged delivers packMessage(tag) for each tag to user's INBOX, as
// the poller does (unindexed), and returns their UIDs.
func deliverTagged(tb testing.TB, s *Store, user string, tags ...string) []UID {
	tb.Helper()
	mustUser(tb, s, user)
	var ds []Delivery
	for _, tag := range tags {
		ds = append(ds, Delivery{Account: "acct", UIDL: tag, Digest: tag, User: user, Raw: packMessage(tag, 500)})
	}
	out, err := s.Deliver(context.Background(), ds)
	if err != nil {
		tb.Fatal(err)
	}
	var uids []UID
	for _, d := range out {
		uids = append(uids, d.UID)
	}
	return uids
}

// TestDamagedUnindexedMessage: a message not indexed yet whose bytes are
// damaged is answered by Meta as Damaged (the others in full), skipped by
// SearchText, and passed over by the indexer, which indexes the others.
func TestDamagedUnindexedMessage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	uids := deliverTagged(t, s, "dmg", "one", "two", "three")
	u := mustUser(t, s, "dmg")
	mb := mustMailbox(t, s, u.ID, Inbox)
	flipInPacks(t, dir, "mark-two-end")

	metas, err := s.Meta(ctx, u.ID, mb.ID, nil)
	if err != nil || len(metas) != 3 {
		t.Fatalf("Meta over a damaged unindexed message: %d, %v", len(metas), err)
	}
	for i, m := range metas {
		if m.Damaged != (i == 1) || (m.Envelope == nil) != (i == 1) || m.Size == 0 {
			t.Errorf("uid %d: Damaged %v, envelope %v, size %d", m.UID, m.Damaged, m.Envelope != nil, m.Size)
		}
	}
	hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextBody, Needle: "mark-"}, nil)
	if err != nil || !slices.Equal(hits, []UID{uids[0], uids[2]}) {
		t.Errorf("SearchText: %v, %v; want %v", hits, err, []UID{uids[0], uids[2]})
	}
	n, err := s.indexPending(ctx)
	if err != nil || n != 2 {
		t.Errorf("indexPending: %d, %v; want the 2 undamaged", n, err)
	}
	if n := unindexedCount(t, s); n != 1 {
		t.Errorf("%d unindexed after indexing, want the damaged one", n)
	}
	if got := s.DamageStats(); got.Messages < 1 || got.Texts != 1 {
		t.Errorf("DamageStats = %+v", got)
	}
}

// copyStore copies the data directory src (a closed store) to a new one,
// so that damage is done to a copy of a real store.
func copyStore(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return dst
}

// twoPackStore makes a closed store with messages in two packs (pack 1:
// UIDs 1-3, pack 2: UIDs 4-6) and returns its directory and the bytes of
// each UID.
func twoPackStore(t *testing.T) (string, map[UID][]byte) {
	t.Helper()
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	_, _, raws := appendN(t, s, 3, 1000)
	s.Close()
	s = openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{}) // a restart starts pack 2
	u := mustUser(t, s, "packs")
	mb := mustMailbox(t, s, u.ID, Inbox)
	for i := range 3 {
		raw := packMessage(fmt.Sprint("second-", i), 1000)
		e, _, err := s.Append(context.Background(), u.ID, mb.ID, raw, nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		raws[e.UID] = raw
	}
	s.Close()
	if got := packFiles(t, dir); !slices.Equal(got, []string{packName(1), packName(2)}) {
		t.Fatalf("packs %v, want 1 and 2", got)
	}
	return dir, raws
}

// readAll reads every UID of the store's "packs" INBOX with Bodies and
// returns those read and those reported damaged.
func readAll(t *testing.T, s *Store, raws map[UID][]byte) (read, damaged []UID) {
	t.Helper()
	u := mustUser(t, s, "packs")
	mb := mustMailbox(t, s, u.ID, Inbox)
	err := s.Bodies(context.Background(), u.ID, mb.ID, []UID{1, 2, 3, 4, 5, 6}, func(uid UID, raw []byte, bad error) error {
		if bad != nil {
			damaged = append(damaged, uid)
		} else if bytes.Equal(raw, raws[uid]) {
			read = append(read, uid)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Bodies: %v", err)
	}
	return read, damaged
}

// TestOpenChecksPacks: a deleted or truncated pack is reported at Open
// (PackProblems, Health), the Store still serves the rest, the messages in
// the damaged pack read as damaged, and a deleted pack's number is not
// taken by the next write.
func TestOpenChecksPacks(t *testing.T) {
	orig, raws := twoPackStore(t)
	for _, tt := range []struct {
		name    string
		damage  func(path string) error
		problem PackProblem
		damaged []UID
	}{
		{"deleted", os.Remove, PackProblem{Pack: 2, Missing: true}, []UID{4, 5, 6}},
		{"truncated", func(p string) error { return os.Truncate(p, 1500) }, PackProblem{Pack: 2, Size: 1500}, []UID{5, 6}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyStore(t, orig)
			if err := tt.damage(filepath.Join(dir, blobDirName, packName(2))); err != nil {
				t.Fatal(err)
			}
			s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
			probs := s.PackProblems()
			if len(probs) != 1 || probs[0].Pack != tt.problem.Pack || probs[0].Missing != tt.problem.Missing || probs[0].Size != tt.problem.Size || probs[0].Want == 0 {
				t.Errorf("PackProblems = %+v, want %+v", probs, tt.problem)
			}
			if err := s.Health(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), packName(2)) {
				t.Errorf("Health = %v, want ErrCorrupt naming %s", err, packName(2))
			}
			read, damaged := readAll(t, s, raws)
			if !slices.Equal(damaged, tt.damaged) || len(read)+len(damaged) != 6 {
				t.Errorf("read %v, damaged %v; want damaged %v and the rest read", read, damaged, tt.damaged)
			}
			// The next write goes to a new pack, numbered above the
			// damaged one.
			u := mustUser(t, s, "packs")
			mb := mustMailbox(t, s, u.ID, Inbox)
			if _, _, err := s.Append(context.Background(), u.ID, mb.ID, packMessage("after", 100), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if files := packFiles(t, dir); !slices.Contains(files, packName(3)) {
				t.Errorf("packs after a write %v, want a new %s", files, packName(3))
			}
		})
	}
}

// TestPackNumbersNeverReused: the newest pack, compacted away and deleted,
// does not give its number to the next pack, even across a restart.
func TestPackNumbersNeverReused(t *testing.T) {
	orig, _ := twoPackStore(t)
	dir := copyStore(t, orig)
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	u := mustUser(t, s, "packs")
	mb := mustMailbox(t, s, u.ID, Inbox)
	expungeUIDs(t, s, u.ID, mb.ID, []UID{4, 5, 6}) // pack 2 is now dead
	if _, err := s.compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if files := packFiles(t, dir); slices.Contains(files, packName(2)) {
		t.Fatalf("pack 2 was not compacted away: %v", files)
	}
	s = openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	if _, _, err := s.Append(context.Background(), u.ID, mb.ID, packMessage("after", 100), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if files := packFiles(t, dir); slices.Contains(files, packName(2)) || !slices.Contains(files, packName(3)) {
		t.Errorf("packs %v: the new pack took a used number", files)
	}
}

// TestRestartsLeaveNoEmptyPacks: an empty pack (a restart whose first
// write failed, e.g. on a full disk) is reused by the next start instead
// of another one being created; older empty packs are removed.
func TestRestartsLeaveNoEmptyPacks(t *testing.T) {
	orig, _ := twoPackStore(t)
	dir := copyStore(t, orig)
	for _, id := range []int64{3, 4} {
		if err := os.WriteFile(filepath.Join(dir, blobDirName, packName(id)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
		s.Close()
	}
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	u := mustUser(t, s, "packs")
	mb := mustMailbox(t, s, u.ID, Inbox)
	if _, _, err := s.Append(context.Background(), u.ID, mb.ID, packMessage("after", 100), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if files := packFiles(t, dir); !slices.Equal(files, []string{packName(1), packName(2), packName(4)}) {
		t.Errorf("packs %v, want 1, 2 and the reused empty 4", files)
	}
	if s.Health() != nil {
		t.Errorf("Health = %v on an undamaged store", s.Health())
	}
}
