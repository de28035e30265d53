package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAppendSnapshotMetaBody(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	rec := record(t, s)
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	raw := []byte("Subject: =?utf-8?q?caf=C3=A9?=\nFrom: a@b.c\n\nline1\nline2\n")
	e, uidv, err := s.Append(ctx, u.ID, inbox.ID, raw, []string{`\seen`, "$Label1", `\Recent`, "$label1", "bad kw"}, date)
	if err != nil {
		t.Fatal(err)
	}
	if uidv != inbox.UIDValidity || e.UID != 1 {
		t.Errorf("Append = %+v, uidvalidity %d", e, uidv)
	}
	if want := []string{"$Label1", `\Seen`}; !slices.Equal(e.Flags, want) {
		t.Errorf("flags = %q, want %q", e.Flags, want)
	}
	body, err := s.Body(ctx, u.ID, inbox.ID, e.UID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b.c\r\n\r\nline1\r\nline2\r\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	meta, err := s.Meta(ctx, u.ID, inbox.ID, []UID{e.UID, 99})
	if err != nil || len(meta) != 1 {
		t.Fatalf("Meta = %+v, %v", meta, err)
	}
	m := meta[0]
	if m.Size != int64(len(body)) || !m.InternalDate.Equal(date) || m.Envelope.Subject != "café" || m.Structure.Lines != 2 {
		t.Errorf("meta = %+v env %+v st %+v", m, m.Envelope, m.Structure)
	}
	if _, off := m.InternalDate.Zone(); off != 2*3600 {
		t.Errorf("internal date zone offset %d, want 7200", off)
	}
	if got := string(body[m.Structure.BodyStart:m.Structure.End]); got != "line1\r\nline2\r\n" {
		t.Errorf("body section = %q", got)
	}
	snap, err := s.Snapshot(ctx, u.ID, inbox.ID)
	if err != nil || len(snap.Entries) != 1 || snap.Mailbox.UIDNext != 2 || snap.Entries[0].ModSeq != snap.Mailbox.HighestModSeq {
		t.Errorf("Snapshot = %+v, %v", snap, err)
	}
	chs := rec.take()
	if len(chs) != 1 || chs[0].Kind != ChangeAdd || chs[0].Mailbox != inbox.ID || chs[0].ModSeq != snap.Mailbox.HighestModSeq ||
		len(chs[0].Entries) != 1 || chs[0].Entries[0].UID != 1 {
		t.Errorf("changes = %+v", chs)
	}
	counts, err := s.Counts(ctx, u.ID, inbox.ID)
	if err != nil || counts != (MailboxCounts{Messages: 1, Unseen: 0, Deleted: 0, Size: int64(len(body))}) {
		t.Errorf("Counts = %+v, %v", counts, err)
	}
	if _, err := s.Body(ctx, u.ID, inbox.ID, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body(42) = %v", err)
	}
}

func TestUpdateFlags(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	for _, tag := range []string{"a", "b", "c"} {
		mustAppend(t, s, u.ID, inbox.ID, tag)
	}
	mustAppend(t, s, u.ID, inbox.ID, "d", `\Seen`)
	tests := []struct {
		name    string
		uids    []UID
		op      FlagOp
		flags   []string
		want    map[UID][]string
		changed []UID
	}{
		{"add seen", []UID{1, 2, 4}, FlagsAdd, []string{`\Seen`}, map[UID][]string{1: {`\Seen`}, 2: {`\Seen`}, 4: {`\Seen`}}, []UID{1, 2}},
		{"add keyword case-insensitive dedupe", []UID{1}, FlagsAdd, []string{"Work", "work", `\FLAGGED`}, map[UID][]string{1: {"Work", `\Flagged`, `\Seen`}}, []UID{1}},
		{"add same again", []UID{1}, FlagsAdd, []string{"WORK"}, map[UID][]string{1: {"Work", `\Flagged`, `\Seen`}}, nil},
		{"remove keyword other case", []UID{1}, FlagsRemove, []string{"wOrK"}, map[UID][]string{1: {`\Flagged`, `\Seen`}}, []UID{1}},
		{"replace", []UID{1, 3}, FlagsReplace, []string{`\Deleted`, `\Recent`}, map[UID][]string{1: {`\Deleted`}, 3: {`\Deleted`}}, []UID{1, 3}},
		{"absent uids skipped", []UID{3, 50}, FlagsRemove, []string{`\Deleted`}, map[UID][]string{3: {}}, []UID{3}},
		{"nil uids is none", nil, FlagsAdd, []string{`\Draft`}, map[UID][]string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := record(t, s)
			before, _ := s.MailboxByID(ctx, u.ID, inbox.ID)
			got, err := s.UpdateFlags(ctx, u.ID, inbox.ID, tt.uids, tt.op, tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %d", len(got), got, len(tt.want))
			}
			for _, e := range got {
				if w := tt.want[e.UID]; !slices.Equal(e.Flags, w) && (len(w) != 0 || len(e.Flags) != 0) {
					t.Errorf("uid %d flags %q, want %q", e.UID, e.Flags, w)
				}
			}
			after, _ := s.MailboxByID(ctx, u.ID, inbox.ID)
			chs := rec.take()
			if tt.changed == nil {
				if len(chs) != 0 || after.HighestModSeq != before.HighestModSeq {
					t.Errorf("unexpected change %+v (modseq %d -> %d)", chs, before.HighestModSeq, after.HighestModSeq)
				}
				return
			}
			if len(chs) != 1 || chs[0].Kind != ChangeFlags || !slices.Equal(uids(chs[0].Entries), tt.changed) ||
				chs[0].ModSeq != before.HighestModSeq+1 || after.HighestModSeq != chs[0].ModSeq {
				t.Fatalf("changes %+v, want flags of %v at modseq %d", chs, tt.changed, before.HighestModSeq+1)
			}
			for _, e := range chs[0].Entries {
				if e.ModSeq != chs[0].ModSeq {
					t.Errorf("entry modseq %d, change modseq %d", e.ModSeq, chs[0].ModSeq)
				}
			}
		})
	}
	if _, err := s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{1}, FlagOp(9), nil); err == nil {
		t.Error("unknown FlagOp accepted")
	}
}

func TestCopyMoveExpunge(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	arch := mustMailbox(t, s, u.ID, "Archive")
	for _, tag := range []string{"a", "b", "c", "d"} {
		mustAppend(t, s, u.ID, inbox.ID, tag, "$tag")
	}
	rec := record(t, s)
	cr, err := s.Copy(ctx, u.ID, inbox.ID, []UID{4, 2, 9}, arch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cr.UIDValidity != arch.UIDValidity || !slices.Equal(cr.Source, []UID{2, 4}) || !slices.Equal(cr.Dest, []UID{1, 2}) {
		t.Errorf("Copy = %+v", cr)
	}
	snapA, _ := s.Snapshot(ctx, u.ID, arch.ID)
	snapI, _ := s.Snapshot(ctx, u.ID, inbox.ID)
	if len(snapA.Entries) != 2 || snapA.Entries[0].Message != snapI.Entries[1].Message || !slices.Equal(snapA.Entries[0].Flags, []string{"$tag"}) {
		t.Errorf("archive after copy = %+v", snapA.Entries)
	}
	if chs := rec.take(); len(chs) != 1 || chs[0].Kind != ChangeAdd || chs[0].Mailbox != arch.ID {
		t.Errorf("copy changes = %+v", chs)
	}
	// Copy into the same mailbox.
	cr, err = s.Copy(ctx, u.ID, inbox.ID, []UID{1}, inbox.ID)
	if err != nil || !slices.Equal(cr.Dest, []UID{5}) {
		t.Errorf("self copy = %+v, %v", cr, err)
	}
	rec.take()
	// Move.
	cr, err = s.Move(ctx, u.ID, inbox.ID, []UID{1, 3}, arch.ID)
	if err != nil || !slices.Equal(cr.Source, []UID{1, 3}) || !slices.Equal(cr.Dest, []UID{3, 4}) {
		t.Fatalf("Move = %+v, %v", cr, err)
	}
	chs := rec.take()
	if len(chs) != 2 || chs[0].Kind != ChangeAdd || chs[0].Mailbox != arch.ID || chs[1].Kind != ChangeExpunge ||
		chs[1].Mailbox != inbox.ID || !slices.Equal(chs[1].UIDs, []UID{1, 3}) {
		t.Errorf("move changes = %+v", chs)
	}
	snapI, _ = s.Snapshot(ctx, u.ID, inbox.ID)
	if got := uids(snapI.Entries); !slices.Equal(got, []UID{2, 4, 5}) {
		t.Errorf("inbox after move = %v", got)
	}
	// Expunge only removes \Deleted entries among the given UIDs.
	if _, err := s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{2, 4, 5}, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Expunge(ctx, u.ID, inbox.ID, []UID{2, 5, 77})
	if err != nil || !slices.Equal(got, []UID{2, 5}) {
		t.Errorf("Expunge = %v, %v", got, err)
	}
	got, err = s.Expunge(ctx, u.ID, inbox.ID, nil)
	if err != nil || !slices.Equal(got, []UID{4}) {
		t.Errorf("Expunge(nil) = %v, %v", got, err)
	}
	got, err = s.Expunge(ctx, u.ID, inbox.ID, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Expunge of nothing = %v, %v", got, err)
	}
	// A message still referenced from Archive survives; orphans are gone.
	snapA, _ = s.Snapshot(ctx, u.ID, arch.ID)
	for _, e := range snapA.Entries {
		if _, err := s.Body(ctx, u.ID, arch.ID, e.UID); err != nil {
			t.Errorf("archive uid %d body: %v", e.UID, err)
		}
	}
	var nmsg int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM messages`).Scan(&nmsg); err != nil || nmsg != 4 {
		t.Errorf("messages rows = %d, %v; want 4 (a..d referenced by Archive)", nmsg, err)
	}
	// UIDs are not reused after expunge.
	e := mustAppend(t, s, u.ID, inbox.ID, "new")
	if e.UID != 6 {
		t.Errorf("UID after expunge = %d, want 6", e.UID)
	}
}

func TestSearchText(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	msgs := []string{
		"From: Zoë <zoe@example.org>\r\nSubject: =?iso-8859-1?q?R=E9union?=\r\n\r\nHello World\r\n",
		"From: bob@example.org\r\nSubject: plain\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 cr=E8me\r\n",
		"From: carol@example.org\r\nSubject: html\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+Qm9sZDwvYj4gdGV4dA==\r\n--x--\r\n",
	}
	for _, m := range msgs {
		if _, _, err := s.Append(ctx, u.ID, inbox.ID, []byte(m), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		q    TextQuery
		uids []UID
		want []UID
	}{
		{"subject decoded", TextQuery{Kind: TextHeader, Header: "subject", Needle: "RÉUNION"}, nil, []UID{1}},
		{"from header", TextQuery{Kind: TextHeader, Header: "From", Needle: "example.org"}, nil, []UID{1, 2, 3}},
		{"header needle not in that field", TextQuery{Kind: TextHeader, Header: "subject", Needle: "zoe"}, nil, nil},
		{"empty needle matches field presence", TextQuery{Kind: TextHeader, Header: "content-type", Needle: ""}, nil, []UID{2, 3}},
		{"any header", TextQuery{Kind: TextHeader, Needle: "zoë"}, nil, []UID{1}},
		{"body plain", TextQuery{Kind: TextBody, Needle: "hello world"}, nil, []UID{1}},
		{"body qp latin1", TextQuery{Kind: TextBody, Needle: "CRÈME"}, nil, []UID{2}},
		{"body base64 html stripped", TextQuery{Kind: TextBody, Needle: "bold text"}, nil, []UID{3}},
		{"body not header", TextQuery{Kind: TextBody, Needle: "plain"}, nil, nil},
		{"text all", TextQuery{Kind: TextAll, Needle: "o"}, nil, []UID{1, 2, 3}},
		{"restricted uids", TextQuery{Kind: TextAll, Needle: "example"}, []UID{2, 3, 9}, []UID{2, 3}},
		{"empty uid set", TextQuery{Kind: TextAll, Needle: "example"}, []UID{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.SearchText(ctx, u.ID, inbox.ID, tt.q, tt.uids)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("SearchText = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNoSelectRefusesMessageOps(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	if _, err := s.CreateMailbox(ctx, u.ID, "a/b", ""); err != nil {
		t.Fatal(err)
	}
	a := mustMailbox(t, s, u.ID, "a")
	if !a.NoSelect {
		t.Fatalf("implicit parent %+v not NoSelect", a)
	}
	if _, _, err := s.Append(ctx, u.ID, a.ID, testMessage("x"), nil, time.Time{}); !errors.Is(err, ErrNoSelect) {
		t.Errorf("Append to placeholder = %v", err)
	}
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	mustAppend(t, s, u.ID, inbox.ID, "x")
	if _, err := s.Copy(ctx, u.ID, inbox.ID, []UID{1}, a.ID); !errors.Is(err, ErrNoSelect) {
		t.Errorf("Copy to placeholder = %v", err)
	}
	if _, err := s.UpdateFlags(ctx, u.ID, a.ID, []UID{1}, FlagsAdd, []string{FlagSeen}); !errors.Is(err, ErrNoSelect) {
		t.Errorf("UpdateFlags on placeholder = %v", err)
	}
	if !strings.Contains(ErrNoSelect.Error(), "store:") {
		t.Error("sentinel lacks package prefix")
	}
}
