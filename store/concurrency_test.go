package store

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var long = flag.Bool("long", false, "run the long variants of the concurrency and crash tests")

// feedModel rebuilds every mailbox from the change feed alone and checks the
// feed's ordering rules as it goes.
type feedModel struct {
	mu      sync.Mutex
	t       *testing.T
	modseq  map[MailboxID]uint64
	maxUID  map[MailboxID]UID
	entries map[MailboxID]map[UID][]string
	errs    []string
}

func newFeedModel(t *testing.T) *feedModel {
	return &feedModel{t: t, modseq: map[MailboxID]uint64{}, maxUID: map[MailboxID]UID{}, entries: map[MailboxID]map[UID][]string{}}
}

func (m *feedModel) fail(format string, args ...any) {
	if len(m.errs) < 20 {
		m.errs = append(m.errs, fmt.Sprintf(format, args...))
	}
}

func (m *feedModel) apply(c Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch c.Kind {
	case ChangeAdd, ChangeFlags, ChangeExpunge:
	default:
		return
	}
	if c.ModSeq <= m.modseq[c.Mailbox] {
		m.fail("mailbox %d: modseq %d after %d", c.Mailbox, c.ModSeq, m.modseq[c.Mailbox])
	}
	m.modseq[c.Mailbox] = c.ModSeq
	es := m.entries[c.Mailbox]
	if es == nil {
		es = map[UID][]string{}
		m.entries[c.Mailbox] = es
	}
	switch c.Kind {
	case ChangeAdd:
		for _, e := range c.Entries {
			if e.UID <= m.maxUID[c.Mailbox] {
				m.fail("mailbox %d: added UID %d not above %d", c.Mailbox, e.UID, m.maxUID[c.Mailbox])
			}
			m.maxUID[c.Mailbox] = e.UID
			es[e.UID] = e.Flags
		}
	case ChangeFlags:
		for _, e := range c.Entries {
			if _, ok := es[e.UID]; !ok {
				m.fail("mailbox %d: flags of absent UID %d", c.Mailbox, e.UID)
			}
			es[e.UID] = e.Flags
		}
	case ChangeExpunge:
		for _, u := range c.UIDs {
			if _, ok := es[u]; !ok {
				m.fail("mailbox %d: expunge of absent UID %d", c.Mailbox, u)
			}
			delete(es, u)
		}
	}
}

func TestConcurrentOperations(t *testing.T) {
	dur := 3 * time.Second
	workers := 24
	if testing.Short() {
		dur = time.Second
	}
	if *long {
		dur, workers = 60*time.Second, 32
	}
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	var mbs []Mailbox
	for _, n := range []string{"INBOX", "Archive", "Trash"} {
		mbs = append(mbs, mustMailbox(t, s, u.ID, n))
	}
	model := newFeedModel(t)
	sub := s.Subscribe(model.apply)
	defer sub.Cancel()

	// flagged[mailbox][uid] holds the keywords workers added (never removed).
	var (
		flagMu    sync.Mutex
		flagged   = map[MailboxID]map[UID][]string{}
		ops       atomic.Int64
		delivered atomic.Int64
		errMu     sync.Mutex
		errs      []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	randomUIDs := func(rng *rand.Rand, mb MailboxID, n int) []UID {
		snap, err := s.Snapshot(ctx, u.ID, mb)
		if err != nil {
			fail(err)
			return nil
		}
		var out []UID
		for range n {
			if len(snap.Entries) == 0 {
				break
			}
			out = append(out, snap.Entries[rng.IntN(len(snap.Entries))].UID)
		}
		return out
	}
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			kw := fmt.Sprintf("$w%d", w)
			for i := 0; time.Now().Before(deadline); i++ {
				mb := mbs[rng.IntN(len(mbs))].ID
				other := mbs[rng.IntN(len(mbs))].ID
				var err error
				switch w % 6 {
				case 0: // deliver a batch
					var ds []Delivery
					for j := range 1 + rng.IntN(4) {
						ds = append(ds, Delivery{Account: fmt.Sprint("acct", w), UIDL: fmt.Sprintf("%d-%d", i, j), Digest: "d",
							User: "alice", Raw: testMessage(fmt.Sprintf("w%d-%d-%d", w, i, j))})
					}
					if _, err = s.Deliver(ctx, ds); err == nil {
						delivered.Add(int64(len(ds)))
					}
				case 1:
					_, _, err = s.Append(ctx, u.ID, mb, testMessage(fmt.Sprint("append", w, i)), []string{kw}, time.Time{})
				case 2: // add own keyword: must never be lost
					var got []Entry
					got, err = s.UpdateFlags(ctx, u.ID, mb, randomUIDs(rng, mb, 3), FlagsAdd, []string{kw, FlagSeen})
					flagMu.Lock()
					for _, e := range got {
						if !slices.Contains(e.Flags, kw) {
							fail(fmt.Errorf("UpdateFlags result lacks %s: %+v", kw, e))
						}
						if flagged[mb] == nil {
							flagged[mb] = map[UID][]string{}
						}
						flagged[mb][e.UID] = append(flagged[mb][e.UID], kw)
					}
					flagMu.Unlock()
				case 3:
					_, err = s.Copy(ctx, u.ID, mb, randomUIDs(rng, mb, 2), other)
				case 4:
					_, err = s.Move(ctx, u.ID, mb, randomUIDs(rng, mb, 2), other)
				case 5:
					us := randomUIDs(rng, mb, 3)
					if _, err = s.UpdateFlags(ctx, u.ID, mb, us, FlagsAdd, []string{FlagDeleted}); err == nil {
						_, err = s.Expunge(ctx, u.ID, mb, us)
					}
				}
				if err != nil {
					fail(err)
					return
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("operation failed: %v", err)
	}
	if err := sub.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	model.mu.Lock()
	defer model.mu.Unlock()
	for _, e := range model.errs {
		t.Error(e)
	}
	total := 0
	for _, mb := range mbs {
		snap, err := s.Snapshot(ctx, u.ID, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		total += len(snap.Entries)
		fromFeed := model.entries[mb.ID]
		if len(fromFeed) != len(snap.Entries) {
			t.Errorf("%s: feed says %d entries, snapshot %d", mb.Name, len(fromFeed), len(snap.Entries))
		}
		prev := UID(0)
		for _, e := range snap.Entries {
			if e.UID <= prev || e.UID >= snap.Mailbox.UIDNext {
				t.Errorf("%s: UID %d after %d, UIDNEXT %d", mb.Name, e.UID, prev, snap.Mailbox.UIDNext)
			}
			prev = e.UID
			if f, ok := fromFeed[e.UID]; !ok || !slices.Equal(f, e.Flags) {
				t.Errorf("%s uid %d: snapshot flags %q, feed %q (present %v)", mb.Name, e.UID, e.Flags, f, ok)
			}
			for _, kw := range flagged[mb.ID][e.UID] {
				if !slices.Contains(e.Flags, kw) {
					t.Errorf("%s uid %d: lost update, %s missing from %q", mb.Name, e.UID, kw, e.Flags)
				}
			}
		}
		if snap.Mailbox.HighestModSeq != model.modseq[mb.ID] && model.modseq[mb.ID] != 0 {
			t.Errorf("%s: HIGHESTMODSEQ %d, last feed modseq %d", mb.Name, snap.Mailbox.HighestModSeq, model.modseq[mb.ID])
		}
		c, err := s.Counts(ctx, u.ID, mb.ID)
		if err != nil || int(c.Messages) != len(snap.Entries) {
			t.Errorf("%s: Counts %+v, %v; snapshot has %d", mb.Name, c, err, len(snap.Entries))
		}
	}
	var ledgerRows int
	for w := 0; w < workers; w += 6 {
		led, err := s.Ledger(ctx, fmt.Sprint("acct", w))
		if err != nil {
			t.Fatal(err)
		}
		ledgerRows += len(led)
	}
	if int64(ledgerRows) != delivered.Load() {
		t.Errorf("ledger has %d rows, %d delivered", ledgerRows, delivered.Load())
	}
	var integrity string
	if err := s.rdb.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check = %q, %v", integrity, err)
	}
	var busy int
	for _, err := range errs {
		if strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked") {
			busy++
		}
	}
	t.Logf("%d workers, %v: %d ops (%.0f ops/s), %d delivered, %d entries at end, %d SQLITE_BUSY",
		workers, dur, ops.Load(), float64(ops.Load())/dur.Seconds(), delivered.Load(), total, busy)
}
