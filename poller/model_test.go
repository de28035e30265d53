package poller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

var modelHistories = flag.Int("model.histories", 2000, "seeded histories TestIdentityModel runs")

// The model-based test of the identity rules: random histories of what
// an upstream maildrop goes through (deliveries, deletions by another
// client, UIDLs reused with the same or another size, all UIDLs changed,
// identical and same-header twins, sessions without UIDL, reordered
// numbers, lost QUITs) interleaved with polls, some of which crash
// popbridge at a random point (the store keeps what was committed; the
// process's memory is lost). After every step the model checks:
//
//   - every message that left the server because popbridge deleted it is
//     stored, with its exact bytes;
//   - no content is stored twice;
//   - with leave_on_server = true nothing is deleted;
//
// and at the end, after clean polls, every message on the server is stored.

// Operations of a history, one byte each.
const (
	opNew         = iota // a new message, fresh UIDL
	opNewSameSize        // a new message of an existing one's header and size, other body
	opDeleteOther        // another client deletes a message
	opReuseSame          // a new message (same size as the old) under a UIDL seen before
	opReuseOther         // a new message of another size under a UIDL seen before
	opRenumber           // every UIDL changes
	opTwin               // a byte-identical copy of a message under a new UIDL
	opToggleUIDL         // the server starts or stops offering UIDL
	opShuffle            // message numbers change order
	opPoll               // a clean poll
	opCrashPoll          // a poll that crashes after a random number of store calls
	opCutPoll            // a poll whose connection drops after a random number of RETRs
	opLostQuit           // a poll whose QUIT applies the DELEs but reports failure
	opFailQuit           // a poll whose QUIT fails without applying the DELEs
	opAdvance            // time passes (delete_after comes due)
	numOps
)

// crashSink fails every call after its budget is spent, as a store would
// whose process died: what it committed before stays.
type crashSink struct {
	Sink
	mu     sync.Mutex
	budget int // < 0: no crash
}

var errCrash = errors.New("model: process crashed")

func (c *crashSink) spend() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.budget < 0 {
		return nil
	}
	if c.budget == 0 {
		return errCrash
	}
	c.budget--
	return nil
}

// Stage stages for real; the crash, if any, comes at Commit, so a batch
// staged and never committed is part of the model.
func (c *crashSink) Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error) {
	st, err := c.Sink.Stage(ctx, ds)
	if err != nil {
		return nil, err
	}
	return &crashStaged{Staged: st, c: c}, nil
}

// crashStaged is a Staged whose Commit may crash first.
type crashStaged struct {
	store.Staged
	c *crashSink
}

func (s *crashStaged) Commit(ctx context.Context) ([]store.Delivered, error) {
	if err := s.c.spend(); err != nil {
		return nil, err
	}
	return s.Staged.Commit(ctx)
}

func (c *crashSink) RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error {
	if err := c.spend(); err != nil {
		return err
	}
	return c.Sink.RecordSkipped(ctx, account, uidl, digest, size, reason)
}

func (c *crashSink) MarkDeletePending(ctx context.Context, account string, uidls []string) error {
	if err := c.spend(); err != nil {
		return err
	}
	return c.Sink.MarkDeletePending(ctx, account, uidls)
}

func (c *crashSink) MarkDeleted(ctx context.Context, account string, uidls []string) error {
	if err := c.spend(); err != nil {
		return err
	}
	return c.Sink.MarkDeleted(ctx, account, uidls)
}

func (c *crashSink) MarkGone(ctx context.Context, account string, refs []store.LedgerRef) error {
	if err := c.spend(); err != nil {
		return err
	}
	return c.Sink.MarkGone(ctx, account, refs)
}

func (c *crashSink) MarkListed(ctx context.Context, account string, refs []store.LedgerRef, at time.Time) error {
	if err := c.spend(); err != nil {
		return err
	}
	return c.Sink.MarkListed(ctx, account, refs, at)
}

// modelRun is one history.
type modelRun struct {
	t      testing.TB
	clock  *fakeClock
	srv    *fakeServer
	sink   *fakeSink    // nil when the history runs on the real store
	real   *store.Store // the real store, or nil
	crash  *crashSink
	p      *Poller
	acct   Account
	rng    *rand.Rand
	next   int      // content counter
	uidls  []string // every UIDL ever given out
	failed []string // invariant violations
	// removed holds the messages gone from the server since the last
	// successful poll; exempt, the messages that took the place of one of
	// them under the same identity and size before any poll could see the
	// gap. Such a swap is invisible in a listing: popbridge is not bound
	// to store the newcomer unless it retrieves it for another reason (it
	// must still never delete it unstored).
	removed []*fakeMsg
	exempt  map[*fakeMsg]bool
	// vacated maps the UIDLs that lost their message (deleted, or renamed
	// by a renumbering) since the last successful poll to that message's
	// size: a same-size newcomer under such a UIDL is indistinguishable in
	// the listings too.
	vacated map[string]int
	ops     strings.Builder // the history so far, for the report
}

func newModelRun(t testing.TB, seed uint64, leave bool, deleteAfter time.Duration, realStore bool) *modelRun {
	m := &modelRun{t: t, clock: newFakeClock(), srv: &fakeServer{caps: capabilities{UIDL: true}},
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), exempt: map[*fakeMsg]bool{}, vacated: map[string]int{}}
	if realStore {
		m.real = openStore(t, m.clock.Now)
		m.crash = &crashSink{Sink: m.real, budget: -1}
	} else {
		m.sink = newFakeSink(m.clock.Now)
		m.crash = &crashSink{Sink: m.sink, budget: -1}
	}
	m.acct = Account{Name: "model", User: "alice", Folder: "INBOX", LeaveOnServer: leave, DeleteAfter: deleteAfter, PollInterval: 5 * time.Minute}
	m.restart()
	return m
}

// restart is a new process over the same store and server.
func (m *modelRun) restart() {
	m.p = New(Options{Sink: m.crash, Accounts: []Account{m.acct}, Now: m.clock.Now})
	m.p.dial = m.srv.dial
	m.p.timer = m.clock.NewTimer
	m.p.rand = func() float64 { return 0.5 }
}

// content makes a message: one of a few headers (so headers and sizes
// collide often) and a body of a few sizes.
func (m *modelRun) content(header, bodyLen int) []byte {
	m.next++
	body := make([]byte, bodyLen)
	for i := range body {
		body[i] = byte('a' + m.rng.IntN(26))
	}
	return fmt.Appendf(nil, "Subject: h%d\r\nMessage-ID: <h%d@model>\r\n\r\n%s\r\n", header, header, body)
}

func (m *modelRun) newUIDL() string {
	u := fmt.Sprintf("u%d", len(m.uidls))
	m.uidls = append(m.uidls, u)
	return u
}

func (m *modelRun) add(uidl string, raw []byte) {
	m.srv.mu.Lock()
	defer m.srv.mu.Unlock()
	f := &fakeMsg{uidl: uidl, raw: raw}
	for _, r := range m.removed {
		if len(r.raw) == len(raw) && string(headerOf(r.raw)) == string(headerOf(raw)) {
			m.exempt[f] = true // a UIDL-less session cannot tell them apart
		}
	}
	if n, ok := m.vacated[uidl]; ok && n == len(raw) {
		m.exempt[f] = true
	}
	m.srv.msgs = append(m.srv.msgs, f)
}

// pick returns a random message on the server, or nil.
func (m *modelRun) pick() *fakeMsg {
	m.srv.mu.Lock()
	defer m.srv.mu.Unlock()
	if len(m.srv.msgs) == 0 {
		return nil
	}
	return m.srv.msgs[m.rng.IntN(len(m.srv.msgs))]
}

// storedContents returns the stored bytes, counted.
func (m *modelRun) storedContents() map[string]int {
	if m.real != nil {
		out := map[string]int{}
		for _, b := range mailboxBodies(m.t, m.real, "alice", "INBOX") {
			out[string(b)]++
		}
		return out
	}
	m.sink.mu.Lock()
	defer m.sink.mu.Unlock()
	out := map[string]int{}
	for _, s := range m.sink.msgs {
		out[string(s.raw)]++
	}
	return out
}

func (m *modelRun) violate(format string, args ...any) {
	m.failed = append(m.failed, fmt.Sprintf(format, args...))
}

// poll runs one pass with the given faults armed and checks the invariants.
func (m *modelRun) poll(op int, arg int) {
	m.srv.mu.Lock()
	before := slices.Clone(m.srv.msgs)
	switch op {
	case opCutPoll:
		m.srv.cutAfter = m.srv.retrs + 1 + arg%5
	case opLostQuit:
		m.srv.lostQuit = 1
	case opFailQuit:
		m.srv.failQuit = 1
	}
	m.srv.mu.Unlock()
	if op == opCrashPoll {
		m.crash.mu.Lock()
		m.crash.budget = arg % 8
		m.crash.mu.Unlock()
	}
	_, err := m.p.PollOnce(context.Background(), m.acct.Name, nil)
	m.srv.mu.Lock()
	m.srv.cutAfter, m.srv.lostQuit, m.srv.failQuit = 0, 0, 0
	after := slices.Clone(m.srv.msgs)
	m.srv.mu.Unlock()
	m.crash.mu.Lock()
	crashed := m.crash.budget == 0
	m.crash.budget = -1
	m.crash.mu.Unlock()
	if crashed || err != nil {
		m.restart() // a crash, or any failure: memory is not to be relied on
	}

	stored := m.storedContents()
	for c, n := range stored {
		if n > 1 {
			m.violate("content stored %d times: %.60q", n, c)
		}
	}
	still := map[*fakeMsg]bool{}
	for _, f := range after {
		still[f] = true
	}
	for _, f := range before {
		if still[f] {
			continue
		}
		if m.acct.LeaveOnServer && m.acct.DeleteAfter == 0 {
			m.violate("leave_on_server: message %s deleted", f.uidl)
		}
		if stored[string(f.raw)] == 0 {
			m.violate("message %s deleted upstream but not stored: %.60q", f.uidl, f.raw)
		}
		m.removed = append(m.removed, f)
		m.vacated[f.uidl] = len(f.raw)
	}
	if err == nil {
		m.removed = nil
		clear(m.vacated)
	}
}

// step applies one operation.
func (m *modelRun) step(op, arg int) {
	fmt.Fprintf(&m.ops, "%d:%d ", op, arg)
	switch op {
	case opNew:
		m.add(m.newUIDL(), m.content(arg%4, 8+arg%3*4))
	case opNewSameSize:
		if f := m.pick(); f != nil {
			h := headerOf(f.raw)
			m.add(m.newUIDL(), m.sameSizeAs(h, len(f.raw)))
		}
	case opDeleteOther:
		if f := m.pick(); f != nil {
			m.srv.mu.Lock()
			m.srv.msgs = slices.DeleteFunc(m.srv.msgs, func(g *fakeMsg) bool { return g == f })
			m.srv.mu.Unlock()
			m.removed = append(m.removed, f)
			m.vacated[f.uidl] = len(f.raw)
		}
	case opReuseSame, opReuseOther:
		if len(m.uidls) == 0 {
			return
		}
		u := m.uidls[arg%len(m.uidls)]
		m.srv.mu.Lock()
		inUse := slices.ContainsFunc(m.srv.msgs, func(g *fakeMsg) bool { return g.uidl == u })
		m.srv.mu.Unlock()
		if inUse {
			return // a UIDL is reused once its message is gone (RFC 1939 breakers do that)
		}
		raw := m.content(arg%4, 8+arg%3*4)
		if op == opReuseOther {
			raw = m.content(arg%4, 21+arg%5)
		}
		m.add(u, raw)
	case opRenumber:
		m.srv.mu.Lock()
		for _, f := range m.srv.msgs {
			m.vacated[f.uidl] = len(f.raw)
			f.uidl = fmt.Sprintf("u%d", len(m.uidls))
			m.uidls = append(m.uidls, f.uidl)
		}
		m.srv.mu.Unlock()
	case opTwin:
		if f := m.pick(); f != nil {
			m.add(m.newUIDL(), slices.Clone(f.raw))
		}
	case opToggleUIDL:
		m.srv.mu.Lock()
		m.srv.noUIDL = !m.srv.noUIDL
		m.srv.mu.Unlock()
	case opShuffle:
		m.srv.mu.Lock()
		m.rng.Shuffle(len(m.srv.msgs), func(i, j int) { m.srv.msgs[i], m.srv.msgs[j] = m.srv.msgs[j], m.srv.msgs[i] })
		m.srv.mu.Unlock()
	case opAdvance:
		m.clock.Advance(time.Duration(1+arg%3) * time.Hour)
	default:
		m.poll(op, arg)
	}
}

// sameSizeAs makes new content with header h and total size n.
func (m *modelRun) sameSizeAs(h []byte, n int) []byte {
	bodyLen := n - len(h) - 2
	if bodyLen < 0 {
		return m.content(0, 8)
	}
	body := make([]byte, bodyLen)
	for i := range body {
		body[i] = byte('a' + m.rng.IntN(26))
	}
	return append(append(slices.Clone(h), body...), "\r\n"...)
}

// finish clears the faults, polls until the store is settled and checks
// that everything on the server is stored.
func (m *modelRun) finish() {
	m.srv.mu.Lock()
	m.srv.noUIDL = false
	m.srv.mu.Unlock()
	for range 3 {
		m.poll(opPoll, 0)
	}
	stored := m.storedContents()
	m.srv.mu.Lock()
	defer m.srv.mu.Unlock()
	for _, f := range m.srv.msgs {
		if stored[string(f.raw)] == 0 && !m.exempt[f] {
			m.violate("message %s on the server never stored: %q (stored: %v)", f.uidl, f.raw, stored)
		}
	}
}

// runHistory interprets data as a history (two bytes an operation: the
// operation and its argument) under the policy its first byte picks.
func runHistory(t testing.TB, seed uint64, data []byte, realStore bool) []string {
	if len(data) == 0 {
		return nil
	}
	pol := data[0] % 3
	m := newModelRun(t, seed, pol != 1, map[byte]time.Duration{2: 2 * time.Hour}[pol], realStore)
	for i := 1; i+1 < len(data); i += 2 {
		m.step(int(data[i])%numOps, int(data[i+1]))
		if len(m.failed) > 0 {
			break
		}
	}
	if len(m.failed) == 0 {
		m.finish()
	}
	if len(m.failed) > 0 {
		return append(m.failed, fmt.Sprintf("policy %d, history %s", pol, m.ops.String()))
	}
	return nil
}

// TestIdentityModel runs seeded random histories against the model, on
// the in-memory sink (which mirrors the store's ledger semantics).
func TestIdentityModel(t *testing.T) {
	n := *modelHistories
	if testing.Short() {
		n /= 10
	}
	runModelHistories(t, n, false)
}

// TestIdentityModelRealStore runs some of the same histories on the real
// store.
func TestIdentityModelRealStore(t *testing.T) {
	runModelHistories(t, max(*modelHistories/40, 1), true)
}

func runModelHistories(t *testing.T, n int, realStore bool) {
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 7))
		data := make([]byte, 1+2*(10+rng.IntN(30)))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		// Polls are frequent enough that most steps are seen by one.
		for i := 1; i+1 < len(data); i += 2 {
			if rng.IntN(3) == 0 {
				data[i] = opPoll
			}
		}
		if bad := runHistory(t, seed, data, realStore); bad != nil {
			t.Fatalf("seed %d: %s", seed, strings.Join(bad, "\n"))
		}
	}
}

// FuzzIdentityHistory explores histories guided by coverage; seeds are in
// testdata/fuzz/FuzzIdentityHistory.
func FuzzIdentityHistory(f *testing.F) {
	f.Add([]byte{0, opNew, 1, opPoll, 0, opReuseSame, 0, opPoll, 0})
	f.Add([]byte{1, opNew, 1, opPoll, 0, opDeleteOther, 0, opPoll, 0, opReuseSame, 0, opPoll, 0})
	f.Add([]byte{1, opToggleUIDL, 0, opNew, 1, opNewSameSize, 0, opPoll, 0})
	f.Add([]byte{0, opNew, 1, opNew, 2, opNew, 3, opPoll, 0, opRenumber, 0, opPoll, 0})
	f.Add([]byte{1, opNew, 1, opTwin, 0, opCrashPoll, 3, opPoll, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 200 {
			data = data[:200]
		}
		if bad := runHistory(t, 1, data, false); bad != nil {
			t.Fatal(strings.Join(bad, "\n"))
		}
	})
}
