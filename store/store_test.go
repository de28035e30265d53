package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustUser(t, s, "alice") // a write, so the WAL and shared-memory files exist
	db := filepath.Join(dir, dbFileName)
	for path, want := range map[string]os.FileMode{dir: 0o700, db: 0o600, db + "-wal": 0o600, db + "-shm": 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	e := mustAppend(t, s, u.ID, inbox.ID, "one")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Users(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Users after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.Append(ctx, u.ID, inbox.ID, testMessage("x"), nil, time.Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	s2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	body, err := s2.Body(ctx, u.ID, inbox.ID, e.UID)
	if err != nil || string(body) != string(testMessage("one")) {
		t.Fatalf("Body after reopen = %q, %v", body, err)
	}
	var versions, applied int
	if err := s2.rdb.QueryRow(`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&applied, &versions); err != nil {
		t.Fatal(err)
	}
	if embedded, _ := migrationFS.ReadDir("migrations"); applied != len(embedded) || versions != applied {
		t.Errorf("schema_migrations has %d rows (%d versions), %d migrations embedded", applied, versions, len(embedded))
	}
	mb := mustMailbox(t, s2, u.ID, "inbox")
	if mb.UIDValidity != inbox.UIDValidity || mb.UIDNext != 2 {
		t.Errorf("mailbox after reopen = %+v, was %+v", mb, inbox)
	}
}

func TestEnsureUser(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	again := mustUser(t, s, "alice")
	if again.ID != u.ID {
		t.Errorf("EnsureUser twice: ids %d, %d", u.ID, again.ID)
	}
	mbs, err := s.Mailboxes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Archive": SpecialArchive, "Drafts": SpecialDrafts, "INBOX": "", "Junk": SpecialJunk, "Sent": SpecialSent, "Trash": SpecialTrash}
	if len(mbs) != len(want) {
		t.Fatalf("mailboxes = %+v", mbs)
	}
	var names []string
	seen := map[uint32]bool{}
	for _, mb := range mbs {
		names = append(names, mb.Name)
		if su, ok := want[mb.Name]; !ok || su != mb.SpecialUse || !mb.Subscribed || mb.NoSelect {
			t.Errorf("mailbox %+v unexpected", mb)
		}
		if seen[mb.UIDValidity] {
			t.Errorf("UIDVALIDITY %d issued twice", mb.UIDValidity)
		}
		seen[mb.UIDValidity] = true
	}
	if !slices.IsSorted(names) {
		t.Errorf("mailboxes not sorted: %v", names)
	}
	for _, bad := range []string{"", "a\x00b", "a\nb", string([]byte{0xff})} {
		if _, err := s.EnsureUser(ctx, bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("EnsureUser(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByName(nobody) = %v", err)
	}
	mustUser(t, s, "bob")
	users, err := s.Users(ctx)
	if err != nil || len(users) != 2 || users[0].Name != "alice" || users[1].Name != "bob" {
		t.Errorf("Users = %+v, %v", users, err)
	}
}

func TestValidateMailboxName(t *testing.T) {
	long := ""
	for len(long) <= maxMailboxNameBytes {
		long += "abcdefghij"
	}
	deep := "a"
	for range maxMailboxLevels {
		deep += "/a"
	}
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"inbox lower", "inbox", "INBOX", true},
		{"inbox mixed", "InBoX", "INBOX", true},
		{"inbox child", "inbox/Work", "INBOX/Work", true},
		{"not inbox prefix", "inboxes", "inboxes", true},
		{"nested", "a/b/c", "a/b/c", true},
		{"utf8", "Données/été", "Données/été", true},
		{"empty", "", "", false},
		{"nul", "a\x00b", "", false},
		{"control", "a\tb", "", false},
		{"del", "a\x7fb", "", false},
		{"c1 control", "a\u0085b", "", false},
		{"invalid utf8", "a\xffb", "", false},
		{"empty level", "a//b", "", false},
		{"leading slash", "/a", "", false},
		{"trailing slash", "a/", "", false},
		{"dot", "a/./b", "", false},
		{"dotdot", "../etc", "", false},
		{"dotdot middle", "a/../b", "", false},
		{"wildcard star", "a*", "", false},
		{"wildcard percent", "a%", "", false},
		{"too long", long, "", false},
		{"too deep", deep, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateMailboxName(tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Errorf("ValidateMailboxName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("ValidateMailboxName(%q) = %q, %v; want ErrInvalidName", tt.in, got, err)
			}
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 'x')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(ctx, dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("Open accepted a database from a newer version")
	}
}
