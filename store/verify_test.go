package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// indexedStore makes a closed store whose INBOX of user "packs" holds n
// indexed messages (Append) in pack 1, and returns its directory.
func indexedStore(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	appendN(t, s, n, 1000)
	s.Close()
	return dir
}

// verifyReadOnly opens dir read-only and verifies it.
func verifyReadOnly(t *testing.T, dir string) VerifyReport {
	t.Helper()
	s := openPacked(t, dir, Options{ReadOnly: true})
	rep, err := s.Verify(context.Background(), nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// damagedUIDs lists the INBOX UIDs of rep's damaged messages, and whether
// each is bytes damage.
func damagedUIDs(rep VerifyReport) (uids []UID, bytesBad []bool) {
	for _, d := range rep.Damaged {
		for _, e := range d.Entries {
			if e.User == "packs" && e.Mailbox == Inbox {
				uids = append(uids, e.UID)
				bytesBad = append(bytesBad, d.Bytes)
			}
		}
	}
	return uids, bytesBad
}

// TestVerifyFindsDamage: in copies of a real store, Verify (read-only)
// reports each kind of damage by user, mailbox and UID, and finds nothing
// in the undamaged original.
func TestVerifyFindsDamage(t *testing.T) {
	orig := indexedStore(t, 6)
	if rep := verifyReadOnly(t, orig); !rep.OK() || rep.Messages != 6 {
		t.Fatalf("undamaged store: %+v", rep)
	}
	for _, tt := range []struct {
		name      string
		damage    func(dir string)
		uids      []UID
		bytesBad  bool
		packProbs int
	}{
		{"corrupted bytes", func(dir string) { flipInPacks(t, dir, "mark-2-end") }, []UID{3}, true, 0},
		{"corrupted text", func(dir string) { flipInPacks(t, dir, "pack 4\n") }, []UID{5}, false, 0},
		{"truncated pack", func(dir string) {
			// Inside uid 2's bytes: each message is ~1,000 bytes and
			// its text record (header text only) ~80.
			if err := os.Truncate(filepath.Join(dir, blobDirName, packName(1)), 1500); err != nil {
				t.Fatal(err)
			}
		}, []UID{2, 3, 4, 5, 6}, true, 1},
		{"deleted pack", func(dir string) {
			if err := os.Remove(filepath.Join(dir, blobDirName, packName(1))); err != nil {
				t.Fatal(err)
			}
		}, []UID{1, 2, 3, 4, 5, 6}, true, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyStore(t, orig)
			tt.damage(dir)
			rep := verifyReadOnly(t, dir)
			uids, bad := damagedUIDs(rep)
			if !slices.Equal(uids, tt.uids) || len(rep.Packs) != tt.packProbs || rep.OK() {
				t.Errorf("damaged %v, pack problems %v; want %v and %d", uids, rep.Packs, tt.uids, tt.packProbs)
			}
			for i, b := range bad {
				if b != tt.bytesBad && !(tt.name == "truncated pack" && !b) {
					t.Errorf("uid %d: bytes damaged %v, want %v", uids[i], b, tt.bytesBad)
				}
			}
		})
	}
}

// corruptRootPage overwrites the header of the root page of the table or
// index named index in dir's database (a closed store) with an impossible
// one, as a torn or bit-rotted write would leave it.
func corruptRootPage(t *testing.T, dir, index string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = ?`, index).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(filepath.Join(dir, dbFileName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A b-tree page whose header claims an impossible cell count.
	garbage := []byte{0x0a, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}
	if _, err := f.WriteAt(garbage, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}

// TestMalformedDatabasePage: a malformed page in the database (in a copy
// of a real store) fails the operations that read it with
// ErrDatabaseCorrupt, makes Health fail from then on, and is reported by
// Verify's integrity check.
func TestMalformedDatabasePage(t *testing.T) {
	orig := indexedStore(t, 6)
	dir := copyStore(t, orig)
	corruptRootPage(t, dir, "mailbox_messages_message")
	s := openPacked(t, hooked(t, dir, testHooks{noIndexer: true}), Options{})
	if err := s.Health(); err != nil {
		t.Fatalf("Health before anything read the bad page: %v", err)
	}
	u := mustUser(t, s, "packs")
	mb := mustMailbox(t, s, u.ID, Inbox)
	// Expunging reads mailbox_messages_message (is the message still
	// filed elsewhere?).
	expungeErr := func() error {
		if _, err := s.UpdateFlags(context.Background(), u.ID, mb.ID, []UID{1}, FlagsAdd, []string{FlagDeleted}); err != nil {
			return err
		}
		_, err := s.Expunge(context.Background(), u.ID, mb.ID, []UID{1})
		return err
	}()
	if !errors.Is(expungeErr, ErrDatabaseCorrupt) {
		t.Fatalf("expunge over a malformed index page: %v, want ErrDatabaseCorrupt", expungeErr)
	}
	if err := s.Health(); !errors.Is(err, ErrDatabaseCorrupt) {
		t.Errorf("Health after the malformed page was read: %v", err)
	}
	rep, err := s.Verify(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Integrity) == 0 || rep.OK() {
		t.Errorf("Verify missed the malformed page: %+v", rep)
	}
	t.Logf("integrity_check: %s", strings.Join(rep.Integrity, "; "))
}

// TestVerifyOpensMalformedMessagesTable: with the messages table itself
// malformed, a read-only Open still succeeds (Health says why) and Verify
// reports the damage instead of failing.
func TestVerifyOpensMalformedMessagesTable(t *testing.T) {
	dir := copyStore(t, indexedStore(t, 6))
	corruptRootPage(t, dir, "messages")
	s := openPacked(t, dir, Options{ReadOnly: true})
	if err := s.Health(); !errors.Is(err, ErrDatabaseCorrupt) {
		t.Errorf("Health: %v, want ErrDatabaseCorrupt", err)
	}
	rep, err := s.Verify(context.Background(), nil)
	if err != nil || len(rep.Integrity) == 0 || rep.OK() {
		t.Errorf("Verify: %+v, %v; want integrity problems reported", rep, err)
	}
}
