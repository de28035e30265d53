package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Group commit limits: retrieved messages are delivered in one durable
// transaction per batch. A batch is committed when it reaches either limit
// or as soon as the committer is idle (retrieval paused or ended). Since
// the store stopped parsing on delivery, a commit is mostly its two
// fsyncs, so larger batches pay: on the 10,000-message bench fetch, 64
// messages / 8 MB took 2.04 s, 128 / 16 MB 1.84 s, 256 / 32 MB 1.75 s
// (medians of 6). Nothing is deleted upstream before its batch commits,
// so a crash costs at most a re-fetch of one batch.
const (
	commitMaxMsgs  = 256
	commitMaxBytes = 32 << 20
	// bufferMaxBytes bounds the bytes retrieved but not yet committed
	// (two batches in flight).
	bufferMaxBytes = 64 << 20
	// commitGrace is how long commits of already retrieved messages may
	// continue after the pass's context is canceled (shutdown).
	commitGrace = 30 * time.Second
	// commitWorkers is how many batches may be in flight at once: a
	// batch's bytes are staged (written and fsynced) before its turn to
	// commit, so one batch's pack write overlaps the other's transaction.
	commitWorkers = 2
)

// committer delivers retrieved messages in group commits on its own
// goroutines, so that the network, the digests and the store's writes and
// fsyncs overlap. Each of its commitWorkers batches whatever has arrived
// while the previous commit ran, up to the commit limits. The batches'
// bytes are staged in parallel (Sink.Stage), but their transactions
// commit in the order the messages were retrieved (each batch waits for
// its turn before Staged.Commit), so local UIDs follow the upstream order.
type committer struct {
	p        *Poller
	a        Account
	log      *slog.Logger
	pass     context.Context // the pass's context (leaseLost)
	ctx      context.Context // commit context: survives the pass's cancel for commitGrace
	cancel   context.CancelFunc
	in       chan *fetchedMsg
	sem      *byteBudget
	stopped  context.Context // done when the workers exit or one fails
	stop     context.CancelFunc
	done     chan struct{}
	graceOff func() bool
	// cl decides what each message is, once its digest is computed.
	cl *classifier

	// takeMu serialises taking batches from in, so that nextTicket
	// numbers them in message order. A staged batch waits (awaitTurn)
	// before its Commit until every earlier batch has finished: turn is
	// the lowest unfinished ticket, doneTickets the finished ones above
	// it, turnChanged closed at every change.
	takeMu      sync.Mutex
	nextTicket  uint64
	turnMu      sync.Mutex
	turn        uint64
	doneTickets map[uint64]bool
	turnChanged chan struct{}

	// mu guards the fields below; they are read after done is closed.
	mu       sync.Mutex
	err      error
	proven   []provenMsg
	twins    []*fetchedMsg // fetchedTwin, for recordTwins
	res      *Result
	progress func(done, total int)
	total    int
	handled  int
}

// newCommitter starts a committer for one pass.
func (p *Poller) newCommitter(ctx context.Context, a Account, res *Result, progress func(done, total int), total int, cl *classifier, log *slog.Logger) *committer {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopped, stop := context.WithCancel(context.Background())
	c := &committer{
		p: p, a: a, log: log, pass: ctx, ctx: cctx, cancel: cancel,
		in:      make(chan *fetchedMsg, commitMaxMsgs),
		sem:     newByteBudget(bufferMaxBytes),
		stopped: stopped, stop: stop,
		done: make(chan struct{}),
		res:  res, progress: progress, total: total,
		cl:          cl,
		doneTickets: map[uint64]bool{},
		turnChanged: make(chan struct{}),
	}
	c.graceOff = context.AfterFunc(ctx, func() {
		if leaseLost(ctx) {
			// Another node may be polling the account now: no further
			// commit (the store's duplicate guard would keep exactly
			// once anyway).
			cancel()
			return
		}
		t := time.AfterFunc(commitGrace, cancel)
		context.AfterFunc(stopped, func() { t.Stop() })
	})
	var wg sync.WaitGroup
	for range commitWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop()
		}()
	}
	go func() {
		wg.Wait()
		c.stop()
		close(c.done)
	}()
	return c
}

// errCommitterStopped is returned by put after the committer failed.
var errCommitterStopped = errors.New("poller: committer stopped")

// put hands a retrieved message to the committer, blocking while too many
// bytes wait for their commit.
func (c *committer) put(f *fetchedMsg) error {
	f.weight = max(1, min(int64(len(f.raw)), bufferMaxBytes))
	if err := c.sem.acquire(c.stopped, f.weight); err != nil {
		return c.failure()
	}
	select {
	case c.in <- f:
		return nil
	case <-c.stopped.Done():
		c.sem.release(f.weight)
		return c.failure()
	}
}

// fail records the first commit error and stops every worker.
func (c *committer) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.stop()
}

// failure returns the committer's error after it stopped.
func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return errCommitterStopped
}

// close ends the input, waits for every queued message to be committed and
// returns the first commit error.
func (c *committer) close() error {
	close(c.in)
	<-c.done
	c.graceOff()
	c.cancel()
	return c.err
}

// loop commits batches until the input is closed or a commit fails.
func (c *committer) loop() {
	for {
		batch, ticket, closed := c.take()
		if batch == nil {
			return
		}
		err := c.commit(batch, ticket)
		c.finished(ticket)
		if err != nil {
			c.fail(err)
			return
		}
		if closed {
			return
		}
	}
}

// take waits for a message, then takes whatever else has arrived, up to
// the commit limits, and numbers the batch: batches are numbered in the
// order of their messages, which is the order their transactions commit
// in. It returns a nil batch when the input is closed or the committer
// stopped; closed reports that the input ended after this batch.
func (c *committer) take() (batch []*fetchedMsg, ticket uint64, closed bool) {
	c.takeMu.Lock()
	defer c.takeMu.Unlock()
	select {
	case f, ok := <-c.in:
		if !ok {
			return nil, 0, true
		}
		batch = []*fetchedMsg{f}
	case <-c.stopped.Done():
		return nil, 0, true
	}
	size := len(batch[0].raw)
drain:
	for len(batch) < commitMaxMsgs && size < commitMaxBytes {
		select {
		case g, ok := <-c.in:
			if !ok {
				closed = true
				break drain
			}
			batch = append(batch, g)
			size += len(g.raw)
		default:
			break drain
		}
	}
	ticket = c.nextTicket
	c.nextTicket++
	return batch, ticket, closed
}

// awaitTurn waits until every batch numbered before ticket has finished
// (committed or failed). commit calls it between staging a batch and
// committing it.
func (c *committer) awaitTurn(ticket uint64) error {
	for {
		c.turnMu.Lock()
		turn, changed := c.turn, c.turnChanged
		c.turnMu.Unlock()
		if turn == ticket {
			return nil
		}
		select {
		case <-changed:
		case <-c.stopped.Done():
			return c.failure()
		}
	}
}

// finished records that batch ticket is done and lets the next batches
// whose predecessors are all done take their turn.
func (c *committer) finished(ticket uint64) {
	c.turnMu.Lock()
	defer c.turnMu.Unlock()
	c.doneTickets[ticket] = true
	for c.doneTickets[c.turn] {
		delete(c.doneTickets, c.turn)
		c.turn++
	}
	close(c.turnChanged)
	c.turnChanged = make(chan struct{})
}

// commit makes one batch durable: new messages are staged, then, in the
// batch's turn, committed with their ledger rows in one transaction; then
// messages whose content is already durable are recorded as duplicates.
// Twins are kept for recordTwins.
func (c *committer) commit(batch []*fetchedMsg, ticket uint64) error {
	now := c.p.now()
	defer func() {
		for _, f := range batch {
			c.sem.release(f.weight)
		}
	}()
	for _, f := range batch {
		f.digest = contentDigest(f.raw)
		c.cl.classify(f)
	}
	var (
		ds     []store.Delivery
		proven []provenMsg
		twins  []*fetchedMsg
		bytes  int64
		fresh  = msgState{Stored: true, StoredAt: now}
	)
	for _, f := range batch {
		if f.kind != fetchedNew {
			continue
		}
		ds = append(ds, store.Delivery{
			Account:      c.a.Name,
			UIDL:         f.m.id,
			Digest:       f.digest,
			User:         c.a.User,
			Folder:       c.a.folder(),
			Raw:          f.raw,
			InternalDate: internalDate(f.raw, now),
		})
		proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: fresh})
		bytes += int64(len(f.raw))
	}
	if len(ds) > 0 {
		if leaseLost(c.pass) {
			return accountErr(c.a, "deliver", fmt.Errorf("not staged: %w", errLeaseLost))
		}
		staged, err := c.p.sink.Stage(c.ctx, ds)
		if err != nil {
			return accountErr(c.a, "deliver", err)
		}
		defer staged.Release()
		if err := c.awaitTurn(ticket); err != nil {
			return accountErr(c.a, "deliver", fmt.Errorf("waiting for its turn: %w", err))
		}
		if leaseLost(c.pass) {
			return accountErr(c.a, "deliver", fmt.Errorf("not committed: %w", errLeaseLost))
		}
		if err := c.ctx.Err(); err != nil {
			return accountErr(c.a, "deliver", fmt.Errorf("not committed: %w", err))
		}
		if _, err := staged.Commit(c.ctx); err != nil {
			return accountErr(c.a, "deliver", err)
		}
		c.cl.committedClaims(batch)
	}
	for _, f := range batch {
		switch f.kind {
		case fetchedKnown:
			proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: stateOf([]store.LedgerKey{f.row})})
		case fetchedTwin:
			twins = append(twins, &fetchedMsg{m: f.m, digest: f.digest, dupOf: f.dupOf, claim: f.claim})
		case fetchedDuplicate:
			if f.renumbered {
				// Before the duplicate is recorded, so that the suspicion
				// survives a crash between the two.
				if err := c.cl.distrustKnown(c.ctx, c.p.sink, c.a.Name); err != nil {
					return accountErr(c.a, "mark gone", err)
				}
			}
			if len(f.moved) > 0 {
				if err := c.p.sink.MarkGone(c.ctx, c.a.Name, f.moved); err != nil {
					return accountErr(c.a, "mark gone", err)
				}
			}
			if err := c.p.sink.RecordSkipped(c.ctx, c.a.Name, f.m.id, f.digest, f.m.item.Size, reasonDuplicatePrefix+f.dupOf); err != nil {
				return accountErr(c.a, "record duplicate", err)
			}
			proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: fresh})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proven = append(c.proven, proven...)
	c.twins = append(c.twins, twins...)
	c.res.Fetched += len(ds)
	c.res.Bytes += bytes
	c.handled += len(batch)
	if c.progress != nil {
		c.progress(c.handled, c.total)
	}
	return nil
}

// recordTwins records, once every batch has finished, the twins whose
// first was delivered: a twin's first may be in a later batch (batches
// are classified as their digests are ready, not in order), so this waits
// for the end of the pass's commits. A twin whose first was not stored is
// left for the next pass.
func (c *committer) recordTwins(ctx context.Context) error {
	now := c.p.now()
	for _, f := range c.twins {
		if !c.cl.isCommitted(f.claim) {
			continue
		}
		if err := c.p.sink.RecordSkipped(ctx, c.a.Name, f.m.id, f.digest, f.m.item.Size, reasonDuplicatePrefix+f.dupOf); err != nil {
			return accountErr(c.a, "record duplicate", err)
		}
		c.proven = append(c.proven, provenMsg{m: f.m, digest: f.digest, state: msgState{Stored: true, StoredAt: now}})
	}
	c.twins = nil
	return nil
}

// byteBudget bounds the bytes retrieved but not yet committed (a weighted
// semaphore for one producer).
type byteBudget struct {
	mu      sync.Mutex
	avail   int64
	changed chan struct{} // closed when bytes are released
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{avail: n, changed: make(chan struct{})}
}

// acquire takes n bytes, waiting for releases; it fails when ctx ends.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.avail >= n {
			b.avail -= n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release returns n bytes.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.avail += n
	close(b.changed)
	b.changed = make(chan struct{})
}
