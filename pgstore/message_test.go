package pgstore

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func testMessages(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	u := mustUser(t, s, "bob").ID
	eve := mustUser(t, s, "eve").ID
	inbox := mustMailbox(t, s, u, store.Inbox)

	date := time.Date(2024, 3, 1, 12, 30, 15, 123456000, time.FixedZone("", -5*3600))
	raw := []byte("Subject: hello\nFrom: a@b.c\n\nline1\nline2\n")
	ent, uidv, err := s.Append(ctx, u, inbox.ID, raw, []string{`\seen`, "Work", "work", `\Recent`, "bad(kw"}, date)
	if err != nil {
		t.Fatal(err)
	}
	if ent.UID != 1 || uidv != inbox.UIDValidity || !slices.Equal(ent.Flags, []string{"Work", `\Seen`}) || ent.ModSeq <= inbox.HighestModSeq {
		t.Errorf("append = %+v, uidvalidity %d", ent, uidv)
	}
	body, err := s.Body(ctx, u, inbox.ID, ent.UID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("Subject: hello\r\nFrom: a@b.c\r\n\r\nline1\r\nline2\r\n"); !bytes.Equal(body, want) {
		t.Errorf("body %q, want %q", body, want)
	}
	if _, err := s.Body(ctx, u, inbox.ID, 99); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing uid: err = %v", err)
	}
	if _, err := s.Body(ctx, eve, inbox.ID, ent.UID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another user's body: err = %v, want ErrNotFound", err)
	}
	metas, err := s.Meta(ctx, u, inbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 1 || metas[0].Envelope.Subject != "hello" || metas[0].Size != int64(len(body)) ||
		!metas[0].InternalDate.Equal(date) || metas[0].InternalDate.Format(time.RFC3339) != date.Format(time.RFC3339) {
		t.Errorf("meta %+v (date %v, want %v)", metas, metas[0].InternalDate, date)
	}
	// A node without a metadata cache reads the same.
	nocache, err := Open(ctx, e.dsn, Options{NodeName: "b", MetaCacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer nocache.Close()
	if m2, err := nocache.Meta(ctx, u, inbox.ID, []store.UID{ent.UID}); err != nil || !reflect.DeepEqual(m2, metas) {
		t.Errorf("meta without cache %+v, %v; with %+v", m2, err, metas)
	}
	if metas[0].Structure == nil || metas[0].Structure.Type != "text" || metas[0].Structure.Lines != 2 {
		t.Errorf("structure %+v", metas[0].Structure)
	}

	for i := range 4 {
		mustAppend(t, s, u, inbox.ID, msg("m", string(rune('a'+i))))
	}
	c, err := s.Counts(ctx, u, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Messages != 5 || c.Unseen != 4 || c.Deleted != 0 || c.Size <= int64(len(body)) {
		t.Errorf("counts %+v", c)
	}

	// Flags: only changed entries get the new modseq.
	before, _ := s.MailboxByID(ctx, u, inbox.ID)
	got, err := s.UpdateFlags(ctx, u, inbox.ID, []store.UID{1, 2, 3, 77}, store.FlagsAdd, []string{store.FlagSeen})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ModSeq != ent.ModSeq || got[1].ModSeq != before.HighestModSeq+1 || !slices.Contains(got[2].Flags, store.FlagSeen) {
		t.Errorf("UpdateFlags add = %+v (highest before %d)", got, before.HighestModSeq)
	}
	if got, _ = s.UpdateFlags(ctx, u, inbox.ID, []store.UID{1}, store.FlagsRemove, []string{"WORK"}); !slices.Equal(got[0].Flags, []string{store.FlagSeen}) {
		t.Errorf("remove keyword case-insensitively: %+v", got)
	}
	if got, _ = s.UpdateFlags(ctx, u, inbox.ID, []store.UID{2, 3}, store.FlagsReplace, []string{store.FlagDeleted}); !slices.Equal(got[1].Flags, []string{store.FlagDeleted}) {
		t.Errorf("replace: %+v", got)
	}
	if got, _ = s.UpdateFlags(ctx, u, inbox.ID, nil, store.FlagsAdd, []string{store.FlagFlagged}); len(got) != 0 {
		t.Errorf("nil uids touched %+v", got)
	}
	if _, err := s.UpdateFlags(ctx, eve, inbox.ID, []store.UID{1}, store.FlagsAdd, []string{store.FlagFlagged}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another user's flags: err = %v", err)
	}

	// Expunge takes only \Deleted entries.
	exp, err := s.Expunge(ctx, u, inbox.ID, []store.UID{1, 2})
	if err != nil || !slices.Equal(exp, []store.UID{2}) {
		t.Errorf("expunge 1,2 = %v, %v; want [2]", exp, err)
	}
	exp, err = s.Expunge(ctx, u, inbox.ID, nil)
	if err != nil || !slices.Equal(exp, []store.UID{3}) {
		t.Errorf("expunge all = %v, %v; want [3]", exp, err)
	}
	snap, err := s.Snapshot(ctx, u, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uidsOf(snap.Entries), []store.UID{1, 4, 5}) || snap.Mailbox.UIDNext != 6 {
		t.Errorf("snapshot after expunge: uids %v, uidnext %d", uidsOf(snap.Entries), snap.Mailbox.UIDNext)
	}
	for _, en := range snap.Entries {
		if en.ModSeq > snap.Mailbox.HighestModSeq {
			t.Errorf("entry modseq %d above HIGHESTMODSEQ %d", en.ModSeq, snap.Mailbox.HighestModSeq)
		}
	}

	// Copy shares the message; Move expunges the source.
	arch := mustMailbox(t, s, u, "Archive")
	cr, err := s.Copy(ctx, u, inbox.ID, []store.UID{1, 5, 42}, arch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cr.UIDValidity != arch.UIDValidity || !slices.Equal(cr.Source, []store.UID{1, 5}) || !slices.Equal(cr.Dest, []store.UID{1, 2}) {
		t.Errorf("copy result %+v", cr)
	}
	asnap, _ := s.Snapshot(ctx, u, arch.ID)
	if asnap.Entries[0].Message != snap.Entries[0].Message || !slices.Equal(asnap.Entries[0].Flags, snap.Entries[0].Flags) {
		t.Errorf("copy does not share message and flags: %+v vs %+v", asnap.Entries[0], snap.Entries[0])
	}
	mr, err := s.Move(ctx, u, inbox.ID, []store.UID{4}, arch.ID)
	if err != nil || !slices.Equal(mr.Dest, []store.UID{3}) {
		t.Errorf("move = %+v, %v", mr, err)
	}
	snap, _ = s.Snapshot(ctx, u, inbox.ID)
	if !slices.Equal(uidsOf(snap.Entries), []store.UID{1, 5}) {
		t.Errorf("inbox after move: %v", uidsOf(snap.Entries))
	}
	if _, err := s.Copy(ctx, u, inbox.ID, []store.UID{1}, mustMailbox(t, s, eve, "Trash").ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("copy into another user's mailbox: err = %v", err)
	}

	// Bodies visits present UIDs once, ascending, and stops on fn's error.
	var seen []store.UID
	err = s.Bodies(ctx, u, arch.ID, []store.UID{3, 1, 1, 9, 2}, func(uid store.UID, raw []byte, damaged error) error {
		if damaged != nil || len(raw) == 0 {
			t.Errorf("uid %d: raw %d bytes, damaged %v", uid, len(raw), damaged)
		}
		seen = append(seen, uid)
		return nil
	})
	if err != nil || !slices.Equal(seen, []store.UID{1, 2, 3}) {
		t.Errorf("Bodies visited %v, err %v", seen, err)
	}
	stop := errors.New("stop")
	if err := s.Bodies(ctx, u, arch.ID, []store.UID{1, 2}, func(store.UID, []byte, error) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Bodies did not return fn's error: %v", err)
	}

	// Expunging the last entry of a message deletes the message.
	if _, err := s.UpdateFlags(ctx, u, arch.ID, []store.UID{3}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u, arch.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages"); n != "2" {
		t.Errorf("messages left = %s, want 2 (INBOX 1 and 5, shared with Archive 1 and 2; the moved one gone)", n)
	}
}

// testMoveWithinMailbox checks the order of the changes of a MOVE into
// the same mailbox: EXPUNGE first, modseqs ascending.
func testMoveWithinMailbox(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	u := mustUser(t, s, "bob").ID
	inbox := mustMailbox(t, s, u, store.Inbox)
	mustAppend(t, s, u, inbox.ID, msg("a", "a"))
	rec, cancel := record(s)
	defer cancel()
	if _, err := s.Move(ctx, u, inbox.ID, []store.UID{1}, inbox.ID); err != nil {
		t.Fatal(err)
	}
	// The subscriber may also get the changes committed just before it
	// subscribed (delivery is asynchronous): the MOVE's are the last two.
	cs := rec.waitFor(t, feedTimeout, "the MOVE's changes", func(cs []store.Change) bool {
		return len(cs) >= 2 && cs[len(cs)-1].ModSeq > 2 && cs[len(cs)-2].ModSeq > 2
	})
	cs = cs[len(cs)-2:]
	if cs[0].Kind != store.ChangeExpunge || cs[1].Kind != store.ChangeAdd || cs[0].ModSeq >= cs[1].ModSeq {
		t.Errorf("changes %+v", cs)
	}
}

// testParity stores the same messages in the SQLite store and in this one
// and compares what FETCH and SEARCH read from both.
func testParity(t *testing.T, e *env) {
	ctx := context.Background()
	pg := e.open(t, "a")
	lite, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	msgs := [][]byte{
		msg("Plain Hello", "The quick brown fox"),
		[]byte("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nFrom: =?ISO-8859-1?Q?J=F6rg?= <j@x.de>\r\nTo: a@b.c, \"Team\" <team@x.org>\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\nTWVldGluZyAgYXQKICBub29u\r\n--XX\r\nContent-Type: text/html\r\n\r\n<p>Hidden <b>Treasure</b></p>\r\n--XX--\r\n"),
		[]byte("Subject: qp\r\nX-Custom: Needle In Header\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSoft=\r\nbreak and caf=C3=A9\r\n"),
		[]byte("no header at all, NUL \x00 and bare \r CR\n"),
	}
	type side struct {
		u  store.UserID
		mb store.MailboxID
	}
	var ps, ls side
	pu := mustUser(t, pg, "bob")
	lu, err := lite.EnsureUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	ps.u, ls.u = pu.ID, lu.ID
	ps.mb = mustMailbox(t, pg, pu.ID, store.Inbox).ID
	lmb, _ := lite.MailboxByName(ctx, lu.ID, store.Inbox)
	ls.mb = lmb.ID
	date := time.Date(2023, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	for _, m := range msgs {
		if _, _, err := pg.Append(ctx, ps.u, ps.mb, m, nil, date); err != nil {
			t.Fatal(err)
		}
		if _, _, err := lite.Append(ctx, ls.u, ls.mb, m, nil, date); err != nil {
			t.Fatal(err)
		}
	}
	pm, err := pg.Meta(ctx, ps.u, ps.mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := lite.Meta(ctx, ls.u, ls.mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range lm {
		if !reflect.DeepEqual(pm[i].Envelope, lm[i].Envelope) || !reflect.DeepEqual(pm[i].Structure, lm[i].Structure) || pm[i].Size != lm[i].Size {
			t.Errorf("message %d: meta differs:\npg   %+v %+v\nlite %+v %+v", i, pm[i].Envelope, pm[i].Structure, lm[i].Envelope, lm[i].Structure)
		}
		if !pm[i].InternalDate.Equal(lm[i].InternalDate) || pm[i].InternalDate.String() != lm[i].InternalDate.String() {
			t.Errorf("message %d: internal date %v, sqlite %v", i, pm[i].InternalDate, lm[i].InternalDate)
		}
		pb, _ := pg.Body(ctx, ps.u, ps.mb, pm[i].UID)
		lb, _ := lite.Body(ctx, ls.u, ls.mb, lm[i].UID)
		if !bytes.Equal(pb, lb) {
			t.Errorf("message %d: body differs", i)
		}
	}
	queries := []store.TextQuery{
		{Kind: store.TextAll, Needle: "hello"},
		{Kind: store.TextAll, Needle: "QUICK   brown"},
		{Kind: store.TextBody, Needle: "meeting at noon"},
		{Kind: store.TextBody, Needle: "treasure"},
		{Kind: store.TextBody, Needle: "hidden treasure"},
		{Kind: store.TextHeader, Header: "subject", Needle: "grüße"},
		{Kind: store.TextHeader, Header: "From", Needle: "jörg"},
		{Kind: store.TextHeader, Header: "x-custom", Needle: ""},
		{Kind: store.TextHeader, Header: "x-custom", Needle: "needle in"},
		{Kind: store.TextHeader, Needle: "needle"},
		{Kind: store.TextBody, Needle: "softbreak"},
		{Kind: store.TextBody, Needle: "café"},
		{Kind: store.TextAll, Needle: "bare"},
		{Kind: store.TextAll, Needle: "nowhere"},
		{Kind: store.TextAll, Needle: ""},
	}
	matched := 0
	for _, q := range queries {
		pr, err := pg.SearchText(ctx, ps.u, ps.mb, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		lr, err := lite.SearchText(ctx, ls.u, ls.mb, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pr, lr) {
			t.Errorf("search %+v: pgstore %v, sqlite %v", q, pr, lr)
		}
		matched += len(pr)
		if sub, _ := pg.SearchText(ctx, ps.u, ps.mb, q, []store.UID{2}); len(sub) > 1 || (len(sub) == 1 && sub[0] != 2) {
			t.Errorf("search %+v restricted to uid 2: %v", q, sub)
		}
	}
	if matched < len(queries) {
		t.Errorf("only %d matches over %d queries: the parity check checks little", matched, len(queries))
	}
	if _, err := pg.SearchText(ctx, ps.u, ps.mb, store.TextQuery{Kind: 99}, nil); err == nil {
		t.Errorf("unknown text kind accepted")
	}
}
