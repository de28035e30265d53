package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group commit. Every write of the store (a staged batch's Commit, a ledger
// or status update, a flag change, ...) is a request in the writer's queue.
// The first caller to find no writer at work becomes the writer: it takes
// the queued requests (up to maxGroupWeight) and runs them in ONE
// transaction, each in its own SAVEPOINT, with one commit and so one fsync
// of the WAL for all of them; then it hands the writer role to a waiting
// caller whose request is still queued. So when many polls commit at once,
// the cost of a durable commit is shared instead of paid by each in turn.
//
// Each request keeps its own semantics:
//   - all or nothing: a request whose fn fails is rolled back to its
//     savepoint and gets its error; the others of the group commit;
//   - durable when it returns: a caller learns its result only after the
//     group's COMMIT has returned;
//   - one caller's writes stay in its order (it issues the next one after
//     the previous returned), and the change feed receives each request's
//     changes in the order the requests ran in the transaction, which is
//     commit order;
//   - a failure that is the transaction's rather than one request's (a
//     full disk, an I/O error, a failed COMMIT, a savepoint SQLite has
//     dropped with the transaction) rolls back the whole group, and every
//     request in it is run again alone, in its own transaction, exactly as
//     without grouping: a full disk gives
//     each the error it would have got alone, and a large batch that does
//     not fit fails without taking small ones with it.
//
// Because of that last rule a write's fn may run more than once (only the
// last run's transaction commits): it must start from scratch each time,
// assigning rather than appending to variables it shares with its caller,
// and leave in-memory state of the Store alone until the commit
// (writeTx.afterCommit).
//
// Urgent requests (someone waits for them: an IMAP session's writes, tagged
// with WithOrigin, and contexts marked WithUrgent, e.g. the fetch a login
// asked for) go ahead of the others in the queue, so they wait for at most
// the group in progress, not for every background commit queued before
// them.

// maxGroupWeight caps the work in one group: the messages of the batches
// (a write that names no records weighs 1). The cap bounds how long an
// urgent request waits for the group in progress, and how much work a
// group failure makes run again.
const maxGroupWeight = 1024

type urgentKey struct{}

// WithUrgent returns a context whose writes go ahead of queued background
// writes in the store's writer queue: someone is waiting for them (an IMAP
// login's first fetch, a refresh a client asked for). Writes made with a
// WithOrigin context are urgent already.
func WithUrgent(ctx context.Context) context.Context {
	return context.WithValue(ctx, urgentKey{}, true)
}

// isUrgentWrite reports whether a write made with ctx goes ahead of
// background ones.
func isUrgentWrite(ctx context.Context) bool {
	return ctx.Value(urgentKey{}) != nil || ctx.Value(originKey{}) != nil
}

// writeReq is one write in the writer's queue.
type writeReq struct {
	ctx    context.Context
	op     string
	fn     func(*writeTx) error
	weight int

	// Set by the writer, read by the caller: under writeQueue.mu.
	done     bool
	err      error
	panicked any // a panic of fn, re-raised in the caller
	hasPanic bool
}

// writeQueue is the writer's queue of requests and the writer role.
type writeQueue struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when requests finish or the role is free
	writing bool      // a caller holds the writer role
	urgent  []*writeReq
	normal  []*writeReq

	// groups counts the transactions committed for more than one
	// request, grouped the requests they committed (for tests and
	// benchmarks: whether grouping happened at all).
	groups, grouped atomic.Int64
}

// take removes and returns the next group: urgent requests first, each
// list in arrival order, up to maxGroupWeight (at least one request).
// Called with mu held.
func (q *writeQueue) take() []*writeReq {
	var g []*writeReq
	weight := 0
	for _, l := range []*[]*writeReq{&q.urgent, &q.normal} {
		for len(*l) > 0 {
			r := (*l)[0]
			if len(g) > 0 && weight+r.weight > maxGroupWeight {
				return g
			}
			g = append(g, r)
			weight += r.weight
			(*l)[0] = nil
			*l = (*l)[1:]
		}
	}
	return g
}

// submit queues a write of weight (see maxGroupWeight) and returns when it
// is committed or has failed. See write.
func (s *Store) submit(ctx context.Context, op string, weight int, fn func(*writeTx) error) error {
	if s.readOnly {
		return fmt.Errorf("%s: %w", op, ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	r := &writeReq{ctx: ctx, op: op, fn: fn, weight: max(1, weight)}
	q := &s.wq
	q.mu.Lock()
	if q.cond.L == nil {
		q.cond.L = &q.mu
	}
	if isUrgentWrite(ctx) {
		q.urgent = append(q.urgent, r)
	} else {
		q.normal = append(q.normal, r)
	}
	for !r.done {
		if q.writing {
			q.cond.Wait()
			continue
		}
		// The role is free and r is still queued: r's caller writes,
		// group after group, until r is done.
		q.writing = true
		for !r.done {
			g := q.take()
			q.mu.Unlock()
			s.runGroupOrRelease(g)
			q.mu.Lock()
			for _, x := range g {
				x.done = true
			}
			q.cond.Broadcast()
		}
		q.writing = false
		q.cond.Broadcast()
	}
	q.mu.Unlock()
	if r.hasPanic {
		panic(r.panicked)
	}
	return r.err
}

// runGroupOrRelease is runGroup, except that a panic outside the writes'
// own functions (those are recovered in runFn) does not leave the writer
// role taken for ever: g's requests fail, the role is released, and the
// panic goes on in this caller.
func (s *Store) runGroupOrRelease(g []*writeReq) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		q := &s.wq
		q.mu.Lock()
		for _, x := range g {
			if !x.hasPanic {
				x.err = fmt.Errorf("%s: store writer panicked, outcome unknown: %v", x.op, p)
			}
			x.done = true
		}
		q.writing = false
		q.cond.Broadcast()
		q.mu.Unlock()
		panic(p)
	}()
	s.runGroup(g)
}

// runGroup runs g, under the writer lock, and sets every request's err.
func (s *Store) runGroup(g []*writeReq) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Once no transaction holds the writer's connection, the statements
	// the group asked to keep are prepared (stmtcache.go).
	defer s.wstmts.prepareWanted(context.Background())
	live := g[:0:0]
	for _, r := range g {
		switch {
		case s.closed.Load():
			r.err = fmt.Errorf("%s: %w", r.op, ErrClosed)
		case r.ctx.Err() != nil:
			r.err = fmt.Errorf("%s: %w", r.op, r.ctx.Err())
		default:
			live = append(live, r)
		}
	}
	if len(live) > 1 {
		live = s.runTogether(live)
	}
	for _, r := range live {
		s.runAlone(r)
	}
}

// runFn runs r.fn in w, turning a panic into r.panicked (re-raised by
// r's caller) and an error.
func runFn(r *writeReq, w *writeTx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.panicked, r.hasPanic = p, true
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return r.fn(w)
}

// runAlone runs r in its own transaction: the store's write path without
// grouping.
func (s *Store) runAlone(r *writeReq) {
	r.panicked, r.hasPanic = nil, false
	tctx := context.WithoutCancel(r.ctx)
	tx, err := s.wdb.BeginTx(tctx, nil)
	if err != nil {
		r.err = fmt.Errorf("%s: begin: %w", r.op, s.classify(err))
		return
	}
	defer tx.Rollback()
	w := &writeTx{Tx: tx, ctx: tctx, cache: s.wstmts}
	if err := runFn(r, w); err != nil {
		r.err = fmt.Errorf("%s: %w", r.op, s.classify(err))
		return
	}
	if err := tx.Commit(); err != nil {
		r.err = fmt.Errorf("%s: commit: %w", r.op, s.classify(err))
		return
	}
	s.committed(r, w)
}

// runTogether runs the requests of g in one transaction, each in a
// savepoint, and commits once. It returns the requests to run again alone
// (none when the group committed): see the package comment above.
func (s *Store) runTogether(g []*writeReq) (again []*writeReq) {
	tx, err := s.wdb.BeginTx(context.Background(), nil)
	if err != nil {
		return g
	}
	defer tx.Rollback()
	var (
		stmts = map[string]*sql.Stmt{}
		ok    []*writeReq
		txs   []*writeTx
	)
	// When the transaction fails as a whole, every request of the group
	// runs again alone, those that had failed on their own too: their
	// failure may have depended on requests that are now rolled back.
	for _, r := range g {
		if _, err := tx.ExecContext(context.Background(), `SAVEPOINT grp`); err != nil {
			return g
		}
		w := &writeTx{Tx: tx, ctx: context.WithoutCancel(r.ctx), cache: s.wstmts, stmts: stmts}
		ferr := runFn(r, w)
		if ferr == nil {
			if _, err := tx.ExecContext(context.Background(), `RELEASE grp`); err != nil {
				return g
			}
			ok, txs = append(ok, r), append(txs, w)
			continue
		}
		cerr := s.classify(ferr)
		if errors.Is(cerr, ErrNoSpace) || errors.Is(cerr, ErrDatabaseCorrupt) {
			// Not this request's own failure, or not one to judge
			// inside a shared transaction: alone, it gets what it
			// would have got without grouping.
			return g
		}
		if _, err := tx.ExecContext(context.Background(), `ROLLBACK TO grp`); err != nil {
			return g
		}
		if _, err := tx.ExecContext(context.Background(), `RELEASE grp`); err != nil {
			return g
		}
		r.err = fmt.Errorf("%s: %w", r.op, cerr)
	}
	if err := tx.Commit(); err != nil {
		return g
	}
	for i, r := range ok {
		s.committed(r, txs[i])
	}
	s.wq.groups.Add(1)
	s.wq.grouped.Add(int64(len(g)))
	return nil
}

// committed does what follows a request's commit, in commit order: caches,
// background jobs, its afterCommit functions, and the publication of its
// changes. Called with wmu held.
func (s *Store) committed(r *writeReq, w *writeTx) {
	r.err = nil
	s.metaCache.remove(w.deletedMsgs)
	s.metaCache.add(w.newMsgs, w.newInfos)
	if len(w.deletedMsgs) > 0 {
		s.compactor.Poke()
	}
	for _, f := range w.afterCommit {
		f()
	}
	s.publish(r.ctx.Value(originKey{}), w.changes)
}
