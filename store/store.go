package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Store. The zero value is valid.
type Options struct {
	// Logger receives the store's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MetaCacheEntries and MetaCacheBytes bound the in-memory cache of
	// decoded message metadata (envelope and structure) that Meta keeps:
	// at most that many messages and about that many bytes. Zero means
	// DefaultMetaCacheEntries / DefaultMetaCacheBytes; a negative value
	// disables the cache.
	MetaCacheEntries int
	MetaCacheBytes   int64
	// ReadOnly opens the store for reading only, alongside the Store (in
	// this process or another, e.g. `popbridge serve`) that may hold the
	// directory: Open then takes no lock, creates nothing (neither the
	// directory nor the database), runs no migration and opens no writer
	// connection. It fails if the database does not exist or its schema
	// version is not exactly this program's (a read-only store cannot
	// migrate). Reads see every transaction committed by any writer, up to
	// the moment each read method begins. Every write method returns an
	// error wrapping ErrReadOnly, and Subscribe never delivers a Change
	// (changes are published only by the Store that writes them).
	ReadOnly bool
}

// Store is the durable multi-user mail store. It is safe for concurrent use.
// See the package documentation for its model, durability and locking rules.
type Store struct {
	log *slog.Logger
	now func() time.Time

	wdb *sql.DB // writer pool: exactly one connection; nil when readOnly
	rdb *sql.DB // reader pool
	// wstmts and rstmts are the hot statements kept prepared on wdb and
	// rdb (stmtcache.go); wstmts is nil when readOnly.
	wstmts, rstmts *stmtCache

	// lock is the data directory's exclusive lock, held until Close; nil
	// when readOnly.
	lock *dirLock
	// readOnly is Options.ReadOnly: no lock, no writer pool, writes refused.
	readOnly bool

	// wmu serialises write transactions and the publication of their
	// changes: a writer holds it from BEGIN until the transaction's changes
	// are queued to every subscriber (publish never waits for one). Only
	// the caller holding the writer role of wq takes it, and Close.
	wmu    sync.Mutex
	closed atomic.Bool
	// wq is the writer's queue: concurrent writes are grouped into one
	// transaction (group.go).
	wq writeQueue

	// feed publishes committed changes to subscribers (feed.go).
	feed *Feed

	// metaCache holds decoded message metadata by MessageID; nil when
	// disabled.
	metaCache *metaCache

	// blobs holds the message bytes and texts (see blobs.go).
	blobs *blobStore
	// compactMu serialises compaction runs. compactor and indexer are
	// the background jobs (nil when not started: read-only, or tests).
	compactMu sync.Mutex
	compactor *Background
	indexer   *Background

	// damage records damaged reads, database corruption and the pack
	// check's findings (damage.go).
	damage damage
}

// Open opens (creating if needed) the store in dir: the directory is created
// with mode 0700 and the database file dir/popbridge.db with mode 0600.
// Pending schema migrations are applied before Open returns.
//
// One Store at a time may have a directory open: Open takes an exclusive,
// non-blocking advisory lock on dir/popbridge.lock (flock, mode 0600, holding
// the holder's pid) and keeps it until Close. While another Store holds it,
// in this process or another, Open fails at once with an error wrapping
// ErrLocked that names the directory and, when known, the holder's pid. The
// kernel drops the lock when its holder dies, so a crash never leaves the
// directory locked. (On systems without flock only Stores of the same
// process are excluded.)
//
// With opts.ReadOnly, Open does none of the above: see Options.ReadOnly.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	s := &Store{
		log:      opts.Logger,
		now:      opts.Now,
		feed:     NewFeed(),
		readOnly: opts.ReadOnly,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hooks := hooksFor(dir)
	if hooks != nil && hooks.feedQueue > 0 {
		s.feed.maxQueue = hooks.feedQueue
	}
	if s.now == nil {
		s.now = time.Now
	}
	entries, bytes := opts.MetaCacheEntries, opts.MetaCacheBytes
	if entries == 0 {
		entries = DefaultMetaCacheEntries
	}
	if bytes == 0 {
		bytes = DefaultMetaCacheBytes
	}
	s.metaCache = newMetaCache(entries, bytes)
	if s.readOnly {
		rdb, err := openSQLiteReadOnly(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("open store read-only: %w", err)
		}
		s.rdb, s.rstmts = rdb, newStmtCache(rdb)
		if err := s.checkSchema(ctx); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("open store read-only: %w", err)
		}
		if s.blobs, err = openBlobs(dir, true, 0, s.log); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("open store read-only: %w", err)
		}
		if err := s.notePackProblems(ctx); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("open store read-only: %w", err)
		}
		return s, nil
	}
	lock, err := lockDir(dir, s.log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	wdb, rdb, err := openSQLite(ctx, dir)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("open store: %w", s.classify(err))
	}
	s.wdb, s.rdb, s.lock = wdb, rdb, lock
	s.wstmts, s.rstmts = newStmtCache(wdb), newStmtCache(rdb)
	fail := func(err error) (*Store, error) {
		wdb.Close()
		rdb.Close()
		if s.blobs != nil {
			s.blobs.close()
		}
		lock.release()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		return fail(err)
	}
	var packMax int64
	if hooks != nil {
		packMax = hooks.packMaxBytes
	}
	if s.blobs, err = openBlobs(dir, false, packMax, s.log); err != nil {
		return fail(err)
	}
	if err := s.notePackProblems(ctx); err != nil {
		return fail(err)
	}
	if err := s.migrateLegacyBodies(ctx); err != nil {
		return fail(err)
	}
	s.startCompactor(hooks)
	if hooks == nil || !hooks.noIndexer {
		s.startIndexer(hooks)
	}
	return s, nil
}

// compactQuiet is how long after the last expunge the compactor runs.
const compactQuiet = 2 * time.Second

// startCompactor starts the background compactor: it runs at Open and
// after commits that deleted messages.
func (s *Store) startCompactor(hooks *testHooks) {
	s.compactor = StartBackground(compactQuiet, 0, func(ctx context.Context) {
		n, err := s.compact(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("compact packs", "err", err)
		}
		if hooks != nil && hooks.onCompacted != nil {
			hooks.onCompacted(n, err)
		}
	})
}

// ReleaseMemory empties the store's in-memory caches (the decoded message
// metadata), which refill as reads need them. For a server that has no
// client left: what a client's sync cached is of no use to the next one
// soon enough to be worth its memory.
func (s *Store) ReleaseMemory() {
	s.metaCache.reset()
}

// Close waits for the write in progress, if any, closes the database and
// releases the data directory's lock. Every method called after Close
// returns ErrClosed.
func (s *Store) Close() error {
	// The compactor and the indexer write through s.write: they are
	// stopped before the writer lock is taken.
	s.compactor.Close()
	s.indexer.Close()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.feed.Close()
	err := errors.Join(s.rstmts.close(), s.wstmts.close())
	err = errors.Join(err, s.rdb.Close())
	if s.wdb != nil {
		err = errors.Join(err, s.wdb.Close())
	}
	err = errors.Join(err, s.blobs.close())
	// The lock is released last, once every connection is closed.
	return errors.Join(err, s.lock.release())
}

// LockHolder reports, for an error wrapping ErrLocked returned by Open, the
// data directory and the pid of the process holding it (0 when unknown).
// ok is false for any other error.
func LockHolder(err error) (dir string, pid int, ok bool) {
	var le *lockedError
	if !errors.As(err, &le) {
		return "", 0, false
	}
	return le.dir, le.pid, true
}

// writable fails with ErrClosed after Close and with ErrReadOnly on a
// read-only Store. Every write method calls it first, before validating or
// parsing its arguments.
func (s *Store) writable(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if s.readOnly {
		return fmt.Errorf("%s: %w", op, ErrReadOnly)
	}
	return nil
}

type originKey struct{}

// WithOrigin returns a context that tags the writes made with it: every
// Change they cause carries origin in Change.Origin, so a session can
// recognise its own changes.
func WithOrigin(ctx context.Context, origin any) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// Subscribe registers fn to receive every Change committed from now on, in
// commit order, on the subscription's own goroutine (see Feed.Subscribe):
// a slow subscriber delays no write. Subscription.Sync waits until fn has
// seen everything committed before the call; Subscription.Cancel ends the
// subscription. A read-only Store never delivers a Change.
func (s *Store) Subscribe(fn func(Change)) *Subscription {
	return s.feed.Subscribe(fn)
}

// publish hands changes to the feed. Called with wmu held, so the feed
// receives transactions in commit order; it only queues them.
func (s *Store) publish(origin any, changes []Change) {
	s.feed.Publish(origin, changes)
}

// writeTx is a write transaction plus the changes it will publish.
type writeTx struct {
	*sql.Tx
	ctx     context.Context
	changes []Change
	// cache holds statements prepared on the writer's connection for
	// the store's life; stmts those of this transaction.
	cache *stmtCache
	stmts map[string]*sql.Stmt
	// deletedMsgs are the messages the transaction deleted, dropped from
	// the metadata cache once it commits; newMsgs the messages it stored,
	// cached (with newInfos) once it commits.
	deletedMsgs []MessageID
	newMsgs     []MessageID
	newInfos    []*messageInfo
	// afterCommit runs, in order, once the transaction has committed:
	// for in-memory state that must not run ahead of the database.
	afterCommit []func()
}

func (w *writeTx) emit(c Change) { w.changes = append(w.changes, c) }

// stmt returns query prepared for this transaction, from the writer's
// statement cache: statements run per message of a batch, or by every poll,
// are parsed once per connection. They close with the transaction.
func (w *writeTx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	var (
		st  *sql.Stmt
		err error
	)
	if w.cache != nil {
		st, err = w.cache.inTx(w.ctx, w.Tx, query)
	} else {
		st, err = w.PrepareContext(w.ctx, query)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if w.stmts == nil {
		w.stmts = map[string]*sql.Stmt{}
	}
	w.stmts[query] = st
	return st, nil
}

// write runs fn in one write transaction under the writer lock, commits, and
// publishes fn's changes. The transaction runs without ctx's cancellation
// once started (a commit must not be torn between "done" and "reported"):
// ctx is checked before BEGIN only. Concurrent writes share one transaction
// and one commit (group.go), each all or nothing; fn may therefore run more
// than once, and must start from scratch each time.
func (s *Store) write(ctx context.Context, op string, fn func(tx *writeTx) error) error {
	return s.submit(ctx, op, 1, fn)
}

// read runs fn in one read transaction: everything fn reads comes from the
// same database snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, s.classify(err))
	}
	err = fn(tx)
	tx.Rollback()
	// Statements the reads asked to keep are prepared now that this
	// transaction's connection is back in the pool (stmtcache.go).
	s.rstmts.prepareWanted(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, s.classify(err))
	}
	return nil
}

// query runs a cached read statement (stmtcache.go) in tx: for the reads
// that run on every poll.
func (s *Store) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, err := s.rstmts.inTx(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// timeLayout is how times are stored: RFC 3339 with fixed-width
// nanoseconds, so that times stored in UTC (ledger, status) compare
// correctly as text; INTERNALDATE keeps its zone offset.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func fmtTime(t time.Time) string { return t.Format(timeLayout) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t, nil
}

func parseNullTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}
