package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// TestDeletedMessagesLoseTheirBytes: a message deleted after its last
// entry was expunged takes its chunk rows with it (migration 0006's
// trigger, where a foreign key's ON DELETE CASCADE did it), in a DELETE of
// several messages at once; the other messages keep theirs, and Verify
// finds nothing wrong afterwards; a chunk row without its message, which
// no key rules out now, Verify reports.
func TestDeletedMessagesLoseTheirBytes(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	e := newEnv(t, srv)
	ctx := context.Background()
	s := e.openWith(t, Options{NodeName: "a", PollInterval: time.Hour, DisableIndexer: true})
	u := mustUser(t, s, "bob").ID
	var ds []store.Delivery
	for i := range 4 {
		ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: "d", User: "bob", Raw: rawOfSize(3*messageChunkSize+1+i, uint64(i))})
	}
	dl, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	chunksOf := func(m store.MessageID) string {
		return e.srv.Psql(t, e.db, fmt.Sprintf("SELECT count(*) FROM message_data WHERE message_id = %d", m))
	}
	for _, d := range dl {
		if n := chunksOf(d.Message); n != "4" {
			t.Fatalf("message %d stored in %s chunks, want 4", d.Message, n)
		}
	}
	inbox := mustMailbox(t, s, u, store.Inbox)
	gone := []store.UID{dl[0].UID, dl[2].UID, dl[3].UID}
	if _, err := s.UpdateFlags(ctx, u, inbox.ID, gone, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2, 3} {
		if n := chunksOf(dl[i].Message); n != "0" {
			t.Errorf("expunged message %d keeps %s chunks", dl[i].Message, n)
		}
	}
	if n := chunksOf(dl[1].Message); n != "4" {
		t.Errorf("kept message %d has %s chunks, want 4", dl[1].Message, n)
	}
	if n := e.srv.Psql(t, e.db, "SELECT count(*) FROM message_data d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.message_id)"); n != "0" {
		t.Errorf("%s chunk rows without their message", n)
	}
	if rep, err := s.Verify(ctx, nil); err != nil || !rep.OK() {
		t.Errorf("verify: %+v, %v", rep, err)
	}
	// No key stops a chunk row for no message any more: Verify names it.
	e.srv.Psql(t, e.db, fmt.Sprintf("INSERT INTO message_data (message_id, seq, data) VALUES (%d, 0, 'stray')", dl[3].Message+1000))
	rep, err := s.Verify(ctx, nil)
	if err != nil || rep.OK() || len(rep.Integrity) != 1 || rep.Integrity[0] != "1 chunk rows without their message" {
		t.Errorf("verify with a stray chunk row: %+v, %v", rep, err)
	}
}
