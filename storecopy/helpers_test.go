package storecopy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/store"
)

// backend is what the tests do with either store: both *store.Store and
// *pgstore.Store have these methods, with these signatures.
type backend interface {
	EnsureUser(ctx context.Context, name string) (store.User, error)
	UserByName(ctx context.Context, name string) (store.User, error)
	Users(ctx context.Context) ([]store.User, error)
	Mailboxes(ctx context.Context, u store.UserID) ([]store.Mailbox, error)
	MailboxByName(ctx context.Context, u store.UserID, name string) (store.Mailbox, error)
	CreateMailbox(ctx context.Context, u store.UserID, name, specialUse string) (store.Mailbox, error)
	Subscriptions(ctx context.Context, u store.UserID) ([]string, error)
	Snapshot(ctx context.Context, u store.UserID, id store.MailboxID) (store.Snapshot, error)
	Meta(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID) ([]store.MessageMeta, error)
	Body(ctx context.Context, u store.UserID, id store.MailboxID, uid store.UID) ([]byte, error)
	Append(ctx context.Context, u store.UserID, id store.MailboxID, raw []byte, flags []string, date time.Time) (store.Entry, uint32, error)
	Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error)
	Ledger(ctx context.Context, account string) ([]store.LedgerEntry, error)
	RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error
	AccountStatuses(ctx context.Context) ([]store.AccountStatus, error)
	ProviderUsers(ctx context.Context) ([]store.ProviderUser, error)
}

var (
	_ backend = (*store.Store)(nil)
	_ backend = (*pgstore.Store)(nil)
)

func openSQLite(tb testing.TB, dir string) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

var dbCounter atomic.Int64

// openPG opens a store on a new database of srv.
func openPG(tb testing.TB, srv *pgtest.Server) *pgstore.Store {
	tb.Helper()
	s, _ := openPGNamed(tb, srv)
	return s
}

// openPGNamed is openPG, also returning the database's name.
func openPGNamed(tb testing.TB, srv *pgtest.Server) (*pgstore.Store, string) {
	tb.Helper()
	db := fmt.Sprintf("c%d", dbCounter.Add(1))
	dsn := srv.CreateDatabase(tb, db)
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{NodeName: "test", PollInterval: time.Hour})
	if err != nil {
		tb.Fatalf("open pg store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, db
}

// message returns a small message whose subject and body carry tag.
func message(tag string) []byte {
	return fmt.Appendf(nil, "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: msg %s\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <%s@example.org>\r\nContent-Type: text/plain\r\n\r\nthe body of %s\r\n", tag, tag, tag)
}

// must returns v, or panics on an error (a failure of a call the test
// only needs the result of: it fails the test with the stack).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fixture is what populate stored, for the tests to check the copy with.
type fixture struct {
	// delivered is the Delivered of ("pop-a", "u1", "d1").
	delivered store.Delivered
}

// populate fills s with several users, folders (a \Noselect placeholder
// among them), keywords, UIDs with expunged gaps, high modseqs, messages
// shared by two mailboxes, INTERNALDATEs with zone offsets, subscriptions
// (one of a name with no mailbox), ledger rows of every state, account
// statuses with anomaly counters and provider users.
func populate(t *testing.T, s *store.Store) fixture {
	t.Helper()
	ctx := context.Background()
	alice := must(s.EnsureUser(ctx, "alice"))
	bob := must(s.EnsureUser(ctx, "bob"))
	must(s.EnsureUser(ctx, "carol@example.net"))
	var ds []store.Delivery
	for i := 1; i <= 12; i++ {
		ds = append(ds, store.Delivery{Account: "pop-a", UIDL: fmt.Sprintf("u%d", i), Digest: fmt.Sprintf("d%d", i), User: "alice",
			Raw: message(fmt.Sprintf("a%d", i)), InternalDate: time.Date(2025, 5, i, 8, 30, 0, 123456789, time.FixedZone("", 2*3600))})
	}
	ds = append(ds, store.Delivery{Account: "pop-a", UIDL: "u13", Digest: "d13", User: "alice", Folder: "Work/Projects", Raw: message("a13")})
	got := must(s.Deliver(ctx, ds))
	fx := fixture{delivered: got[0]}
	inbox := must(s.MailboxByName(ctx, alice.ID, "INBOX"))
	// Gaps: UIDs 3, 4 and 7 expunged (the ledger keeps their rows, with
	// no message).
	must(s.UpdateFlags(ctx, alice.ID, inbox.ID, []store.UID{3, 4, 7}, store.FlagsAdd, []string{store.FlagDeleted}))
	must(s.Expunge(ctx, alice.ID, inbox.ID, nil))
	// High modseqs.
	for i := range 60 {
		op := store.FlagsAdd
		if i%2 == 1 {
			op = store.FlagsRemove
		}
		must(s.UpdateFlags(ctx, alice.ID, inbox.ID, []store.UID{1}, op, []string{store.FlagFlagged}))
	}
	must(s.UpdateFlags(ctx, alice.ID, inbox.ID, []store.UID{1, 2, 5}, store.FlagsAdd, []string{store.FlagSeen, "$Important", "ProjectX"}))
	must(s.UpdateFlags(ctx, alice.ID, inbox.ID, []store.UID{6}, store.FlagsAdd, []string{store.FlagAnswered, store.FlagDraft, "$label1"}))
	archive := must(s.MailboxByName(ctx, alice.ID, "Archive"))
	must(s.Copy(ctx, alice.ID, inbox.ID, []store.UID{1, 2}, archive.ID))
	projects := must(s.MailboxByName(ctx, alice.ID, "Work/Projects"))
	for i := range 5 {
		date := time.Date(2024, 3, 1+i, 10, 0, 0, 987654321, time.FixedZone("", 5*3600+1800))
		if _, _, err := s.Append(ctx, alice.ID, projects.ID, message(fmt.Sprintf("p%d", i)), []string{store.FlagSeen, "Kw" + fmt.Sprint(i)}, date); err != nil {
			t.Fatal(err)
		}
	}
	must(s.UpdateFlags(ctx, alice.ID, projects.ID, []store.UID{2, 3}, store.FlagsAdd, []string{store.FlagDeleted}))
	must(s.Expunge(ctx, alice.ID, projects.ID, []store.UID{3}))

	must(s.CreateMailbox(ctx, bob.ID, "Lists", ""))
	lists := must(s.CreateMailbox(ctx, bob.ID, "Lists/go", ""))
	if err := s.DeleteMailbox(ctx, bob.ID, "Lists"); err != nil { // a \Noselect placeholder now
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, bob.ID, "Lists/go", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, bob.ID, "Gone/Folder", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, bob.ID, "Junk", false); err != nil {
		t.Fatal(err)
	}
	must(s.Deliver(ctx, []store.Delivery{
		{Account: "pop-b", UIDL: "b1", Digest: "e1", User: "bob", Folder: "Lists/go", Raw: message("b1")},
		{Account: "pop-b", UIDL: "b2", Digest: "e2", User: "bob", Raw: message("b2")},
		{Account: "pop-b", UIDL: "", Digest: "e3", User: "bob", Raw: []byte("Subject: bare LF\nX: y\n\nbody\n")},
	}))
	if _, _, err := s.Append(ctx, bob.ID, lists.ID, message("b-appended"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}

	// Ledger rows of every state.
	if err := s.RecordSkipped(ctx, "pop-a", "big", "dbig", 80<<20, "too large"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeletePending(ctx, "pop-a", []string{"u5"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleted(ctx, "pop-a", []string{"u6"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkGone(ctx, "pop-a", []store.LedgerRef{{UIDL: "u8", Digest: "d8"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchLedger(ctx, "pop-a", []string{"u9", "u10"}, time.Date(2026, 1, 2, 3, 4, 5, 600700800, time.UTC)); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 2, 3, 4, 5, 6, 7008009, time.UTC)
	for _, st := range []store.AccountStatus{
		{Account: "pop-a", LastAttempt: at, LastSuccess: at.Add(-time.Hour), LastError: "-ERR mailbox locked", LastErrorAt: at,
			Fetched: 13, FetchedBytes: 4096, Skipped: 1, UpstreamCount: 9,
			Anomalies: store.IdentityAnomalies{UIDLReused: 1, Renumbered: 2, Twins: 3, Unproven: 4}},
		{Account: "pop-b", LastAttempt: at, LastSuccess: at, Fetched: 3},
	} {
		if err := s.SetAccountStatus(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []store.ProviderUser{
		{Name: "carol@example.net", Credential: []byte{0x01, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x42}, State: store.ProviderActive,
			Created: at.Add(-48 * time.Hour), LastLogin: at},
		{Name: "dan@example.net", State: store.ProviderNeedsLogin, Created: at.Add(-24 * time.Hour), StateChanged: at},
	} {
		if err := s.PutProviderUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// The highest user, mailbox and message ids issued belong to rows
	// deleted since: a copy must not issue them again either.
	must(s.EnsureUser(ctx, "zed"))
	if err := s.DeleteUser(ctx, "zed", nil); err != nil {
		t.Fatal(err)
	}
	must(s.CreateMailbox(ctx, bob.ID, "Tmp", ""))
	if err := s.DeleteMailbox(ctx, bob.ID, "Tmp"); err != nil {
		t.Fatal(err)
	}
	bobInbox := must(s.MailboxByName(ctx, bob.ID, "INBOX"))
	if _, _, err := s.Append(ctx, bob.ID, bobInbox.ID, message("gone"), []string{store.FlagDeleted}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	must(s.Expunge(ctx, bob.ID, bobInbox.ID, nil))
	return fx
}

// micro formats t to the microsecond with its zone offset.
func micro(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000-07:00")
}

// dump describes everything of s that a client or the poller can see, as
// text, through the stores' ordinary read methods (not the export).
func dump(t *testing.T, s backend, accounts ...string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	users := must(s.Users(ctx))
	for _, u := range users {
		fmt.Fprintf(&b, "user %d %q created %s\n", u.ID, u.Name, micro(u.Created.UTC()))
		fmt.Fprintf(&b, "  subscriptions %q\n", must(s.Subscriptions(ctx, u.ID)))
		mbs := must(s.Mailboxes(ctx, u.ID))
		slices.SortFunc(mbs, func(a, b store.Mailbox) int { return int(a.ID - b.ID) })
		for _, mb := range mbs {
			fmt.Fprintf(&b, "  mailbox %d %q uidvalidity %d uidnext %d highestmodseq %d special %q noselect %t subscribed %t\n",
				mb.ID, mb.Name, mb.UIDValidity, mb.UIDNext, mb.HighestModSeq, mb.SpecialUse, mb.NoSelect, mb.Subscribed)
			if mb.NoSelect {
				continue
			}
			snap := must(s.Snapshot(ctx, u.ID, mb.ID))
			var uids []store.UID
			for _, e := range snap.Entries {
				uids = append(uids, e.UID)
			}
			metas := must(s.Meta(ctx, u.ID, mb.ID, uids))
			for i, e := range snap.Entries {
				m := metas[i]
				body := must(s.Body(ctx, u.ID, mb.ID, e.UID))
				subject, typ := "", ""
				if m.Envelope != nil {
					subject = m.Envelope.Subject + " <" + m.Envelope.MessageID + ">"
				}
				if m.Structure != nil {
					typ = m.Structure.Type + "/" + m.Structure.Subtype
				}
				fmt.Fprintf(&b, "    uid %d message %d flags %q modseq %d date %s size %d sha256 %x %q %s\n",
					e.UID, e.Message, e.Flags, e.ModSeq, micro(m.InternalDate), m.Size, sha256.Sum256(body), subject, typ)
			}
		}
	}
	for _, a := range accounts {
		for _, l := range must(s.Ledger(ctx, a)) {
			fmt.Fprintf(&b, "ledger %q %q %q size %d stored %s message %d expunged %t skipped %q pending %t deleted %s seen %s\n",
				l.Account, l.UIDL, l.Digest, l.Size, micro(l.StoredAt.UTC()), l.Message, l.Expunged, l.Skipped, l.DeletePending,
				micro(l.DeletedAt.UTC()), micro(l.LastSeen.UTC()))
		}
	}
	for _, st := range must(s.AccountStatuses(ctx)) {
		fmt.Fprintf(&b, "status %q attempt %s success %s error %q at %s fetched %d bytes %d skipped %d upstream %d anomalies %+v\n",
			st.Account, micro(st.LastAttempt.UTC()), micro(st.LastSuccess.UTC()), st.LastError, micro(st.LastErrorAt.UTC()),
			st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount, st.Anomalies)
	}
	for _, p := range must(s.ProviderUsers(ctx)) {
		fmt.Fprintf(&b, "provider %q credential %x (nil %t) state %q created %s login %s changed %s\n",
			p.Name, p.Credential, p.Credential == nil, p.State, micro(p.Created.UTC()), micro(p.LastLogin.UTC()), micro(p.StateChanged.UTC()))
	}
	return b.String()
}

// diffLines returns the first lines where a and b differ.
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < max(len(al), len(bl)) && len(out) < 10; i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("line %d:\n  src: %s\n  dst: %s", i+1, x, y))
		}
	}
	return strings.Join(out, "\n")
}

// flipInPacks flips a byte in the middle of needle's first occurrence in
// the pack files of the SQLite store in dir, as a failing disk would.
func flipInPacks(tb testing.TB, dir, needle string) {
	tb.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, "blobs", "pack-*"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range packs {
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
