package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// chunkSizes are message sizes around the chunk boundaries.
var chunkSizes = []int{0, 1, messageChunkSize - 1, messageChunkSize, messageChunkSize + 1,
	2 * messageChunkSize, 2*messageChunkSize + 1, 100_003}

// rawOfSize returns n bytes that normalisation leaves alone (no bare LF):
// random bytes but for '\n', with a CRLF every 70 bytes, different for
// every seed.
func rawOfSize(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		switch {
		case i%72 == 70:
			b[i] = '\r'
		case i%72 == 71:
			b[i] = '\n'
		default:
			c := byte(r.IntN(256))
			if c == '\n' || c == '\r' {
				c = 'x'
			}
			b[i] = c
		}
	}
	return b
}

// TestChunks stores messages of sizes around the chunk boundaries by
// delivery and by APPEND and reads them back byte-exact through every
// reader (Body, Bodies, RawBytes, ExportMessages, the indexer's parse);
// Verify then finds a missing chunk and a shortened one.
func TestChunks(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	e := newEnv(t, srv)
	ctx := context.Background()
	s := e.openWith(t, Options{NodeName: "a", PollInterval: time.Hour, DisableIndexer: true})
	u := mustUser(t, s, "bob").ID
	want := map[store.UID][]byte{}
	var ds []store.Delivery
	for i, n := range chunkSizes {
		ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: "d", User: "bob", Raw: rawOfSize(n, uint64(i))})
	}
	dl, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	msgOf := map[store.UID]store.MessageID{}
	for i, d := range dl {
		want[d.UID], msgOf[d.UID] = ds[i].Raw, d.Message
	}
	// A batch of 12 MB goes through one COPY stream in 64 KB pieces,
	// rows and their headers cut across them: each message must still get
	// its own bytes and ledger row.
	var big []store.Delivery
	for i := range 12 {
		big = append(big, store.Delivery{Account: "acct", UIDL: fmt.Sprint("big", i), Digest: "d", User: "bob", Raw: rawOfSize(1<<20+i, uint64(50+i))})
	}
	bdl, err := s.Deliver(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range bdl {
		want[d.UID], msgOf[d.UID] = big[i].Raw, d.Message
	}
	if led, err := s.Ledger(ctx, "acct"); err != nil || len(led) != len(ds)+len(big) {
		t.Fatalf("ledger: %d rows, %v", len(led), err)
	}
	inbox := mustMailbox(t, s, u, store.Inbox)
	for i, n := range chunkSizes {
		raw := rawOfSize(n, uint64(100+i))
		ent := mustAppend(t, s, u, inbox.ID, raw)
		want[ent.UID], msgOf[ent.UID] = raw, ent.Message
	}
	check := func(what string, uid store.UID, got []byte) {
		t.Helper()
		if !bytes.Equal(got, want[uid]) {
			t.Errorf("%s of UID %d (%d bytes): got %d bytes, differing", what, uid, len(want[uid]), len(got))
		}
	}
	for uid := range want {
		body, err := s.Body(ctx, u, inbox.ID, uid)
		if err != nil {
			t.Fatalf("body %d: %v", uid, err)
		}
		check("Body", uid, body)
		raw, err := s.RawBytes(ctx, msgOf[uid])
		if err != nil {
			t.Fatalf("raw bytes %d: %v", uid, err)
		}
		check("RawBytes", uid, raw)
	}
	var seen []store.UID
	all := make([]store.UID, 0, len(want))
	for uid := range want {
		all = append(all, uid, uid) // duplicates visited once
	}
	// Twice: the second call reads into the buffers the first one used
	// (the store keeps them, bodybuf.go), holding other messages' bytes.
	for pass := range 2 {
		seen = seen[:0]
		err = s.Bodies(ctx, u, inbox.ID, append(all, 999), func(uid store.UID, raw []byte, damaged error) error {
			seen = append(seen, uid)
			check(fmt.Sprint("Bodies, call ", pass+1), uid, raw)
			return nil
		})
		if err != nil || len(seen) != len(want) || !slices.IsSorted(seen) {
			t.Errorf("Bodies call %d visited %v, %v", pass+1, seen, err)
		}
		if s.bufs.bytes == 0 {
			t.Errorf("Bodies call %d kept no buffer for the next call", pass+1)
		}
	}
	byMsg := map[store.MessageID]store.UID{}
	for uid, m := range msgOf {
		byMsg[m] = uid
	}
	exported := 0
	err = s.ExportMessages(ctx, func(m store.ExportedMessage) error {
		exported++
		if m.Err != nil || m.Size != int64(len(want[byMsg[m.ID]])) {
			t.Errorf("export of message %d: size %d, %v", m.ID, m.Size, m.Err)
		}
		check("ExportMessages", byMsg[m.ID], m.Raw)
		return nil
	})
	if err != nil || exported != len(want) {
		t.Errorf("exported %d, %v", exported, err)
	}
	if n, err := s.indexPending(ctx); n != len(chunkSizes)+len(big) || err != nil {
		t.Errorf("indexed %d, %v", n, err)
	}
	if rep, err := s.Verify(ctx, nil); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	// A chunk lost in the middle of a message, and one cut short.
	lost, cut := dl[6], dl[3] // 2*chunk+1 bytes (3 chunks), exactly one chunk
	e.srv.Psql(t, e.db, fmt.Sprintf(`DELETE FROM message_data WHERE message_id = %d AND seq = 1;
		UPDATE message_data SET data = substring(data FROM 2) WHERE message_id = %d`, lost.Message, cut.Message))
	rep, err := s.Verify(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var damaged []store.MessageID
	for _, d := range rep.Damaged {
		damaged = append(damaged, d.Message)
		if !d.Bytes {
			t.Errorf("damage of message %d not in its bytes: %v", d.Message, d.Err)
		}
	}
	slices.Sort(damaged)
	if !slices.Equal(damaged, []store.MessageID{cut.Message, lost.Message}) {
		t.Errorf("damaged %v, want %v and %v: %+v", damaged, cut.Message, lost.Message, rep)
	}
}
