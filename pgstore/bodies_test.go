package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// TestBodiesBatches checks Bodies over more messages than one query asks
// for (bodiesBatch): every present UID once, ascending, whatever the
// order, duplicates and absent UIDs of the request; and a caller that
// stops early gets its error back after exactly the messages it took.
func TestBodiesBatches(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	e := newEnv(t, srv)
	s := e.open(t, "a")
	u := mustUser(t, s, "alice")
	mb := mustMailbox(t, s, u.ID, "INBOX")
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
