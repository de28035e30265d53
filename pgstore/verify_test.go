package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// testVerifyRepair damages rows by hand, as a broken disk or a bad manual
// edit would, and checks that Verify names them and that the repair
// methods (RawBytes, ReplaceMessage, Quarantine) put things right.
func testVerifyRepair(t *testing.T, e *env) {
	ctx := context.Background()
	// No background indexer: the store is verified before and after
	// indexing.
	s := e.openWith(t, Options{NodeName: "a", PollInterval: time.Hour, DisableIndexer: true})
	u := mustUser(t, s, "bob").ID
	var ds []store.Delivery
	for i := range 4 {
		ds = append(ds, delivery("acct", fmt.Sprint(i), "bob", "", fmt.Sprint("subject ", i)))
	}
	dl, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, u, store.Inbox)
	if _, err := s.UpdateFlags(ctx, u, inbox.ID, []store.UID{1}, store.FlagsAdd, []string{store.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	var progress []int
	rep, err := s.Verify(ctx, func(n int) { progress = append(progress, n) })
	if err != nil || !rep.OK() || rep.Messages != 4 || !slices.Equal(progress, []int{4}) {
		t.Fatalf("healthy store, not indexed: %+v, %v, progress %v", rep, err, progress)
	}
	if n, err := s.indexPending(ctx); n != 4 || err != nil {
		t.Fatalf("indexed %d, %v; want 4", n, err)
	}
	if rep, err = s.Verify(ctx, nil); err != nil || !rep.OK() || rep.Messages != 4 {
		t.Fatalf("healthy store, indexed: %+v, %v", rep, err)
	}

	// Message 1: texts lost. Message 2: bytes truncated. Message 3:
	// metadata undecodable.
	m1, m2, m3 := dl[0].Message, dl[1].Message, dl[2].Message
	e.srv.Psql(t, e.db, fmt.Sprintf(`DELETE FROM message_text WHERE message_id = %d;
		UPDATE message_data SET data = 'cut' WHERE message_id = %d;
		UPDATE messages SET envelope = '\x01ff' WHERE id = %d`, m1, m2, m3))
	rep, err = s.Verify(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Damaged) != 3 || len(rep.Integrity) != 1 {
		t.Fatalf("damaged store: %+v", rep)
	}
	byID := map[store.MessageID]store.DamagedMessage{}
	for _, d := range rep.Damaged {
		byID[d.Message] = d
		if !errors.Is(d.Err, store.ErrCorrupt) || len(d.Entries) != 1 || len(d.Origins) != 1 || d.Origins[0].Account != "acct" {
			t.Errorf("damaged %d: %+v", d.Message, d)
		}
	}
	if byID[m1].Bytes || !byID[m2].Bytes || byID[m3].Bytes || byID[m2].Subject != "subject 1" {
		t.Errorf("bytes damaged: m1 %v, m2 %v, m3 %v (subject %q)", byID[m1].Bytes, byID[m2].Bytes, byID[m3].Bytes, byID[m2].Subject)
	}
	if _, err := s.RawBytes(ctx, m2); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("raw bytes of the truncated message: err = %v", err)
	}
	if _, err := s.RawBytes(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("raw bytes of no message: err = %v", err)
	}

	// Repair as popbridge verify -repair does.
	for _, id := range []store.MessageID{m1, m3} {
		raw, err := s.RawBytes(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceMessage(ctx, id, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ReplaceMessage(ctx, m2, store.DamageNotice(byID[m2], "test")); err != nil {
		t.Fatal(err)
	}
	uid, err := s.Quarantine(ctx, u, inbox.ID, byID[m2].Entries[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceMessage(ctx, m2, []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replacing a replaced message: err = %v", err)
	}
	rep, err = s.Verify(ctx, nil)
	if err != nil || !rep.OK() || rep.Messages != 4 {
		t.Errorf("after repair: %+v, %v", rep, err)
	}
	snap, _ := s.Snapshot(ctx, u, inbox.ID)
	if !slices.Equal(uidsOf(snap.Entries), []store.UID{1, 3, 4}) || !slices.Contains(snap.Entries[0].Flags, store.FlagFlagged) {
		t.Errorf("INBOX after repair %+v", snap.Entries)
	}
	if body, _ := s.Body(ctx, u, inbox.ID, 1); !bytes.Contains(body, []byte("body of subject 0")) {
		t.Errorf("repaired message 1 body %q", body)
	}
	if hits, _ := s.SearchText(ctx, u, inbox.ID, store.TextQuery{Kind: store.TextBody, Needle: "body of subject 0"}, nil); !slices.Equal(hits, []store.UID{1}) {
		t.Errorf("search after rebuilding texts: %v", hits)
	}
	dmb := mustMailbox(t, s, u, store.DamagedMailbox)
	if m, err := s.Meta(ctx, u, dmb.ID, []store.UID{uid}); err != nil || len(m) != 1 || m[0].Envelope.Subject != "[damaged] subject 1" {
		t.Errorf("quarantined notice: %+v, %v", m, err)
	}
	led, _ := s.Ledger(ctx, "acct")
	for _, r := range led {
		if r.Message == 0 || r.Expunged {
			t.Errorf("ledger row lost its message: %+v", r)
		}
	}
	if got := e.srv.Psql(t, e.db, "SELECT count(*) FROM messages"); got != "4" {
		t.Errorf("%s messages, want 4", got)
	}
}

// testDamageStats has the server report damaged data (as a page failing
// its checksum does) during a read: counted, and the read fails.
func testDamageStats(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	if d := s.DamageStats(); d.Messages != 0 {
		t.Fatalf("fresh store: %+v", d)
	}
	err := s.read(ctx, "test read", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DO $$BEGIN RAISE EXCEPTION 'invalid page in block 7' USING ERRCODE = 'data_corrupted'; END$$`)
		return err
	})
	if !isDataCorrupt(err) || !strings.Contains(err.Error(), "test read") {
		t.Errorf("read: err = %v", err)
	}
	if d := s.DamageStats(); d.Messages != 1 {
		t.Errorf("after a damaged read: %+v", d)
	}
}
