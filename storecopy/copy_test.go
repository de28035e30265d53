package storecopy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/storecopy"
)

var accounts = []string{"pop-a", "pop-b", "big"}

// copyStore runs Copy and fails the test on an error.
func copyStore(t *testing.T, src storecopy.Source, dst storecopy.Dest) storecopy.Report {
	t.Helper()
	rep, err := storecopy.Copy(context.Background(), src, dst, storecopy.Options{BatchMessages: 4, BatchRows: 7})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	return rep
}

// TestPostgres runs the tests that need PostgreSQL on one server.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	t.Run("round trip", func(t *testing.T) { testRoundTrip(t, srv) })
	t.Run("refuses a non-empty destination", func(t *testing.T) { testRefusesNonEmpty(t, openPG(t, srv)) })
	t.Run("damaged message", func(t *testing.T) { testDamagedMessage(t, openPG(t, srv)) })
	t.Run("damaged message in postgres", func(t *testing.T) { testDamagedInPostgres(t, srv) })
}

// testDamagedInPostgres: a message of a PostgreSQL source that lost its
// bytes is copied as a notice in Damaged; everything else is intact.
func testDamagedInPostgres(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	orig := openSQLite(t, t.TempDir())
	populate(t, orig)
	src, db := openPGNamed(t, srv)
	copyStore(t, orig, src)
	alice := must(src.UserByName(ctx, "alice"))
	archive := must(src.MailboxByName(ctx, alice.ID, "Archive"))
	snap := must(src.Snapshot(ctx, alice.ID, archive.ID))
	lost := snap.Entries[0].Message // also in INBOX: two entries to move
	srv.Psql(t, db, fmt.Sprintf("DELETE FROM message_data WHERE message_id = %d", lost))

	dst := openSQLite(t, t.TempDir())
	rep := copyStore(t, src, dst)
	if len(rep.Damaged) != 1 || rep.Damaged[0].Message != lost || !strings.Contains(rep.Damaged[0].Err, "no bytes stored") || len(rep.Damaged[0].Moved) != 2 {
		t.Fatalf("damaged: %+v", rep.Damaged)
	}
	dmb := must(dst.MailboxByName(ctx, alice.ID, store.DamagedMailbox))
	if got := must(dst.Snapshot(ctx, alice.ID, dmb.ID)); len(got.Entries) != 2 || got.Entries[0].Message != lost {
		t.Errorf("Damaged holds %+v, want the two entries of message %d", got.Entries, lost)
	}
	// The other messages are as in the original.
	for _, mb := range []string{"INBOX", "Archive"} {
		want := must(orig.Snapshot(ctx, alice.ID, must(orig.MailboxByName(ctx, alice.ID, mb)).ID))
		got := must(dst.Snapshot(ctx, alice.ID, want.Mailbox.ID))
		if len(got.Entries) != len(want.Entries)-1 {
			t.Errorf("%s: %d entries, want %d", mb, len(got.Entries), len(want.Entries)-1)
		}
		for _, e := range got.Entries {
			wb := must(orig.Body(ctx, alice.ID, want.Mailbox.ID, e.UID))
			if gb := must(dst.Body(ctx, alice.ID, got.Mailbox.ID, e.UID)); !bytes.Equal(gb, wb) {
				t.Errorf("%s UID %d: bytes differ", mb, e.UID)
			}
		}
	}
}

// TestSQLite runs the same tests with SQLite destinations.
func TestSQLite(t *testing.T) {
	t.Run("refuses a non-empty destination", func(t *testing.T) { testRefusesNonEmpty(t, openSQLite(t, t.TempDir())) })
	t.Run("damaged message", func(t *testing.T) { testDamagedMessage(t, openSQLite(t, t.TempDir())) })
}

// testRoundTrip copies a SQLite store to PostgreSQL and back to SQLite:
// after each copy everything a client or the poller sees is the same, and
// the copy behaves as the original would (no duplicate delivery, APPEND
// at the old UIDNEXT, new ids and UIDVALIDITYs beyond the copied ones).
func testRoundTrip(t *testing.T, srv *pgtest.Server) {
	src := openSQLite(t, t.TempDir())
	fx := populate(t, src)
	want := dump(t, src, accounts...)

	pg := openPG(t, srv)
	rep := copyStore(t, src, pg)
	if got := dump(t, pg, accounts...); got != want {
		t.Fatalf("SQLite -> PostgreSQL: the copy differs:\n%s", diffLines(want, got))
	}
	// 3 users with 6 default mailboxes, Work, Work/Projects, Lists, Lists/go.
	if rep.Users != 3 || rep.Mailboxes != 22 || rep.ProviderUsers != 2 || rep.AccountStatuses != 2 {
		t.Errorf("report: %+v", rep)
	}
	// 13 + 3 delivered, 5 + 1 appended, 3 + 1 expunged for good; 2 more
	// entries by COPY.
	if rep.Messages != 18 || rep.Entries != 20 || rep.LedgerRows != 17 || len(rep.Damaged) != 0 {
		t.Errorf("report: messages %d entries %d ledger rows %d damaged %d", rep.Messages, rep.Entries, rep.LedgerRows, len(rep.Damaged))
	}
	if len(rep.PerMailbox) != rep.Mailboxes {
		t.Errorf("report lists %d mailboxes, want %d", len(rep.PerMailbox), rep.Mailboxes)
	}

	back := openSQLite(t, t.TempDir())
	copyStore(t, pg, back)
	if got := dump(t, back, accounts...); got != want {
		t.Fatalf("PostgreSQL -> SQLite: the copy differs:\n%s", diffLines(want, got))
	}
	// What IMAP clients see, served by imapfront from each store.
	wantIMAP := imapView(t, src, "alice", "bob")
	for name, s := range map[string]imapfront.Store{"postgres": pg, "sqlite": back} {
		if got := imapView(t, s, "alice", "bob"); got != wantIMAP {
			t.Errorf("IMAP clients see the %s copy differently:\n%s", name, diffLines(wantIMAP, got))
		}
	}

	for name, s := range map[string]backend{"postgres": pg, "sqlite": back} {
		t.Run(name, func(t *testing.T) { checkBehavesAsOriginal(t, src, s, fx) })
	}
}

// checkBehavesAsOriginal checks that copy answers a poller and a client as
// the original src would.
func checkBehavesAsOriginal(t *testing.T, src *store.Store, copy backend, fx fixture) {
	ctx := context.Background()
	alice := must(copy.UserByName(ctx, "alice"))
	inbox := must(copy.MailboxByName(ctx, alice.ID, "INBOX"))
	srcInbox := must(src.MailboxByName(ctx, alice.ID, "INBOX"))

	// The poller lists the same messages again: nothing is stored twice.
	got := must(copy.Deliver(ctx, []store.Delivery{
		{Account: "pop-a", UIDL: "u1", Digest: "d1", User: "alice", Raw: message("a1")},
		{Account: "pop-a", UIDL: "u3", Digest: "d3", User: "alice", Raw: message("a3")}, // expunged locally
		{Account: "pop-b", UIDL: "", Digest: "e3", User: "bob", Raw: []byte("Subject: bare LF\nX: y\n\nbody\n")},
	}))
	if got[0] != fx.delivered {
		t.Errorf("delivering u1 again: %+v, want the original %+v", got[0], fx.delivered)
	}
	if got[1] != (store.Delivered{}) {
		t.Errorf("delivering the expunged u3 again: %+v, want nothing stored", got[1])
	}
	if got[2].UID == 0 || got[2].Message == 0 {
		t.Errorf("delivering bob's UIDL-less message again: %+v, want the existing one", got[2])
	}
	after := must(copy.MailboxByName(ctx, alice.ID, "INBOX"))
	if after.UIDNext != srcInbox.UIDNext || after.HighestModSeq != srcInbox.HighestModSeq {
		t.Errorf("INBOX after delivering known messages: uidnext %d modseq %d, want %d %d", after.UIDNext, after.HighestModSeq, srcInbox.UIDNext, srcInbox.HighestModSeq)
	}

	// A client's APPEND gets the UIDNEXT clients knew; new rows get ids
	// beyond the copied ones.
	e, uidv, err := copy.Append(ctx, alice.ID, inbox.ID, message("new"), []string{store.FlagSeen}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if e.UID != srcInbox.UIDNext || uidv != srcInbox.UIDValidity {
		t.Errorf("APPEND: UID %d UIDVALIDITY %d, want %d %d", e.UID, uidv, srcInbox.UIDNext, srcInbox.UIDValidity)
	}
	if e.ModSeq != srcInbox.HighestModSeq+1 {
		t.Errorf("APPEND: modseq %d, want %d", e.ModSeq, srcInbox.HighestModSeq+1)
	}
	// populate deleted the rows with the highest ids: the copy does not
	// issue those ids again.
	meta := must(src.ExportMeta(ctx))
	last := meta.LastIDs
	if last.User <= meta.Users[len(meta.Users)-1].ID || last.Mailbox <= meta.Mailboxes[len(meta.Mailboxes)-1].ID {
		t.Fatalf("the source's last ids %+v are not those of deleted rows", last)
	}
	if e.Message <= last.Message {
		t.Errorf("APPEND stored message %d, not beyond the source's last %d", e.Message, last.Message)
	}
	mb := must(copy.CreateMailbox(ctx, alice.ID, "Brand new", ""))
	if mb.ID <= last.Mailbox {
		t.Errorf("new mailbox id %d, not beyond the source's last %d", mb.ID, last.Mailbox)
	}
	for _, old := range meta.Mailboxes {
		if mb.UIDValidity <= old.UIDValidity {
			t.Errorf("new mailbox: UIDVALIDITY %d, not beyond copied mailbox %d's %d", mb.UIDValidity, old.ID, old.UIDValidity)
		}
	}
	dave := must(copy.EnsureUser(ctx, "dave"))
	if dave.ID <= last.User {
		t.Errorf("new user id %d, not beyond the source's last %d", dave.ID, last.User)
	}
	if err := copy.RecordSkipped(ctx, "pop-a", "another", "dx", 1<<30, "too large"); err != nil {
		t.Fatalf("a new ledger row: %v", err)
	}
}

// TestCopySQLiteToSQLite copies between two SQLite stores (no PostgreSQL
// needed): the same backend on both sides is a plain move of a data_dir.
func TestCopySQLiteToSQLite(t *testing.T) {
	src := openSQLite(t, t.TempDir())
	fx := populate(t, src)
	dst := openSQLite(t, t.TempDir())
	copyStore(t, src, dst)
	if want, got := dump(t, src, accounts...), dump(t, dst, accounts...); got != want {
		t.Fatalf("the copy differs:\n%s", diffLines(want, got))
	}
	checkBehavesAsOriginal(t, src, dst, fx)
}

// destBackend is a store to copy into, with the tests' view of it.
type destBackend interface {
	storecopy.Dest
	backend
	RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error
}

// testRefusesNonEmpty: a destination holding anything is left alone, with
// an error saying what it holds.
func testRefusesNonEmpty(t *testing.T, dst destBackend) {
	ctx := context.Background()
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	if err := dst.RecordSkipped(ctx, "acct", "x", "y", 1, "too large"); err != nil {
		t.Fatal(err)
	}
	if _, err := storecopy.Copy(ctx, src, dst, storecopy.Options{}); !errors.Is(err, store.ErrNotEmpty) || !strings.Contains(err.Error(), "1 ledger rows") {
		t.Fatalf("Copy into a store with a ledger row: %v, want ErrNotEmpty saying so", err)
	}
	must(dst.EnsureUser(ctx, "someone"))
	before := dump(t, dst, append(accounts, "acct")...)
	_, err := storecopy.Copy(ctx, src, dst, storecopy.Options{})
	if !errors.Is(err, store.ErrNotEmpty) {
		t.Fatalf("Copy into a store with a user: %v, want ErrNotEmpty", err)
	}
	if !strings.Contains(err.Error(), "1 users") || !strings.Contains(err.Error(), "6 mailboxes") {
		t.Errorf("the error does not say what the store holds: %v", err)
	}
	if after := dump(t, dst, append(accounts, "acct")...); after != before {
		t.Errorf("the refused destination changed:\n%s", diffLines(before, after))
	}
}

// testDamagedMessage: a message whose bytes fail their checksum in the
// source is copied as a notice in the user's Damaged mailbox, as verify
// -repair does; the rest is copied intact and its ledger row still
// guards against fetching it again.
func testDamagedMessage(t *testing.T, dst destBackend) {
	ctx := context.Background()
	dir := t.TempDir()
	src := openSQLite(t, dir)
	populate(t, src)
	alice := must(src.UserByName(ctx, "alice"))
	srcInbox := must(src.MailboxByName(ctx, alice.ID, "INBOX"))
	flipInPacks(t, dir, "the body of a5")
	rep, err := storecopy.Copy(ctx, src, dst, storecopy.Options{BatchMessages: 3})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if len(rep.Damaged) != 1 {
		t.Fatalf("report lists %d damaged messages, want 1: %+v", len(rep.Damaged), rep.Damaged)
	}
	d := rep.Damaged[0]
	if !strings.Contains(d.Err, "checksum") || len(d.Moved) != 1 || d.Moved[0].User != "alice" || d.Moved[0].Mailbox != "INBOX" || d.Moved[0].UID != 5 ||
		len(d.Origins) != 1 || d.Origins[0] != (store.Origin{Account: "pop-a", UIDL: "u5", Digest: "d5"}) {
		t.Errorf("damaged: %+v", d)
	}
	inbox := must(dst.Snapshot(ctx, alice.ID, srcInbox.ID))
	for _, e := range inbox.Entries {
		if e.UID == 5 {
			t.Errorf("the damaged message is still in INBOX")
		}
	}
	if inbox.Mailbox.UIDNext != srcInbox.UIDNext || inbox.Mailbox.UIDValidity != srcInbox.UIDValidity {
		t.Errorf("INBOX: %+v, want UIDNEXT and UIDVALIDITY of %+v", inbox.Mailbox, srcInbox)
	}
	dmb := must(dst.MailboxByName(ctx, alice.ID, store.DamagedMailbox))
	body := must(dst.Body(ctx, alice.ID, dmb.ID, d.Moved[0].DamagedUID))
	if !bytes.Contains(body, []byte("[damaged]")) || !bytes.Contains(body, []byte("could not be read from the source store")) {
		t.Errorf("the Damaged mailbox holds:\n%s", body)
	}
	// Its ledger row still names it: the poller does not fetch it again.
	got := must(dst.Deliver(ctx, []store.Delivery{{Account: "pop-a", UIDL: "u5", Digest: "d5", User: "alice", Raw: message("a5")}}))
	if got[0].Mailbox != dmb.ID || got[0].UID != d.Moved[0].DamagedUID {
		t.Errorf("delivering the damaged message's key again: %+v, want the notice in %s", got[0], store.DamagedMailbox)
	}
}

// tamper is a destination that changes what it is given, to show that
// the verification catches a copy that differs.
type tamper struct {
	*store.Store
	entries func([]store.ExportedEntry)
	msgs    func([]store.ExportedMessage)
	ledger  func([]store.LedgerRow)
}

func (d tamper) ImportEntries(ctx context.Context, ents []store.ExportedEntry) error {
	if d.entries != nil {
		d.entries(ents)
	}
	return d.Store.ImportEntries(ctx, ents)
}

func (d tamper) ImportMessages(ctx context.Context, msgs []store.ExportedMessage) error {
	if d.msgs != nil {
		d.msgs(msgs)
	}
	return d.Store.ImportMessages(ctx, msgs)
}

func (d tamper) ImportLedger(ctx context.Context, rows []store.LedgerRow) error {
	if d.ledger != nil {
		d.ledger(rows)
	}
	return d.Store.ImportLedger(ctx, rows)
}

func TestVerificationCatchesDifferences(t *testing.T) {
	ctx := context.Background()
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	for _, tc := range []struct {
		name string
		d    tamper
		want string
	}{
		{"flags", tamper{entries: func(es []store.ExportedEntry) {
			for i := range es {
				if len(es[i].Flags) > 0 {
					es[i].Flags = nil
					return
				}
			}
		}}, "flags differ"},
		{"modseq", tamper{entries: func(es []store.ExportedEntry) { es[0].ModSeq++ }}, "modseqs differ"},
		{"bytes", tamper{msgs: func(ms []store.ExportedMessage) {
			ms[0].Raw = bytes.Replace(ms[0].Raw, []byte("body"), []byte("bodY"), 1)
		}}, "bytes, size or INTERNALDATE differ"},
		{"date", tamper{msgs: func(ms []store.ExportedMessage) { ms[0].InternalDate = ms[0].InternalDate.Add(time.Second) }}, "bytes, size or INTERNALDATE differ"},
		{"ledger", tamper{ledger: func(rs []store.LedgerRow) { rs[0].DeletePending = !rs[0].DeletePending }}, `ledger of account "pop-a": rows differ`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.d.Store = openSQLite(t, t.TempDir())
			_, err := storecopy.Copy(ctx, src, tc.d, storecopy.Options{})
			if !errors.Is(err, storecopy.ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Copy: %v, want ErrMismatch saying %q", err, tc.want)
			}
		})
	}
}

// TestBatchesAreBounded: the destination is written in batches of at most
// BatchBytes of message bytes (or one larger message) and BatchMessages
// messages, and BatchRows entries or ledger rows: what bounds the memory
// a copy holds.
func TestBatchesAreBounded(t *testing.T) {
	ctx := context.Background()
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	alice := must(src.UserByName(ctx, "alice"))
	inbox := must(src.MailboxByName(ctx, alice.ID, "INBOX"))
	big := append(message("big"), bytes.Repeat([]byte("0123456789abcdef\r\n"), 100)...) // 1.9 KB: alone in its batch
	if _, _, err := src.Append(ctx, alice.ID, inbox.ID, big, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var msgBatches, rowBatches, msgs int
	d := tamper{
		msgs: func(ms []store.ExportedMessage) {
			msgBatches++
			msgs += len(ms)
			var n int
			for _, m := range ms {
				n += len(m.Raw)
			}
			if len(ms) > 3 || (n > 600 && len(ms) > 1) {
				t.Errorf("a batch of %d messages, %d bytes", len(ms), n)
			}
		},
		entries: func(es []store.ExportedEntry) {
			rowBatches++
			if len(es) > 4 {
				t.Errorf("a batch of %d entries", len(es))
			}
		},
		ledger: func(rs []store.LedgerRow) {
			rowBatches++
			if len(rs) > 4 {
				t.Errorf("a batch of %d ledger rows", len(rs))
			}
		},
	}
	d.Store = openSQLite(t, t.TempDir())
	rep, err := storecopy.Copy(ctx, src, d, storecopy.Options{BatchMessages: 3, BatchBytes: 600, BatchRows: 4})
	if err != nil {
		t.Fatal(err)
	}
	if msgs != rep.Messages || msgs != 19 || msgBatches < 7 || rowBatches < 10 {
		t.Errorf("%d messages in %d batches, %d row batches; report %+v", msgs, msgBatches, rowBatches, rep)
	}
}

// TestCancelled: a cancelled copy stops with the context's error and says
// so.
func TestCancelled(t *testing.T) {
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	dst := openSQLite(t, t.TempDir())
	_, err := storecopy.Copy(ctx, src, tamper{Store: dst, msgs: func([]store.ExportedMessage) { cancel() }}, storecopy.Options{BatchMessages: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy with its context cancelled during the messages: %v, want context.Canceled", err)
	}
}
