package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdWriter takes the writer role with a write that waits until the
// returned release is called, so that the writes started meanwhile queue
// and form the next group.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, unblock, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.write(context.Background(), "hold", func(w *writeTx) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	return func() {
		close(unblock)
		if err := <-done; err != nil {
			t.Errorf("holding write: %v", err)
		}
	}
}

// awaitQueued waits until n writes are queued behind the writer.
func awaitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.wq.mu.Lock()
		q := len(s.wq.urgent) + len(s.wq.normal)
		s.wq.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 30 s, want %d", q, n)
		}
		runtime.Gosched()
	}
}

// batch returns the deliveries of batch tag for user: k messages, and,
// when bad, a last one for a user that does not exist (the batch fails
// after its good deliveries ran, in a folder of its own that it would
// create).
func batch(user, tag string, k int, bad bool) []Delivery {
	var ds []Delivery
	folder := ""
	if bad {
		folder = "Bad-" + tag
	}
	for j := range k {
		uidl := fmt.Sprintf("%s-%d", tag, j)
		ds = append(ds, Delivery{Account: "acct-" + user, UIDL: uidl, Digest: "d" + uidl, User: user, Folder: folder, Raw: testMessage(uidl)})
	}
	if bad {
		uidl := tag + "-bad"
		ds = append(ds, Delivery{Account: "acct-" + user, UIDL: uidl, Digest: "d" + uidl, User: "nobody", Raw: testMessage(uidl)})
	}
	return ds
}

// checkLedger checks that every UIDL of want is in account's ledger once,
// in a message whose INBOX entry holds its bytes, and that the ledger has
// nothing else.
func checkLedger(t *testing.T, s *Store, user string, want map[string]Delivered) {
	t.Helper()
	ctx := context.Background()
	led, err := s.Ledger(ctx, "acct-"+user)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.UserByName(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range led {
		seen[l.UIDL]++
		d, ok := want[l.UIDL]
		if !ok {
			t.Errorf("%s: ledger row %s of a batch that failed or was never committed", user, l.UIDL)
			continue
		}
		if l.Message != d.Message {
			t.Errorf("%s: ledger %s names message %d, Commit reported %d", user, l.UIDL, l.Message, d.Message)
		}
		body, err := s.Body(ctx, u.ID, d.Mailbox, d.UID)
		if err != nil || !strings.Contains(string(body), "Subject: test "+l.UIDL+"\r\n") {
			t.Errorf("%s: %s at UID %d: %.60q, %v", user, l.UIDL, d.UID, body, err)
		}
	}
	for uidl := range want {
		if seen[uidl] != 1 {
			t.Errorf("%s: committed delivery %s is in the ledger %d times", user, uidl, seen[uidl])
		}
	}
	mbs, err := s.Mailboxes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var inbox Mailbox
	for _, mb := range mbs {
		if strings.HasPrefix(mb.Name, "Bad-") {
			t.Errorf("%s: mailbox %s of a failed batch exists", user, mb.Name)
		}
		if mb.Name == Inbox {
			inbox = mb
		}
	}
	snap, err := s.Snapshot(ctx, u.ID, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Entries) != len(want) {
		t.Errorf("%s: INBOX has %d entries, %d deliveries committed", user, len(snap.Entries), len(want))
	}
}

// TestGroupCommitIsolatesFailures: writes queued behind a busy writer are
// committed in one transaction; a batch in the group that fails after some
// of its deliveries ran (an unknown user last) and a write whose fn panics
// leave nothing, and every other batch is committed once.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	const n = 24
	users := []string{"ann", "bob", "cat"}
	for _, u := range users {
		mustUser(t, s, u)
	}
	release := holdWriter(t, s)
	type result struct {
		user string
		ds   []Delivery
		out  []Delivered
		err  error
		bad  bool
	}
	results := make(chan result, n)
	panicked := make(chan any, 1)
	for i := range n {
		go func() {
			user := users[i%len(users)]
			bad := i%4 == 1
			ds := batch(user, fmt.Sprintf("b%d", i), 1+i%3, bad)
			out, err := s.Deliver(ctx, ds)
			results <- result{user, ds, out, err, bad}
		}()
	}
	go func() {
		defer func() { panicked <- recover() }()
		s.write(ctx, "panics", func(w *writeTx) error {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO counters (name, value) VALUES ('group-test', 1)`); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	awaitQueued(t, s, n+1)
	groups := s.wq.groups.Load()
	release()
	want := map[string]map[string]Delivered{}
	for _, u := range users {
		want[u] = map[string]Delivered{}
	}
	for range n {
		r := <-results
		if r.bad {
			if !errors.Is(r.err, ErrNotFound) {
				t.Errorf("batch with an unknown user: %v, want ErrNotFound", r.err)
			}
			continue
		}
		if r.err != nil {
			t.Errorf("good batch: %v", r.err)
			continue
		}
		for i, d := range r.ds {
			want[r.user][d.UIDL] = r.out[i]
		}
	}
	if p := <-panicked; p != "boom" {
		t.Errorf("the panicking write's caller recovered %v, want boom", p)
	}
	if got := s.wq.groups.Load() - groups; got == 0 {
		t.Error("no group was committed: the test exercised no grouping")
	}
	var v int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM counters WHERE name = 'group-test'`).Scan(&v); err != nil || v != 0 {
		t.Errorf("the panicking write left %d rows (%v)", v, err)
	}
	for _, u := range users {
		checkLedger(t, s, u, want[u])
	}
}

// TestGroupCommitRandomFailures: goroutines commit batches and statuses
// concurrently, some batches failing (an unknown user after good
// deliveries) and some writes destroying the whole transaction (as SQLite
// does on some I/O errors), which makes their group run again write by
// write. Every batch reported committed is stored exactly once, failed
// ones leave nothing, and the change feed delivers every commit once, in
// commit order.
func TestGroupCommitRandomFailures(t *testing.T) {
	s := mustOpen(t)
	rec := record(t, s)
	ctx := context.Background()
	const (
		goroutines = 12
		rounds     = 25
	)
	var mu sync.Mutex
	want := map[string]map[string]Delivered{}
	var wg sync.WaitGroup
	var killed, failed int
	for g := range goroutines / 2 {
		user := fmt.Sprintf("u%d", g)
		mustUser(t, s, user)
		want[user] = map[string]Delivered{}
	}
	for g := range goroutines {
		user := fmt.Sprintf("u%d", g%(goroutines/2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for i := range rounds {
				switch x := rng.IntN(10); {
				case x == 0:
					// A write that drops the transaction it runs in.
					err := s.write(ctx, "drop transaction", func(w *writeTx) error {
						_, err := w.ExecContext(w.ctx, `ROLLBACK`)
						return err
					})
					if err == nil {
						t.Error("a write that rolled back its transaction reported success")
					}
					mu.Lock()
					killed++
					mu.Unlock()
				case x == 1:
					err := s.SetAccountStatus(ctx, AccountStatus{Account: "acct-" + user, Fetched: int64(i)})
					if err != nil {
						t.Error(err)
					}
				default:
					bad := x == 2
					ds := batch(user, fmt.Sprintf("g%d-r%d", g, i), 1+rng.IntN(4), bad)
					out, err := s.Deliver(ctx, ds)
					mu.Lock()
					switch {
					case bad && !errors.Is(err, ErrNotFound):
						t.Errorf("failing batch: %v, want ErrNotFound", err)
					case bad:
						failed++
					case err != nil:
						t.Errorf("batch: %v", err)
					default:
						for j, d := range ds {
							want[user][d.UIDL] = out[j]
						}
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if s.wq.groups.Load() == 0 {
		t.Error("no group was committed: the test exercised no grouping")
	}
	t.Logf("%d groups of %d writes; %d failed batches, %d dropped transactions", s.wq.groups.Load(), s.wq.grouped.Load(), failed, killed)
	added := map[MessageID]int{}
	lastSeq := map[MailboxID]uint64{}
	lastUID := map[MailboxID]UID{}
	for _, c := range rec.take() {
		if c.ModSeq <= lastSeq[c.Mailbox] {
			t.Errorf("mailbox %d: change with modseq %d after %d: feed out of commit order", c.Mailbox, c.ModSeq, lastSeq[c.Mailbox])
		}
		lastSeq[c.Mailbox] = c.ModSeq
		if c.Kind != ChangeAdd {
			continue
		}
		for _, e := range c.Entries {
			if e.UID <= lastUID[c.Mailbox] {
				t.Errorf("mailbox %d: UID %d announced after %d", c.Mailbox, e.UID, lastUID[c.Mailbox])
			}
			lastUID[c.Mailbox] = e.UID
			added[e.Message]++
		}
	}
	total := 0
	for user, w := range want {
		checkLedger(t, s, user, w)
		for _, d := range w {
			total++
			if added[d.Message] != 1 {
				t.Errorf("message %d announced %d times", d.Message, added[d.Message])
			}
		}
	}
	if len(added) != total {
		t.Errorf("%d messages announced, %d committed", len(added), total)
	}
}

// TestGroupCommitUrgentFirst: an urgent write (WithUrgent, or an IMAP
// session's, WithOrigin) queued behind background ones runs first in the
// next group.
func TestGroupCommitUrgentFirst(t *testing.T) {
	s := mustOpen(t)
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	writeAs := func(ctx context.Context, name string) {
		defer wg.Done()
		err := s.write(ctx, name, func(w *writeTx) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	release := holdWriter(t, s)
	for i := range 5 {
		wg.Add(1)
		go writeAs(context.Background(), fmt.Sprintf("background%d", i))
	}
	awaitQueued(t, s, 5)
	wg.Add(2)
	go writeAs(WithUrgent(context.Background()), "urgent")
	awaitQueued(t, s, 6)
	go writeAs(WithOrigin(context.Background(), "session"), "session")
	awaitQueued(t, s, 7)
	release()
	wg.Wait()
	if len(order) != 7 || order[0] != "urgent" || order[1] != "session" {
		t.Errorf("ran in order %v, want urgent, session, then the background writes", order)
	}
}

// TestGroupTake: a group takes urgent requests first, each kind in arrival
// order, up to maxGroupWeight, and at least one request however heavy.
func TestGroupTake(t *testing.T) {
	req := func(w int) *writeReq { return &writeReq{weight: w} }
	heavy := req(maxGroupWeight + 5)
	u1, n1, n2, n3 := req(10), req(maxGroupWeight-20), req(5), req(20)
	q := &writeQueue{urgent: []*writeReq{u1}, normal: []*writeReq{n1, n2, n3}}
	if g := q.take(); len(g) != 3 || g[0] != u1 || g[1] != n1 || g[2] != n2 {
		t.Errorf("first group %v, want u1 n1 n2", g)
	}
	q.normal = append(q.normal, heavy)
	if g := q.take(); len(g) != 1 || g[0] != n3 {
		t.Errorf("second group %v, want n3 alone (heavy would pass the cap)", g)
	}
	if g := q.take(); len(g) != 1 || g[0] != heavy {
		t.Errorf("third group %v, want the heavy request alone", g)
	}
	if g := q.take(); len(g) != 0 {
		t.Errorf("empty queue gave %v", g)
	}
}

// TestPackSyncShared: puts that finish writing while a pack sync runs are
// all covered by the one next sync, which starts after they called; a
// failed sync fails exactly the puts it was to cover.
func TestPackSyncShared(t *testing.T) {
	var ps packSync
	var calls atomic.Int64
	first, releaseFirst := make(chan struct{}), make(chan struct{})
	second := make(chan error, 1)
	do := func() error {
		switch calls.Add(1) {
		case 1:
			close(first)
			<-releaseFirst
			return nil
		case 2:
			return <-second
		}
		return nil
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- ps.sync(do) }()
	<-first
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() { errs <- ps.sync(do) }()
	}
	// Every caller waits for the sync after the running one.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps.mu.Lock()
		waiting := ps.waiting
		ps.mu.Unlock()
		if waiting == n || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	close(releaseFirst)
	if err := <-firstDone; err != nil {
		t.Fatalf("first sync: %v", err)
	}
	boom := errors.New("write-back failed")
	second <- boom
	for range n {
		if err := <-errs; !errors.Is(err, boom) {
			t.Errorf("a put covered by the failed sync got %v, want its error", err)
		}
	}
	if c := calls.Load(); c != 2 {
		t.Errorf("%d syncs for 11 puts, want 2 (the running one, then one shared by the 10 that came meanwhile)", c)
	}
	if err := ps.sync(do); err != nil || calls.Load() != 3 {
		t.Errorf("a put after the failure: %v after %d syncs, want a fresh, successful sync", err, calls.Load())
	}
}

// TestGroupWriterPanicReleasesRole: a panic in the writer outside a write's
// function (here in an afterCommit hook) reaches the caller that was
// writing, fails the group's requests, and leaves the store writable.
func TestGroupWriterPanicReleasesRole(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	func() {
		defer func() {
			if p := recover(); p != "after commit" {
				t.Errorf("recovered %v, want the hook's panic", p)
			}
		}()
		s.write(ctx, "panicky hook", func(w *writeTx) error {
			w.afterCommit = append(w.afterCommit, func() { panic("after commit") })
			return nil
		})
	}()
	done := make(chan error, 1)
	go func() { done <- s.SetAccountStatus(ctx, AccountStatus{Account: "a", Fetched: 1}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("write after the panic: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a write after the writer panicked did not finish within 30 s: the writer role was never released")
	}
}
