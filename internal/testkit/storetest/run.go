package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Run runs the contract suite: each subtest opens a fresh, empty backend
// with open (which registers its own cleanup).
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"UIDsNeverReused", testUIDsNeverReused},
		{"UIDsUnderConcurrency", testUIDsUnderConcurrency},
		{"ModSeqIncreases", testModSeqIncreases},
		{"Flags", testFlags},
		{"CopyMove", testCopyMove},
		{"Expunge", testExpunge},
		{"MailboxRules", testMailboxRules},
		{"Isolation", testIsolation},
		{"LedgerDuplicateGuard", testLedgerDuplicateGuard},
		{"LedgerMarks", testLedgerMarks},
		{"StageCommitRelease", testStageCommitRelease},
		{"StageUnknownUser", testStageUnknownUser},
		{"SubscribeOrder", testSubscribeOrder},
		{"ProviderUsers", testProviderUsers},
		{"DeleteUser", testDeleteUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// message returns a small valid message carrying tag.
func message(tag string) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.net\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody %s\r\n", tag, tag, tag)
}

func ensureUser(t *testing.T, b Backend, name string) store.User {
	t.Helper()
	u, err := b.EnsureUser(context.Background(), name)
	if err != nil {
		t.Fatalf("EnsureUser(%q): %v", name, err)
	}
	return u
}

func mailbox(t *testing.T, b Backend, u store.UserID, name string) store.Mailbox {
	t.Helper()
	mb, err := b.MailboxByName(context.Background(), u, name)
	if err != nil {
		t.Fatalf("MailboxByName(%q): %v", name, err)
	}
	return mb
}

func appendMsg(t *testing.T, b Backend, u store.UserID, mb store.MailboxID, tag string, flags ...string) store.Entry {
	t.Helper()
	e, _, err := b.Append(context.Background(), u, mb, message(tag), flags, time.Time{})
	if err != nil {
		t.Fatalf("Append(%s): %v", tag, err)
	}
	return e
}

func snapshot(t *testing.T, b Backend, u store.UserID, mb store.MailboxID) store.Snapshot {
	t.Helper()
	s, err := b.Snapshot(context.Background(), u, mb)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

func uidsOf(es []store.Entry) []store.UID {
	out := make([]store.UID, len(es))
	for i, e := range es {
		out[i] = e.UID
	}
	return out
}

// bodies returns the raw messages of uids, by UID.
func bodies(t *testing.T, b Backend, u store.UserID, mb store.MailboxID, uids []store.UID) map[store.UID]string {
	t.Helper()
	out := map[store.UID]string{}
	err := b.Bodies(context.Background(), u, mb, uids, func(uid store.UID, raw []byte, damaged error) error {
		if damaged != nil {
			return damaged
		}
		out[uid] = string(raw)
		return nil
	})
	if err != nil {
		t.Fatalf("Bodies: %v", err)
	}
	return out
}

func testUIDsNeverReused(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	var last store.UID
	for i := range 3 {
		e := appendMsg(t, b, u.ID, inbox.ID, fmt.Sprint(i), store.FlagDeleted)
		if e.UID <= last {
			t.Fatalf("UID %d after %d", e.UID, last)
		}
		last = e.UID
	}
	if gone, err := b.Expunge(ctx, u.ID, inbox.ID, nil); err != nil || len(gone) != 3 {
		t.Fatalf("Expunge = %v, %v; want 3 UIDs", gone, err)
	}
	e := appendMsg(t, b, u.ID, inbox.ID, "after")
	if e.UID <= last {
		t.Fatalf("UID %d after expunging up to %d: reused", e.UID, last)
	}
	d, err := b.Deliver(ctx, []store.Delivery{{Account: "a", UIDL: "1", Digest: "d1", User: "alice", Raw: message("dl")}})
	if err != nil || d[0].UID <= e.UID {
		t.Fatalf("Deliver = %+v, %v; want a UID above %d", d, err, e.UID)
	}
	if mb := mailbox(t, b, u.ID, store.Inbox); mb.UIDNext <= d[0].UID || mb.UIDValidity != inbox.UIDValidity {
		t.Fatalf("UIDNEXT %d UIDVALIDITY %d after UID %d (was %d)", mb.UIDNext, mb.UIDValidity, d[0].UID, inbox.UIDValidity)
	}
	// Renaming keeps UIDVALIDITY and UIDs; recreating gets a new one.
	box, err := b.CreateMailbox(ctx, u.ID, "box", "")
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, b, u.ID, box.ID, "x")
	if err := b.DeleteMailbox(ctx, u.ID, "box"); err != nil {
		t.Fatal(err)
	}
	again, err := b.CreateMailbox(ctx, u.ID, "box", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == box.ID || again.UIDValidity <= box.UIDValidity {
		t.Fatalf("recreated mailbox: id %d validity %d; was %d, %d", again.ID, again.UIDValidity, box.ID, box.UIDValidity)
	}
}

func testUIDsUnderConcurrency(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	archive := mailbox(t, b, u.ID, "Archive")
	seed := appendMsg(t, b, u.ID, archive.ID, "seed")
	const workers, each = 4, 8
	var (
		mu   sync.Mutex
		got  []store.UID
		errs []error
		wg   sync.WaitGroup
	)
	note := func(uids []store.UID, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
		got = append(got, uids...)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tag := fmt.Sprintf("%d-%d", w, i)
				switch i % 3 {
				case 0:
					e, _, err := b.Append(ctx, u.ID, inbox.ID, message(tag), nil, time.Time{})
					note([]store.UID{e.UID}, err)
				case 1:
					d, err := b.Deliver(ctx, []store.Delivery{{Account: "a", UIDL: tag, Digest: tag, User: "alice", Raw: message(tag)}})
					if err == nil {
						note([]store.UID{d[0].UID}, nil)
					} else {
						note(nil, err)
					}
				default:
					r, err := b.Copy(ctx, u.ID, archive.ID, []store.UID{seed.UID}, inbox.ID)
					note(r.Dest, err)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(got) != workers*each {
		t.Fatalf("%d UIDs for %d writes", len(got), workers*each)
	}
	sorted := slices.Sorted(slices.Values(got))
	if len(slices.Compact(sorted)) != len(got) {
		t.Fatalf("a UID was given twice: %v", got)
	}
	snap := snapshot(t, b, u.ID, inbox.ID)
	if !slices.Equal(uidsOf(snap.Entries), slices.Sorted(slices.Values(got))) {
		t.Fatalf("snapshot UIDs %v, written %v", uidsOf(snap.Entries), sorted)
	}
	if snap.Mailbox.UIDNext <= sorted[len(sorted)-1] {
		t.Fatalf("UIDNEXT %d, highest UID %d", snap.Mailbox.UIDNext, sorted[len(sorted)-1])
	}
}

func testModSeqIncreases(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	last := inbox.HighestModSeq
	step := func(what string) {
		t.Helper()
		mb := mailbox(t, b, u.ID, store.Inbox)
		if mb.HighestModSeq <= last {
			t.Fatalf("%s: HIGHESTMODSEQ %d, was %d", what, mb.HighestModSeq, last)
		}
		last = mb.HighestModSeq
	}
	e := appendMsg(t, b, u.ID, inbox.ID, "a")
	step("append")
	if e.ModSeq != last {
		t.Errorf("appended entry modseq %d, mailbox %d", e.ModSeq, last)
	}
	es, err := b.UpdateFlags(ctx, u.ID, inbox.ID, []store.UID{e.UID}, store.FlagsAdd, []string{store.FlagSeen})
	if err != nil {
		t.Fatal(err)
	}
	step("flags")
	if es[0].ModSeq != last {
		t.Errorf("flagged entry modseq %d, mailbox %d", es[0].ModSeq, last)
	}
	// A flag change that changes nothing does not bump it.
	if _, err := b.UpdateFlags(ctx, u.ID, inbox.ID, []store.UID{e.UID}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if mb := mailbox(t, b, u.ID, store.Inbox); mb.HighestModSeq != last {
		t.Errorf("no-op flag change moved HIGHESTMODSEQ %d -> %d", last, mb.HighestModSeq)
	}
	if _, err := b.Deliver(ctx, []store.Delivery{{Account: "a", UIDL: "1", Digest: "d", User: "alice", Raw: message("d")}}); err != nil {
		t.Fatal(err)
	}
	step("deliver")
	if _, err := b.UpdateFlags(ctx, u.ID, inbox.ID, []store.UID{e.UID}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	step("flags")
	if _, err := b.Expunge(ctx, u.ID, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	step("expunge")
}

func testFlags(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	e1 := appendMsg(t, b, u.ID, inbox.ID, "1", store.FlagSeen, "$Label1")
	e2 := appendMsg(t, b, u.ID, inbox.ID, "2")
	if !slices.Equal(e1.Flags, []string{"$Label1", store.FlagSeen}) {
		t.Errorf("appended flags %q, want sorted [$Label1 \\Seen]", e1.Flags)
	}
	both := []store.UID{e1.UID, e2.UID}
	es, err := b.UpdateFlags(ctx, u.ID, inbox.ID, both, store.FlagsAdd, []string{`\flagged`, "Work", "work"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || !slices.Equal(es[1].Flags, []string{"Work", store.FlagFlagged}) || !slices.Contains(es[0].Flags, store.FlagFlagged) {
		t.Fatalf("after +FLAGS: %+v", es)
	}
	es, err = b.UpdateFlags(ctx, u.ID, inbox.ID, both, store.FlagsRemove, []string{store.FlagFlagged, "WORK"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(es[0].Flags, []string{"$Label1", store.FlagSeen}) || len(es[1].Flags) != 0 {
		t.Fatalf("after -FLAGS: %+v", es)
	}
	es, err = b.UpdateFlags(ctx, u.ID, inbox.ID, []store.UID{e2.UID}, store.FlagsReplace, []string{store.FlagDeleted, store.FlagAnswered})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(es[0].Flags, []string{store.FlagAnswered, store.FlagDeleted}) {
		t.Fatalf("after FLAGS: %+v", es)
	}
	c, err := b.Counts(ctx, u.ID, inbox.ID)
	if err != nil || c.Messages != 2 || c.Unseen != 1 || c.Deleted != 1 {
		t.Fatalf("Counts = %+v, %v; want 2 messages, 1 unseen, 1 deleted", c, err)
	}
	snap := snapshot(t, b, u.ID, inbox.ID)
	if !slices.Equal(snap.Entries[1].Flags, es[0].Flags) {
		t.Errorf("snapshot flags %q, UpdateFlags said %q", snap.Entries[1].Flags, es[0].Flags)
	}
	// A UID that does not exist is left out.
	es, err = b.UpdateFlags(ctx, u.ID, inbox.ID, []store.UID{e2.UID + 100}, store.FlagsAdd, []string{store.FlagSeen})
	if err != nil || len(es) != 0 {
		t.Errorf("UpdateFlags of a missing UID = %+v, %v", es, err)
	}
}

func testCopyMove(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	archive := mailbox(t, b, u.ID, "Archive")
	e1 := appendMsg(t, b, u.ID, inbox.ID, "1", store.FlagFlagged)
	e2 := appendMsg(t, b, u.ID, inbox.ID, "2")
	r, err := b.Copy(ctx, u.ID, inbox.ID, []store.UID{e1.UID, e2.UID}, archive.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.UIDValidity != archive.UIDValidity || !slices.Equal(r.Source, []store.UID{e1.UID, e2.UID}) || len(r.Dest) != 2 || r.Dest[0] >= r.Dest[1] {
		t.Fatalf("Copy = %+v", r)
	}
	asnap := snapshot(t, b, u.ID, archive.ID)
	if !slices.Equal(uidsOf(asnap.Entries), r.Dest) || !slices.Equal(asnap.Entries[0].Flags, []string{store.FlagFlagged}) {
		t.Fatalf("archive after COPY: %+v", asnap.Entries)
	}
	got := bodies(t, b, u.ID, archive.ID, r.Dest)
	if got[r.Dest[0]] != string(message("1")) || got[r.Dest[1]] != string(message("2")) {
		t.Fatalf("copied bodies differ: %v", got)
	}
	if n := len(snapshot(t, b, u.ID, inbox.ID).Entries); n != 2 {
		t.Fatalf("source has %d entries after COPY, want 2", n)
	}
	m, err := b.Move(ctx, u.ID, inbox.ID, []store.UID{e2.UID}, archive.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Dest) != 1 || m.Dest[0] <= r.Dest[1] {
		t.Fatalf("Move = %+v, want a new UID above %d", m, r.Dest[1])
	}
	if s := snapshot(t, b, u.ID, inbox.ID); !slices.Equal(uidsOf(s.Entries), []store.UID{e1.UID}) {
		t.Fatalf("source after MOVE: %v", uidsOf(s.Entries))
	}
	if got := bodies(t, b, u.ID, archive.ID, m.Dest); got[m.Dest[0]] != string(message("2")) {
		t.Fatalf("moved body: %v", got)
	}
	// UIDs that do not exist are skipped, not an error.
	if r, err := b.Copy(ctx, u.ID, inbox.ID, []store.UID{e2.UID}, archive.ID); err != nil || len(r.Dest) != 0 {
		t.Errorf("Copy of an expunged UID = %+v, %v", r, err)
	}
}

func testExpunge(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	inbox := mailbox(t, b, u.ID, store.Inbox)
	e1 := appendMsg(t, b, u.ID, inbox.ID, "1", store.FlagDeleted)
	e2 := appendMsg(t, b, u.ID, inbox.ID, "2", store.FlagDeleted)
	e3 := appendMsg(t, b, u.ID, inbox.ID, "3")
	// UID EXPUNGE: only the named ones that carry \Deleted.
	gone, err := b.Expunge(ctx, u.ID, inbox.ID, []store.UID{e2.UID, e3.UID})
	if err != nil || !slices.Equal(gone, []store.UID{e2.UID}) {
		t.Fatalf("UID EXPUNGE = %v, %v; want [%d]", gone, err, e2.UID)
	}
	gone, err = b.Expunge(ctx, u.ID, inbox.ID, nil)
	if err != nil || !slices.Equal(gone, []store.UID{e1.UID}) {
		t.Fatalf("EXPUNGE = %v, %v; want [%d]", gone, err, e1.UID)
	}
	if s := snapshot(t, b, u.ID, inbox.ID); !slices.Equal(uidsOf(s.Entries), []store.UID{e3.UID}) {
		t.Fatalf("left: %v", uidsOf(s.Entries))
	}
	if gone, err := b.Expunge(ctx, u.ID, inbox.ID, nil); err != nil || len(gone) != 0 {
		t.Fatalf("EXPUNGE with nothing deleted = %v, %v", gone, err)
	}
}

func testMailboxRules(t *testing.T, b Backend) {
	ctx := context.Background()
	u := ensureUser(t, b, "alice")
	names := func() []string {
		mbs, err := b.Mailboxes(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mb := range mbs {
			out = append(out, mb.Name)
		}
		return out
	}
	for _, n := range []string{store.Inbox, "Drafts", "Sent", "Trash", "Junk", "Archive"} {
		if !slices.Contains(names(), n) {
			t.Fatalf("new user lacks %s: %v", n, names())
		}
	}
	if _, err := b.CreateMailbox(ctx, u.ID, "Archive", ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("CREATE existing = %v, want ErrExists", err)
	}
	for _, bad := range []string{"", "a//b", "/a", "a/", "a/../b", "a\x00b"} {
		if _, err := b.CreateMailbox(ctx, u.ID, bad, ""); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("CREATE %q = %v, want ErrInvalidName", bad, err)
		}
	}
	child, err := b.CreateMailbox(ctx, u.ID, "a/b/c", "")
	if err != nil {
		t.Fatal(err)
	}
	if p := mailbox(t, b, u.ID, "a/b"); !p.NoSelect {
		t.Errorf("implicit parent a/b is selectable: %+v", p)
	}
	appendMsg(t, b, u.ID, child.ID, "c")
	// RENAME moves children, keeps IDs and UIDVALIDITY.
	if err := b.RenameMailbox(ctx, u.ID, "a", "x"); err != nil {
		t.Fatal(err)
	}
	moved := mailbox(t, b, u.ID, "x/b/c")
	if moved.ID != child.ID || moved.UIDValidity != child.UIDValidity || len(snapshot(t, b, u.ID, moved.ID).Entries) != 1 {
		t.Errorf("renamed child %+v, was %+v", moved, child)
	}
	if _, err := b.MailboxByName(ctx, u.ID, "a/b/c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old name after RENAME = %v, want ErrNotFound", err)
	}
	if err := b.RenameMailbox(ctx, u.ID, "nope", "y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RENAME missing = %v, want ErrNotFound", err)
	}
	if err := b.RenameMailbox(ctx, u.ID, "x", "Archive"); !errors.Is(err, store.ErrExists) {
		t.Errorf("RENAME onto existing = %v, want ErrExists", err)
	}
	if err := b.RenameMailbox(ctx, u.ID, "x", "x/b/z"); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("RENAME under itself = %v, want ErrInvalidName", err)
	}
	// RENAME INBOX moves its messages and leaves it empty.
	inbox := mailbox(t, b, u.ID, store.Inbox)
	appendMsg(t, b, u.ID, inbox.ID, "in")
	if err := b.RenameMailbox(ctx, u.ID, store.Inbox, "Old"); err != nil {
		t.Fatal(err)
	}
	if n := len(snapshot(t, b, u.ID, mailbox(t, b, u.ID, "Old").ID).Entries); n != 1 {
		t.Errorf("Old has %d messages after RENAME INBOX, want 1", n)
	}
	if in := mailbox(t, b, u.ID, store.Inbox); in.ID != inbox.ID || len(snapshot(t, b, u.ID, in.ID).Entries) != 0 {
		t.Errorf("INBOX after RENAME: %+v", in)
	}
	// DELETE.
	if err := b.DeleteMailbox(ctx, u.ID, store.Inbox); !errors.Is(err, store.ErrInboxDelete) {
		t.Errorf("DELETE INBOX = %v, want ErrInboxDelete", err)
	}
	if err := b.DeleteMailbox(ctx, u.ID, "x/b"); !errors.Is(err, store.ErrHasChildren) {
		t.Errorf("DELETE placeholder with children = %v, want ErrHasChildren", err)
	}
	if err := b.DeleteMailbox(ctx, u.ID, "x/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.MailboxByName(ctx, u.ID, "x/b/c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted mailbox = %v, want ErrNotFound", err)
	}
	withKids, err := b.CreateMailbox(ctx, u.ID, "p", "")
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, b, u.ID, withKids.ID, "p")
	if _, err := b.CreateMailbox(ctx, u.ID, "p/kid", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteMailbox(ctx, u.ID, "p"); err != nil {
		t.Fatal(err)
	}
	if p := mailbox(t, b, u.ID, "p"); !p.NoSelect {
		t.Errorf("deleted mailbox with children is not a placeholder: %+v", p)
	}
	if _, _, err := b.Append(ctx, u.ID, withKids.ID, message("z"), nil, time.Time{}); !errors.Is(err, store.ErrNoSelect) && !errors.Is(err, store.ErrNotFound) {
		t.Errorf("APPEND to a placeholder = %v, want ErrNoSelect or ErrNotFound", err)
	}
	// Subscriptions are kept by name.
	if err := b.SetSubscribed(ctx, u.ID, "ghost", true); err != nil {
		t.Fatal(err)
	}
	subs, err := b.Subscriptions(ctx, u.ID)
	if err != nil || !slices.Contains(subs, "ghost") {
		t.Errorf("Subscriptions = %v, %v; want ghost", subs, err)
	}
}

func testIsolation(t *testing.T, b Backend) {
	ctx := context.Background()
	alice := ensureUser(t, b, "alice")
	bob := ensureUser(t, b, "bob")
	inbox := mailbox(t, b, alice.ID, store.Inbox)
	e := appendMsg(t, b, alice.ID, inbox.ID, "private")
	if _, err := b.Snapshot(ctx, bob.ID, inbox.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's Snapshot of alice's INBOX = %v, want ErrNotFound", err)
	}
	if es, err := b.UpdateFlags(ctx, bob.ID, inbox.ID, []store.UID{e.UID}, store.FlagsAdd, []string{store.FlagSeen}); !errors.Is(err, store.ErrNotFound) || len(es) != 0 {
		t.Errorf("bob's UpdateFlags = %v, %v; want ErrNotFound", es, err)
	}
	bobInbox := mailbox(t, b, bob.ID, store.Inbox)
	if _, err := b.Copy(ctx, bob.ID, inbox.ID, []store.UID{e.UID}, bobInbox.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob copying from alice = %v, want ErrNotFound", err)
	}
	if _, err := b.Copy(ctx, alice.ID, inbox.ID, []store.UID{e.UID}, bobInbox.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice copying into bob's INBOX = %v, want ErrNotFound", err)
	}
	if s := snapshot(t, b, alice.ID, inbox.ID); len(s.Entries) != 1 || len(s.Entries[0].Flags) != 0 {
		t.Errorf("alice's INBOX changed: %+v", s.Entries)
	}
	if _, err := b.UserByName(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByName of a missing user = %v, want ErrNotFound", err)
	}
}
