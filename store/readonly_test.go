package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func openReadOnly(tb testing.TB, dir string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dir, Options{ReadOnly: true})
	if err != nil {
		tb.Fatalf("read-only Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("read-only Close: %v", err)
		}
	})
	return s
}

// inboxCounts reads alice's INBOX counts through s.
func inboxCounts(tb testing.TB, s *Store) MailboxCounts {
	tb.Helper()
	ctx := context.Background()
	u, err := s.UserByName(ctx, "alice")
	if err != nil {
		tb.Fatalf("UserByName: %v", err)
	}
	mb, err := s.MailboxByName(ctx, u.ID, Inbox)
	if err != nil {
		tb.Fatalf("MailboxByName: %v", err)
	}
	c, err := s.Counts(ctx, u.ID, mb.ID)
	if err != nil {
		tb.Fatalf("Counts: %v", err)
	}
	return c
}

func TestReadOnlyAlongsideWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rw, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	alice := mustUser(t, rw, "alice")
	if _, err := rw.Deliver(ctx, []Delivery{{Account: "home", UIDL: "u1", Digest: "d1", User: "alice", Raw: testMessage("one")}}); err != nil {
		t.Fatal(err)
	}
	st := AccountStatus{Account: "home", LastAttempt: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC), Fetched: 1, FetchedBytes: 100}
	if err := rw.SetAccountStatus(ctx, st); err != nil {
		t.Fatal(err)
	}

	ro := openReadOnly(t, dir) // the writer holds the lock: no ErrLocked
	users, err := ro.Users(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "alice" || users[0].ID != alice.ID {
		t.Fatalf("Users = %+v, %v", users, err)
	}
	mbs, err := ro.Mailboxes(ctx, alice.ID)
	if err != nil || len(mbs) != 6 {
		t.Fatalf("Mailboxes = %d, %v; want INBOX and the 5 special-use mailboxes", len(mbs), err)
	}
	if c := inboxCounts(t, ro); c.Messages != 1 || c.Unseen != 1 {
		t.Errorf("INBOX counts %+v, want 1 message, 1 unseen", c)
	}
	sts, err := ro.AccountStatuses(ctx)
	if err != nil || len(sts) != 1 || sts[0].Fetched != 1 || !sts[0].LastAttempt.Equal(st.LastAttempt) {
		t.Errorf("AccountStatuses = %+v, %v", sts, err)
	}
	led, err := ro.Ledger(ctx, "home")
	if err != nil || len(led) != 1 || led[0].UIDL != "u1" || led[0].Message == 0 {
		t.Errorf("Ledger = %+v, %v", led, err)
	}

	// Commits made after the read-only open are visible to its next read.
	inbox := mustMailbox(t, rw, alice.ID, Inbox)
	for i := range 3 {
		mustAppend(t, rw, alice.ID, inbox.ID, fmt.Sprint("later", i), FlagSeen)
	}
	if c := inboxCounts(t, ro); c.Messages != 4 || c.Unseen != 1 {
		t.Errorf("INBOX counts after more writes %+v, want 4 messages, 1 unseen", c)
	}
	snap, err := ro.Snapshot(ctx, alice.ID, inbox.ID)
	if err != nil || len(snap.Entries) != 4 {
		t.Fatalf("Snapshot: %d entries, %v", len(snap.Entries), err)
	}
	body, err := ro.Body(ctx, alice.ID, inbox.ID, snap.Entries[3].UID)
	if err != nil || !strings.Contains(string(body), "body of later2") {
		t.Errorf("Body = %q, %v", body, err)
	}
	// The writer is unaffected by the reader.
	if _, err := rw.EnsureUser(ctx, "bob"); err != nil {
		t.Fatalf("writer after read-only open: %v", err)
	}
	if _, err := ro.UserByName(ctx, "bob"); err != nil {
		t.Errorf("read-only UserByName(bob): %v", err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rw, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	alice := mustUser(t, rw, "alice")
	inbox := mustMailbox(t, rw, alice.ID, Inbox)
	e := mustAppend(t, rw, alice.ID, inbox.ID, "one")
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	ro := openReadOnly(t, dir) // also works with no writer at all
	// A read-only Store takes no lock: a read-write Open still succeeds.
	rw2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("read-write Open beside a read-only Store: %v", err)
	}
	defer rw2.Close()
	var changes atomic.Int64
	roSub := ro.Subscribe(func(Change) { changes.Add(1) })
	defer roSub.Cancel()
	uid := []UID{e.UID}
	trash := mustMailbox(t, rw2, alice.ID, "Trash")
	writes := []struct {
		name string
		call func() error
	}{
		{"EnsureUser existing", func() error { _, err := ro.EnsureUser(ctx, "alice"); return err }},
		{"EnsureUser new", func() error { _, err := ro.EnsureUser(ctx, "carol"); return err }},
		{"Deliver", func() error {
			_, err := ro.Deliver(ctx, []Delivery{{Account: "a", UIDL: "x", Digest: "d", User: "alice", Raw: testMessage("x")}})
			return err
		}},
		{"Deliver none", func() error { _, err := ro.Deliver(ctx, nil); return err }},
		{"Append", func() error {
			_, _, err := ro.Append(ctx, alice.ID, inbox.ID, testMessage("y"), nil, time.Time{})
			return err
		}},
		{"UpdateFlags", func() error {
			_, err := ro.UpdateFlags(ctx, alice.ID, inbox.ID, uid, FlagsAdd, []string{FlagSeen})
			return err
		}},
		{"Copy", func() error { _, err := ro.Copy(ctx, alice.ID, inbox.ID, uid, inbox.ID); return err }},
		{"Move", func() error {
			_, err := ro.Move(ctx, alice.ID, inbox.ID, uid, trash.ID)
			return err
		}},
		{"Expunge", func() error { _, err := ro.Expunge(ctx, alice.ID, inbox.ID, nil); return err }},
		{"CreateMailbox", func() error { _, err := ro.CreateMailbox(ctx, alice.ID, "Work", ""); return err }},
		{"DeleteMailbox", func() error { return ro.DeleteMailbox(ctx, alice.ID, "Junk") }},
		{"RenameMailbox", func() error { return ro.RenameMailbox(ctx, alice.ID, "Junk", "Spam") }},
		{"SetSubscribed", func() error { return ro.SetSubscribed(ctx, alice.ID, "Junk", false) }},
		{"RecordSkipped", func() error { return ro.RecordSkipped(ctx, "a", "u", "d", 1, "too large") }},
		{"MarkDeletePending", func() error { return ro.MarkDeletePending(ctx, "a", []string{"u"}) }},
		{"MarkDeleted", func() error { return ro.MarkDeleted(ctx, "a", []string{"u"}) }},
		{"ClearDeletePending", func() error { return ro.ClearDeletePending(ctx, "a", nil) }},
		{"TouchLedger", func() error { return ro.TouchLedger(ctx, "a", []string{"u"}, time.Now()) }},
		{"PruneLedger", func() error { _, err := ro.PruneLedger(ctx, "a", time.Now()); return err }},
		{"SetAccountStatus", func() error { return ro.SetAccountStatus(ctx, AccountStatus{Account: "a"}) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := w.call(); !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s on a read-only store: %v, want ErrReadOnly", w.name, err)
			}
		})
	}
	// Nothing changed.
	if c := inboxCounts(t, ro); c.Messages != 1 || c.Unseen != 1 {
		t.Errorf("INBOX counts %+v after refused writes, want 1 message, 1 unseen", c)
	}
	if _, err := ro.UserByName(ctx, "carol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByName(carol) = %v, want ErrNotFound", err)
	}
	if err := roSub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if changes.Load() != 0 {
		t.Errorf("%d changes published by a read-only store", changes.Load())
	}
}

func TestReadOnlyOpenFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := Open(ctx, dir, Options{ReadOnly: true})
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Open = %v, want a does-not-exist error", err)
		}
		if _, serr := os.Stat(dir); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("read-only Open created %s", dir)
		}
	})
	t.Run("missing database", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Open(ctx, dir, Options{ReadOnly: true})
		want := filepath.Join(dir, dbFileName) + " does not exist"
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open = %v, want %q", err, want)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Errorf("read-only Open left %d files in the directory", len(ents))
		}
	})
	t.Run("empty database", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, dbFileName), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, dir, Options{ReadOnly: true})
		if err == nil || !strings.Contains(err.Error(), "no popbridge schema") {
			t.Fatalf("Open = %v, want a no-schema error", err)
		}
	})
	for _, tc := range []struct {
		name  string
		delta int
		want  string
	}{
		{"newer schema", +1, "is newer than this program's"},
		{"older schema", -1, "cannot migrate it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rw, err := Open(ctx, dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, known, err := migrationNames()
			if err != nil {
				t.Fatal(err)
			}
			q := `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', '')`
			if tc.delta < 0 {
				q = `DELETE FROM schema_migrations WHERE version = ?`
			}
			v := known + max(tc.delta, 0)
			if _, err := rw.wdb.ExecContext(ctx, q, v); err != nil {
				t.Fatal(err)
			}
			rw.Close()
			_, err = Open(ctx, dir, Options{ReadOnly: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadOnlyAfterClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rw, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
	ro, err := Open(ctx, dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Users(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Users after Close: %v, want ErrClosed", err)
	}
	if _, err := ro.EnsureUser(ctx, "alice"); !errors.Is(err, ErrClosed) {
		t.Errorf("EnsureUser after Close: %v, want ErrClosed", err)
	}
}

const readOnlyChildEnv = "POPBRIDGE_STORE_RO_CHILD_DIR"

// TestReadOnlyWriterChild is the child of TestReadOnlyBesideOtherProcess:
// it opens the store read-write, creates alice, prints "READY", then for
// every line n it reads delivers n messages and prints "DONE <total>".
func TestReadOnlyWriterChild(t *testing.T) {
	dir := os.Getenv(readOnlyChildEnv)
	if dir == "" {
		t.Skip("child of TestReadOnlyBesideOtherProcess only")
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fail(err)
	}
	if _, err := s.EnsureUser(ctx, "alice"); err != nil {
		fail(err)
	}
	fmt.Println("READY")
	total := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			fail(err)
		}
		ds := make([]Delivery, n)
		for i := range ds {
			tag := fmt.Sprint("child", total+i)
			ds[i] = Delivery{Account: "home", UIDL: tag, Digest: tag, User: "alice", Raw: testMessage(tag)}
		}
		if _, err := s.Deliver(ctx, ds); err != nil {
			fail(err)
		}
		total += n
		fmt.Println("DONE", total)
	}
	if err := s.Close(); err != nil {
		fail(err)
	}
	fmt.Println("CLOSED")
}

// TestReadOnlyBesideOtherProcess opens a store read-only while another
// process holds it read-write (as `popbridge status` beside `serve`) and
// reads what that process commits, before and after the read-only open.
func TestReadOnlyBesideOtherProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	child := startChild(t, "TestReadOnlyWriterChild", readOnlyChildEnv, dir)
	expect := child.expect
	send := func(n int) { t.Helper(); child.send(strconv.Itoa(n)) }
	expect("READY")
	send(5)
	expect("DONE 5")

	// The read-write Open is refused with the holder's pid ...
	_, err := Open(ctx, dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("read-write Open beside the child: %v, want ErrLocked", err)
	}
	if d, pid, ok := LockHolder(err); !ok || d != dir || pid != child.pid() {
		t.Errorf("LockHolder = %q, %d, %v; want %q, %d", d, pid, ok, dir, child.pid())
	}
	// ... the read-only one is not.
	ro := openReadOnly(t, dir)
	if c := inboxCounts(t, ro); c.Messages != 5 {
		t.Errorf("INBOX holds %d messages, want 5", c.Messages)
	}
	send(7)
	expect("DONE 12")
	if c := inboxCounts(t, ro); c.Messages != 12 {
		t.Errorf("INBOX holds %d messages after the child's second delivery, want 12", c.Messages)
	}
	led, err := ro.Ledger(ctx, "home")
	if err != nil || len(led) != 12 {
		t.Errorf("Ledger: %d rows, %v; want 12", len(led), err)
	}
	// The child can still close cleanly (checkpoint) with a reader open.
	child.stdin.Close()
	expect("CLOSED")
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if c := inboxCounts(t, ro); c.Messages != 12 {
		t.Errorf("INBOX holds %d messages after the child closed, want 12", c.Messages)
	}
	if _, pid, ok := LockHolder(errors.New("other")); ok || pid != 0 {
		t.Errorf("LockHolder of an unrelated error: %d, %v", pid, ok)
	}
}

// TestReadOnlyAfterWriterKilled opens read-only a database whose writer
// was killed with SIGKILL: the WAL was never checkpointed and nobody else
// has it open, so the read-only connection must recover the WAL index.
func TestReadOnlyAfterWriterKilled(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, "TestReadOnlyWriterChild", readOnlyChildEnv, dir)
	child.next("READY")
	child.send("4")
	child.next("DONE 4")
	child.kill()
	if fi, err := os.Stat(filepath.Join(dir, dbFileName+"-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("expected a non-empty WAL left by the killed writer: %v", err)
	}
	ro := openReadOnly(t, dir)
	if c := inboxCounts(t, ro); c.Messages != 4 {
		t.Errorf("INBOX holds %d messages, want the killed writer's 4", c.Messages)
	}
}
