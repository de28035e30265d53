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

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// TestBodiesBatches checks Bodies over more messages than one query asks
// for (bodiesBatch): every present UID once, ascending, whatever the
// order, duplicates and absent UIDs of the request; and a caller that
// stops early gets its error back after exactly the messages it took.
func TestBodiesBatches(t *testing.T) {
	s, u, mb := aliceInbox(t, Options{PollInterval: time.Hour})
	n := 3*bodiesBatch + 5
	var present []store.UID
	for i := range n {
		present = append(present, mustAppend(t, s, u.ID, mb.ID, msg(fmt.Sprint("m", i), fmt.Sprint("body ", i))).UID)
	}
	// Requested: every UID twice, newest first, and UIDs that do not exist.
	var req []store.UID
	for i := len(present) - 1; i >= 0; i-- {
		req = append(req, present[i], present[i])
	}
	req = append(req, present[len(present)-1]+100, present[len(present)-1]+1)
	var got []store.UID
	ctx := context.Background()
	err := s.Bodies(ctx, u.ID, mb.ID, req, func(uid store.UID, raw []byte, damaged error) error {
		i := slices.Index(present, uid)
		if want := fmt.Sprintf("Subject: m%d\r\n", i); i < 0 || !strings.Contains(string(raw), want) || damaged != nil {
			t.Errorf("uid %d: body %.40q, damaged %v", uid, raw, damaged)
		}
		got = append(got, uid)
		return nil
	})
	if err != nil || !slices.Equal(got, present) {
		t.Fatalf("Bodies visited %v, %v; want %v once each, ascending", got, err, present)
	}

	stop := errors.New("chunk full")
	calls := 0
	err = s.Bodies(ctx, u.ID, mb.ID, present, func(store.UID, []byte, error) error {
		calls++
		if calls == bodiesBatch+3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != bodiesBatch+3 {
		t.Errorf("early stop: %d calls, err %v; want %d calls and the caller's error", calls, err, bodiesBatch+3)
	}
	// The reader that ran ahead is stopped and its connection usable.
	for range 3 {
		if raw, err := s.Body(ctx, u.ID, mb.ID, present[1]); err != nil || !strings.Contains(string(raw), "Subject: m1\r\n") {
			t.Fatalf("body after an early stop: %.40q, %v", raw, err)
		}
	}
}

// TestBodiesGroups checks the one-statement read of a group of messages
// (readGroup) through Bodies: a mailbox whose message ids rise with its
// UIDs, over several groups and with sizes around the chunk boundaries;
// one whose UIDs hold messages copied in out of id order; one holding a
// message under two UIDs (a copy within it); a message whose bytes are
// gone. Every message is visited once, ascending, with its own bytes.
func TestBodiesGroups(t *testing.T) {
	s, u, inbox := aliceInbox(t, Options{PollInterval: time.Hour, DisableIndexer: true})
	ctx := context.Background()
	other, err := s.CreateMailbox(ctx, u.ID, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[store.MailboxID]map[store.UID][]byte{inbox.ID: {}, other.ID: {}}
	msgOf := map[store.MailboxID]map[store.UID]store.MessageID{inbox.ID: {}, other.ID: {}}
	add := func(mb store.MailboxID, raw []byte) store.Entry {
		ent := mustAppend(t, s, u.ID, mb, raw)
		want[mb][ent.UID], msgOf[mb][ent.UID] = raw, ent.Message
		return ent
	}
	// Other first gets the newest message id of all, then copies of
	// older ones: its UIDs do not follow the ids.
	var inboxUIDs []store.UID
	for i := range 2*bodiesBatch + 3 {
		inboxUIDs = append(inboxUIDs, add(inbox.ID, rawOfSize(chunkSizes[i%len(chunkSizes)], uint64(i))).UID)
	}
	late := add(other.ID, rawOfSize(3*messageChunkSize+7, 999))
	copyIn := func(src, dst store.MailboxID, uids []store.UID) {
		t.Helper()
		res, err := s.Copy(ctx, u.ID, src, uids, dst)
		if err != nil {
			t.Fatal(err)
		}
		for i, uid := range res.Source {
			want[dst][res.Dest[i]], msgOf[dst][res.Dest[i]] = want[src][uid], msgOf[src][uid]
		}
	}
	copyIn(inbox.ID, other.ID, inboxUIDs[3:9])
	copyIn(inbox.ID, inbox.ID, inboxUIDs[1:2]) // one message, two UIDs in INBOX
	// A message without bytes (a damaged store) is passed over.
	var gone int64
	if err := s.pool.QueryRow(ctx, `DELETE FROM message_data WHERE message_id = (SELECT message_id FROM mailbox_messages
		WHERE mailbox_id = $1 AND uid = $2) RETURNING message_id`, inbox.ID, int64(inboxUIDs[5])).Scan(&gone); err != nil {
		t.Fatal(err)
	}
	for mb, uids := range msgOf {
		for uid, m := range uids {
			if int64(m) == gone {
				delete(want[mb], uid) // in INBOX and its copy in Other
			}
		}
	}
	if len(want[other.ID]) != 6 || want[other.ID][late.UID] == nil {
		t.Fatalf("Other holds %d messages with bytes; want 6 (late and 5 copies)", len(want[other.ID]))
	}
	for _, mb := range []store.MailboxID{inbox.ID, other.ID} {
		var all []store.UID
		for uid := range want[mb] {
			all = append(all, uid)
		}
		all = append(all, inboxUIDs[5])
		slices.Sort(all)
		var got []store.UID
		err := s.Bodies(ctx, u.ID, mb, all, func(uid store.UID, raw []byte, damaged error) error {
			got = append(got, uid)
			if w, ok := want[mb][uid]; !ok || !bytes.Equal(raw, w) || damaged != nil {
				t.Errorf("mailbox %d UID %d: %d bytes, want %d (known %v), damaged %v", mb, uid, len(raw), len(w), ok, damaged)
			}
			return nil
		})
		if err != nil || len(got) != len(want[mb]) || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("mailbox %d: Bodies visited %d (%v), %v; want the %d with bytes, ascending, once", mb, len(got), got, err, len(want[mb]))
		}
	}
}

// TestReadGroup checks readGroup alone: the messages of a group are handed
// over in the order asked (ascending or not, repeated or not), each with
// its bytes, a missing one passed over, and a caller's error stops the
// read and comes back.
func TestReadGroup(t *testing.T) {
	s, u, inbox := aliceInbox(t, Options{PollInterval: time.Hour, DisableIndexer: true})
	ctx := context.Background()
	var ids []int64
	raws := map[int64][]byte{}
	for i, n := range chunkSizes {
		raw := rawOfSize(n, uint64(i))
		ent := mustAppend(t, s, u.ID, inbox.ID, raw)
		ids = append(ids, int64(ent.Message))
		raws[int64(ent.Message)] = raw
	}
	ask := append(slices.Clone(ids[:3]), ids[len(ids)-1]+1000) // one that does not exist
	ask = append(ask, ids[3:]...)
	slices.Sort(ask)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var got []int64
	err = readGroup(ctx, tx, ask, func(int) []byte { return make([]byte, 0, 10) }, func(i int, raw []byte) error {
		got = append(got, ask[i])
		if !bytes.Equal(raw, raws[ask[i]]) {
			t.Errorf("message %d: %d bytes, want %d", ask[i], len(raw), len(raws[ask[i]]))
		}
		return nil
	})
	if err != nil || !slices.Equal(got, ids) {
		t.Fatalf("readGroup handed over %v, %v; want %v", got, err, ids)
	}
	// Out of id order, with repeats (as a mailbox's UIDs can hold them).
	mixed := []int64{ids[5], ids[2], ids[5], ids[0] + 1000, ids[7], ids[0], ids[2]}
	got = got[:0]
	err = readGroup(ctx, tx, mixed, func(int) []byte { return nil }, func(i int, raw []byte) error {
		got = append(got, mixed[i])
		if !bytes.Equal(raw, raws[mixed[i]]) {
			t.Errorf("message %d (index %d): %d bytes, want %d", mixed[i], i, len(raw), len(raws[mixed[i]]))
		}
		return nil
	})
	if want := slices.Delete(slices.Clone(mixed), 3, 4); err != nil || !slices.Equal(got, want) {
		t.Fatalf("readGroup handed over %v, %v; want %v", got, err, want)
	}
	stop := errors.New("enough")
	calls := 0
	err = readGroup(ctx, tx, ids, func(int) []byte { return nil }, func(int, []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("stopped read: %d calls, %v", calls, err)
	}
}

// TestBodiesExpungedMidCall: messages expunged (by another session) while
// Bodies is reading them are still handed over whole, from the read's
// snapshot, across groups; the next call no longer sees them.
func TestBodiesExpungedMidCall(t *testing.T) {
	s, u, inbox := aliceInbox(t, Options{PollInterval: time.Hour, DisableIndexer: true})
	ctx := context.Background()
	want := map[store.UID][]byte{}
	var uids []store.UID
	for i := range 2*bodiesBatch + 1 {
		raw := rawOfSize(chunkSizes[i%len(chunkSizes)], uint64(i))
		ent := mustAppend(t, s, u.ID, inbox.ID, raw, store.FlagDeleted)
		want[ent.UID] = raw
		uids = append(uids, ent.UID)
	}
	var got []store.UID
	err := s.Bodies(ctx, u.ID, inbox.ID, uids, func(uid store.UID, raw []byte, damaged error) error {
		if len(got) == 0 {
			if exp, err := s.Expunge(ctx, u.ID, inbox.ID, nil); err != nil || len(exp) != len(uids) {
				t.Errorf("expunge during Bodies: %d expunged, %v", len(exp), err)
			}
		}
		got = append(got, uid)
		if !bytes.Equal(raw, want[uid]) || damaged != nil {
			t.Errorf("UID %d: %d bytes, want %d; damaged %v", uid, len(raw), len(want[uid]), damaged)
		}
		return nil
	})
	if err != nil || !slices.Equal(got, uids) {
		t.Fatalf("Bodies visited %v, %v; want %v", got, err, uids)
	}
	err = s.Bodies(ctx, u.ID, inbox.ID, uids, func(uid store.UID, _ []byte, _ error) error {
		t.Errorf("UID %d visited after its expunge", uid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// aliceInbox starts a private PostgreSQL, opens a Store on a database of
// its own with opts (NodeName "a" when empty) and returns it with user
// alice and her INBOX: the setup of the body-reading tests.
func aliceInbox(t *testing.T, opts Options) (*Store, store.User, store.Mailbox) {
	t.Helper()
	e := newEnv(t, pgtest.Start(t, pgtest.Options{NoFsync: true}))
	if opts.NodeName == "" {
		opts.NodeName = "a"
	}
	s := e.openWith(t, opts)
	u := mustUser(t, s, "alice")
	return s, u, mustMailbox(t, s, u.ID, "INBOX")
}
