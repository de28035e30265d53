package poller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/store"
)

// Compile-time checks: the PostgreSQL store is a Sink and a Leaser.
var (
	_ Sink   = (*pgstore.Store)(nil)
	_ Leaser = (*pgstore.Store)(nil)
)

// openPG opens node's store on dsn with user alice.
func openPG(t *testing.T, dsn, node string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{NodeName: node})
	if err != nil {
		t.Fatalf("open store of node %s: %v", node, err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.EnsureUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	return st
}

// pgBodies returns the digests of the messages in alice's mailbox, with
// how many times each is stored.
func pgBodies(t *testing.T, st *pgstore.Store, mailbox string) (map[[32]byte]int, error) {
	ctx := context.Background()
	u, err := st.UserByName(ctx, "alice")
	if err != nil {
		return nil, err
	}
	mb, err := st.MailboxByName(ctx, u.ID, mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return map[[32]byte]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	snap, err := st.Snapshot(ctx, u.ID, mb.ID)
	if err != nil {
		return nil, err
	}
	out := map[[32]byte]int{}
	for _, e := range snap.Entries {
		b, err := st.Body(ctx, u.ID, mb.ID, e.UID)
		if err != nil {
			return nil, err
		}
		out[sha256.Sum256(b)]++
	}
	return out, nil
}

// countStored returns how many messages alice's INBOX holds, or -1 when
// the store cannot say.
func countStored(t *testing.T, st *pgstore.Store) int {
	got, err := pgBodies(t, st, "INBOX")
	if err != nil {
		return -1
	}
	n := 0
	for _, c := range got {
		n += c
	}
	return n
}

// checkExactlyOnce fails unless alice's INBOX holds each of want once and
// nothing else.
func checkExactlyOnce(t *testing.T, st *pgstore.Store, want []pop3mem.Message) {
	t.Helper()
	got, err := pgBodies(t, st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range got {
		total += n
	}
	for _, m := range want {
		switch n := got[sha256.Sum256(m.Raw)]; n {
		case 1:
		case 0:
			t.Errorf("message %s lost", m.UIDL)
		default:
			t.Errorf("message %s stored %d times", m.UIDL, n)
		}
	}
	if total != len(want) {
		t.Errorf("INBOX holds %d messages, want %d", total, len(want))
	}
}

// eventually waits up to d for cond, checking every few milliseconds: the
// condition is in another process (the database, the POP server) that
// cannot notify the test.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deadLeaser is a node's Leaser that can die: then every call fails, as
// for a node that was killed or cut off from the database.
type deadLeaser struct {
	Leaser
	dead atomic.Bool
}

var errNodeDead = errors.New("node is dead")

func (d *deadLeaser) AcquireLease(ctx context.Context, name string, ttl time.Duration) (store.Lease, bool, error) {
	if d.dead.Load() {
		return store.Lease{}, false, errNodeDead
	}
	return d.Leaser.AcquireLease(ctx, name, ttl)
}

func (d *deadLeaser) RenewLeases(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]store.Lease, error) {
	if d.dead.Load() {
		return nil, errNodeDead
	}
	return d.Leaser.RenewLeases(ctx, ls, ttl)
}

func (d *deadLeaser) ReleaseLeases(ctx context.Context, ls []store.Lease) error {
	if d.dead.Load() {
		return errNodeDead
	}
	return d.Leaser.ReleaseLeases(ctx, ls)
}

func (d *deadLeaser) LookLeases(ctx context.Context, names []string) ([]store.Lease, error) {
	if d.dead.Load() {
		return nil, errNodeDead
	}
	return d.Leaser.LookLeases(ctx, names)
}

// pgNode is one node: a poller on its own pgstore.Store.
type pgNode struct {
	name   string
	st     *pgstore.Store
	leaser *deadLeaser
	p      *Poller
	cancel context.CancelFunc
	done   chan error
}

func startNode(t *testing.T, dsn, name string, a Account, ttl time.Duration) *pgNode {
	t.Helper()
	st := openPG(t, dsn, name)
	n := &pgNode{name: name, st: st, leaser: &deadLeaser{Leaser: st}, done: make(chan error, 1)}
	n.p = New(Options{Sink: st, Accounts: []Account{a}, Leaser: n.leaser, LeaseTTL: ttl, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("node", name)})
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- n.p.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// stop stops the node's poller cleanly (or after its death, lets Run
// return).
func (n *pgNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

// kill simulates the node's death: its leases are never renewed or
// released again, and its poller stops (the POP session is dropped
// without QUIT, as when the process dies).
func (n *pgNode) kill() {
	n.leaser.dead.Store(true)
	n.stop()
}

func (n *pgNode) status() Status { return n.p.Status()[0] }

// TestTwoNodesOnePollerPerAccount runs two nodes on one PostgreSQL store
// polling one account (leave_on_server false) of an in-process POP server
// that sends slowly: only the node holding the account's lease ever opens
// a session (never two at once); the holder is killed in the middle of
// the fetch, and the other node takes the account over within two lease
// periods and finishes it: every message stored exactly once, every
// message deleted upstream.
func TestTwoNodesOnePollerPerAccount(t *testing.T) {
	const (
		ttl  = 2 * time.Second
		msgs = 120
	)
	pg := pgtest.Start(t, pgtest.Options{NoFsync: true})
	up := pop3mem.NewServer()
	t.Cleanup(up.Close)
	for i := 1; i <= msgs; i++ {
		up.AddMessage(paddedMessage(i))
	}
	want := up.Messages()
	up.SetFaults(pop3mem.Faults{Rate: 64 << 10}) // about 7 s for the maildrop
	a := upstreamAccount(up, func(a *Account) { a.LeaveOnServer = false; a.PollInterval = 200 * time.Millisecond })

	nodes := []*pgNode{startNode(t, pg.DSN(), "a", a, ttl), startNode(t, pg.DSN(), "b", a, ttl)}
	var holder, other *pgNode
	eventually(t, 30*time.Second, "a node to hold the account's lease", func() bool {
		for i, n := range nodes {
			if n.status().LeaseHeld {
				holder, other = n, nodes[1-i]
				return true
			}
		}
		return false
	})
	eventually(t, 30*time.Second, "part of the maildrop stored", func() bool { return countStored(t, holder.st) >= 20 })
	eventually(t, 30*time.Second, "the other node to find the lease held", func() bool { return other.status().LeaseHolder != "" })
	if st := other.status(); st.LeaseHeld || st.LeaseHolder != holder.name || st.State() != "polled by node "+holder.name {
		t.Errorf("node %s while %s polls: %+v (state %q)", other.name, holder.name, st, st.State())
	}
	if n := countStored(t, holder.st); n >= msgs {
		t.Fatalf("the whole maildrop (%d) was stored before the kill; slow the upstream down", n)
	}

	killed := time.Now()
	holder.kill()
	// Taken over: the lease held and the poll begun (its attempt time
	// is set just after the lease is acquired, not with it).
	eventually(t, 30*time.Second, "node "+other.name+" to take over", func() bool {
		st := other.status()
		return st.LeaseHeld && !st.LastAttempt.IsZero()
	})
	if st := other.status(); st.LastAttempt.Sub(killed) > 2*ttl {
		t.Errorf("node %s polled %v after the holder's death, want within two lease periods (%v)", other.name, st.LastAttempt.Sub(killed), 2*ttl)
	}
	eventually(t, 60*time.Second, "the maildrop emptied", func() bool { return len(up.Messages()) == 0 })
	for _, n := range nodes {
		n.stop()
	}
	checkExactlyOnce(t, other.st, want)
	if got := len(up.Deleted()); got != msgs {
		t.Errorf("%d messages deleted upstream, want %d", got, msgs)
	}
	if got := up.MaxOpenSessions(); got != 1 {
		t.Errorf("%d POP sessions open at once, want 1 (one node polls an account)", got)
	}
}

// TestStoreLostDuringPoll stops the database in the middle of a fetch
// (leave_on_server false): the pass stops without DELE, the account shows
// "store unavailable" without counting as failed, and once the database
// is back the fetch resumes: every message stored exactly once, all of
// them deleted upstream.
func TestStoreLostDuringPoll(t *testing.T) {
	const msgs = 100
	pg := pgtest.Start(t, pgtest.Options{NoFsync: true})
	up := pop3mem.NewServer()
	t.Cleanup(up.Close)
	for i := 1; i <= msgs; i++ {
		up.AddMessage(paddedMessage(i))
	}
	want := up.Messages()
	up.SetFaults(pop3mem.Faults{Rate: 64 << 10})
	a := upstreamAccount(up, func(a *Account) { a.LeaveOnServer = false; a.PollInterval = 200 * time.Millisecond })
	n := startNode(t, pg.DSN(), "a", a, 0)

	eventually(t, 30*time.Second, "part of the maildrop stored", func() bool { return countStored(t, n.st) >= 10 })
	pg.Stop(t)
	eventually(t, 30*time.Second, "the account to show the store unavailable", func() bool {
		return n.status().StoreUnavailable
	})
	st := n.status()
	if st.State() != StateStoreUnavailable || st.LastError != "" {
		t.Errorf("status with the database down: %+v (state %q)", st, st.State())
	}
	if got := len(up.Deleted()); got != 0 {
		t.Errorf("%d DELEs while the database is down", got)
	}
	pg.Restart(t)
	eventually(t, 60*time.Second, "the maildrop emptied", func() bool { return len(up.Messages()) == 0 })
	n.stop()
	checkExactlyOnce(t, n.st, want)
	if st := n.status(); st.StoreUnavailable || st.LastError != "" {
		t.Errorf("status after the database came back: %+v", st)
	}
	if got := len(up.Deleted()); got != msgs {
		t.Errorf("%d deleted upstream, want %d", got, msgs)
	}
}

// paddedMessage is testMessage(i) with a body of about 4 KB: with
// pop3mem's Faults.Rate at 64 KB/s (sent in 20 ms chunks) each takes
// about 60 ms, so the maildrop takes seconds.
func paddedMessage(i int) []byte {
	return []byte(testMessage(i) + strings.Repeat(fmt.Sprintf("padding line of message %d ........................................\r\n", i), 56))
}
