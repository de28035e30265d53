package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// TestServerOutage stops or kills the database server under the store:
// one server for both subtests (each restarts it), a database each.
func TestServerOutage(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	t.Run("KillAndRestart", func(t *testing.T) { testKillAndRestart(t, newEnv(t, srv)) })
	t.Run("CommitRetryAfterOutage", func(t *testing.T) { testCommitRetryAfterOutage(t, newEnv(t, srv)) })
}

// testKillAndRestart kills the database server under two nodes: calls fail
// with ErrUnavailable while it is down, and after the restart the nodes
// work again without being reopened, and the change feed catches up.
func testKillAndRestart(t *testing.T, e *env) {
	srv := e.srv
	ctx := context.Background()
	a := e.open(t, "a")
	b := e.open(t, "b")
	u := mustUser(t, a, "bob").ID
	inbox := mustMailbox(t, a, u, store.Inbox)
	mustAppend(t, a, u, inbox.ID, msg("before", "x"))
	rec, cancel := record(b)
	defer cancel()

	srv.Kill(t)
	if _, _, err := a.Append(ctx, u, inbox.ID, msg("during", "x"), nil, time.Time{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("append with the server down: err = %v, want ErrUnavailable", err)
	}
	if _, err := a.Deliver(ctx, []store.Delivery{delivery("acct", "1", "bob", "", "d")}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("deliver with the server down: err = %v, want ErrUnavailable", err)
	}
	if _, err := b.Snapshot(ctx, u, inbox.ID); !errors.Is(err, ErrUnavailable) {
		t.Errorf("snapshot with the server down: err = %v, want ErrUnavailable", err)
	}
	if err := b.Health(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("health with the server down: %v", err)
	}

	srv.Restart(t)
	// Connections the pool held died with the server; each fails one
	// call at most, so a few attempts (no waiting) must get through.
	var (
		ent store.Entry
		err error
	)
	for range 12 {
		if ent, _, err = a.Append(ctx, u, inbox.ID, msg("after", "x"), nil, time.Time{}); err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("append after restart: %v", err)
		}
	}
	if err != nil {
		t.Fatalf("append after restart never succeeded: %v", err)
	}
	if ent.UID != 2 {
		t.Errorf("UID after restart %d, want 2 (the failed append took none)", ent.UID)
	}
	cs := rec.waitFor(t, feedTimeout, "node b's feed to resume", func(cs []store.Change) bool {
		return len(addsOf(cs, inbox.ID)) > 0 && addsOf(cs, inbox.ID)[len(addsOf(cs, inbox.ID))-1] == 2
	})
	if got := fmt.Sprint(addsOf(cs, inbox.ID)); got != "[1 2]" && got != "[2]" {
		t.Errorf("node b saw adds %s", got)
	}
	// Node b's listener is back (it delivered the change); a pooled
	// connection that died with the server fails one ping at most.
	for range 12 {
		if err = b.Health(); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("health after restart: %v", err)
	}
}

// testCommitRetryAfterOutage stages a batch, fails its Commit with the
// server down, and commits it once the server is back: stored once.
func testCommitRetryAfterOutage(t *testing.T, e *env) {
	srv := e.srv
	ctx := context.Background()
	s := e.open(t, "a")
	mustUser(t, s, "bob")
	st, err := s.Stage(ctx, []store.Delivery{delivery("acct", "1", "bob", "", "one"), delivery("acct", "2", "bob", "", "two")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	srv.Stop(t)
	if _, err := st.Commit(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("commit with the server stopped: err = %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	var dl []store.Delivered
	for range 12 { // each pooled connection that died fails one call at most
		if dl, err = st.Commit(ctx); err == nil || !errors.Is(err, ErrUnavailable) {
			break
		}
	}
	if err != nil || len(dl) != 2 || dl[0].UID != 1 || dl[1].UID != 2 {
		t.Fatalf("commit after restart = %+v, %v", dl, err)
	}
	if _, err := st.Commit(ctx); !errors.Is(err, ErrStagedDone) {
		t.Errorf("a committed batch committed again: err = %v", err)
	}
	if n := srv.Psql(t, e.db, "SELECT count(*) FROM pop_ledger"); n != "2" {
		t.Errorf("ledger rows %s, want 2", n)
	}
}
