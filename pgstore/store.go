package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/popbridge/popbridge/store"
)

// Staged is a batch of deliveries prepared by [Store.Stage] and not yet
// committed: store.Staged, the stage-then-commit API both backends share.
type Staged = store.Staged

// ErrStagedDone is returned by Staged.Commit called after a successful
// Commit or after Release: store.ErrStagedDone.
var ErrStagedDone = store.ErrStagedDone

// ErrUnavailable is wrapped by the errors of calls that failed because the
// database could not be reached or the connection to it was lost; the
// call may be retried once it is back. It is store.ErrUnavailable, so
// front ends can test for it without knowing the backend.
var ErrUnavailable = store.ErrUnavailable

// Options configures a Store. The zero value is valid but for the DSN,
// which [Open] takes separately.
type Options struct {
	// Logger receives the store's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock for the times the store records (ledger, status,
	// INTERNALDATE of APPEND without a date); nil means time.Now. Times are
	// kept to the microsecond. Leases use the database's clock instead.
	Now func() time.Time
	// NodeName names this node in leases; "" means the host name.
	NodeName string
	// MaxConns bounds the connection pool; 0 means the DSN's
	// pool_max_conns, or 10. The change feed's listener uses one more
	// connection.
	MaxConns int32
	// MetaCacheEntries bounds the per-node cache of decoded message
	// metadata (envelope and structure) that Meta keeps: at most that
	// many messages. Zero means DefaultMetaCacheEntries; a negative value
	// disables the cache.
	MetaCacheEntries int
	// ChangeRetention is how long rows of the change feed are kept for
	// catch-up after a lost notification or a reconnect; 0 means 24 hours.
	ChangeRetention time.Duration
	// PollInterval is how often the change feed is read without a
	// notification (a safety net: notifications are the fast path); 0
	// means 2 seconds.
	PollInterval time.Duration
	// DisableIndexer leaves delivered messages unindexed: no background
	// indexer runs on this Store (reads parse such messages on demand;
	// another node's indexer may still index them). For tests and one-off
	// tools.
	DisableIndexer bool
	// WriteTimeout bounds one write transaction once it has begun (it is
	// not cut short by the caller's context, so that a commit is not torn
	// between done and reported); 0 means 60 seconds.
	WriteTimeout time.Duration
	// ReadOnly opens the store for reading only, beside the nodes that
	// serve it (the status, check, export and provider-users commands):
	// Open runs no migration, starts no change feed and no indexer, and
	// fails unless the database holds a popbridge schema of exactly this
	// program's version (an error wrapping fs.ErrNotExist when it holds
	// none: no store yet). Its connections are read-only to PostgreSQL
	// (default_transaction_read_only), every write method returns an error
	// wrapping store.ErrReadOnly, and Subscribe never delivers a Change.
	// Without it, a `popbridge status` of a newer version would migrate
	// the schema under the nodes still running the older one.
	ReadOnly bool
}

// Store is the mail store on PostgreSQL. It is safe for concurrent use, by
// any number of Stores in any number of processes on one database.
type Store struct {
	log     *slog.Logger
	now     func() time.Time
	node    string
	pool    *pgxpool.Pool
	host    string
	writeTO time.Duration
	closed  atomic.Bool
	closeMu sync.Mutex
	// readOnly is Options.ReadOnly.
	readOnly bool
	// feed is nil for a read-only Store.
	feed    *feed
	retries atomic.Int64
	damaged atomic.Int64
	// metaCache holds decoded message metadata by MessageID; nil when
	// disabled.
	metaCache *metaCache
	// indexer indexes delivered messages in the background (index.go);
	// nil when Options.DisableIndexer.
	indexer *store.Background
	// bufs keeps Bodies' buffers from one call to the next (bodybuf.go).
	bufs bodyPool
}

// defaultPort is PostgreSQL's port, for messages naming the server.
const defaultPort = 5432

// Open connects to the database dsn (a postgres:// URL or a key=value
// connection string), applies pending schema migrations (one node at a
// time: see migrate.go) and starts the change feed's listener. An
// unreachable database fails Open with an error that names the host and
// port (never the password) and wraps ErrUnavailable.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from the connection string it quotes.
		return nil, fmt.Errorf("open store: parse postgres dsn: %w", err)
	}
	s := &Store{log: opts.Logger, now: opts.Now, node: opts.NodeName, writeTO: opts.WriteTimeout}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.node == "" {
		if s.node, err = os.Hostname(); err != nil || s.node == "" {
			return nil, fmt.Errorf("open store: node name: the host name is unknown (%v); set one", err)
		}
	}
	s.metaCache = newMetaCache(opts.MetaCacheEntries)
	if s.writeTO <= 0 {
		s.writeTO = 60 * time.Second
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = 10
	}
	cfg.ConnConfig.BuildFrontend = bufferedFrontend // readbuf.go
	if opts.ReadOnly {
		// PostgreSQL itself refuses any write on these connections.
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	port := cfg.ConnConfig.Port
	if port == 0 {
		port = defaultPort
	}
	s.host = net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(port)))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: postgres at %s: %w", s.host, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: postgres at %s: %w: %w", s.host, ErrUnavailable, err)
	}
	s.pool = pool
	if opts.ReadOnly {
		s.readOnly = true
		if err := s.checkSchema(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("open store read-only: postgres at %s: %w", s.host, s.classify(err))
		}
		return s, nil
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: postgres at %s: %w", s.host, s.classify(err))
	}
	f, err := startFeed(ctx, s, cfg.ConnConfig, opts.ChangeRetention, opts.PollInterval)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: postgres at %s: %w", s.host, s.classify(err))
	}
	s.feed = f
	if !opts.DisableIndexer {
		s.startIndexer()
	}
	return s, nil
}

// Close stops the change feed and closes the connections. Every method
// called after Close returns an error wrapping store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.indexer.Close()
	if s.feed != nil {
		s.feed.close()
	}
	s.pool.Close()
	return nil
}

// NodeName returns the name this Store uses in leases.
func (s *Store) NodeName() string { return s.node }

// Health reports whether the database answers (within 2 seconds) and the
// change feed's listener is connected.
func (s *Store) Health() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres at %s: %w: %w", s.host, ErrUnavailable, err)
	}
	if s.feed == nil {
		return nil // read-only: no feed
	}
	return s.feed.health()
}

// DamageStats returns, in Messages, how many reads since Open failed
// because the database reported damaged data (SQLSTATE class XX, e.g. a
// page failing its checksum); Texts is always zero (the SQLite store's
// search-text records). Such a read fails as a whole: `popbridge verify`
// finds the messages concerned.
func (s *Store) DamageStats() store.DamageStats { return store.DamageStats{Messages: s.damaged.Load()} }

// ConflictRetries returns how many write transactions were tried again
// since Open after a conflict with a concurrent one (a figure for
// metrics: a steadily high rate means contended mailboxes).
func (s *Store) ConflictRetries() int64 { return s.retries.Load() }

// querier is what both a transaction and the pool offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// wtx is a write transaction plus the changes it will publish.
type wtx struct {
	pgx.Tx
	ctx     context.Context
	changes []store.Change
}

func (w *wtx) emit(c store.Change) { w.changes = append(w.changes, c) }

// maxAttempts bounds the retries of a write transaction that failed on a
// conflict with another one (deadlock, serialization failure, a unique or
// foreign key violation from a concurrent insert): each attempt starts
// over and sees what the other transaction committed.
const maxAttempts = 10

// write runs fn in one write transaction (READ COMMITTED; fn locks the
// rows it depends on), records and announces fn's changes and commits.
// Once begun, the transaction runs without ctx's cancellation, bounded by
// Options.WriteTimeout.
func (s *Store) write(ctx context.Context, op string, fn func(w *wtx) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if s.readOnly {
		return fmt.Errorf("%s: %w", op, store.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	origin := store.OriginOf(ctx)
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTO)
	defer cancel()
	var err error
	for attempt := 1; ; attempt++ {
		err = s.writeOnce(tctx, origin, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) {
			break
		}
		s.retries.Add(1)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, s.classify(err))
	}
	return nil
}

func (s *Store) writeOnce(ctx context.Context, origin any, fn func(w *wtx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	w := &wtx{Tx: tx, ctx: ctx}
	if err := fn(w); err != nil {
		return err
	}
	seqs, err := s.feed.record(w)
	if err != nil {
		return err
	}
	s.feed.setOrigins(seqs, origin)
	if err := tx.Commit(ctx); err != nil {
		s.feed.dropOrigins(seqs)
		return fmt.Errorf("commit: %w", err)
	}
	if len(seqs) > 0 {
		s.feed.poke()
		s.feed.waitPublished(ctx, seqs[len(seqs)-1])
	}
	return nil
}

// read runs fn in one read-only transaction: everything fn reads comes
// from the same snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, s.classify(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		if isDataCorrupt(err) {
			s.damaged.Add(1)
			s.log.Error("the database reported damaged data (run popbridge verify)", "op", op, "err", err)
		}
		return fmt.Errorf("%s: %w", op, s.classify(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: %w", op, s.classify(err))
	}
	return nil
}

// SQLSTATE codes the store treats specially.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// retryable reports whether err is a conflict with a concurrent
// transaction that a new attempt resolves.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case codeUniqueViolation, codeForeignKeyViolation, codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return false
}

// classify wraps ErrUnavailable into errors that come from a database that
// cannot be reached or a lost connection. Store sentinels and errors the
// server answered pass through.
func (s *Store) classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01..57P03: the server is
		// shutting down or starting.
		if pe.Code[:2] == "08" || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" {
			return fmt.Errorf("postgres at %s: %w: %w", s.host, ErrUnavailable, err)
		}
		if pe.Code == "25006" { // read_only_sql_transaction: a read-only Store's write
			return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) || isClosedConn(err) {
		return fmt.Errorf("postgres at %s: %w: %w", s.host, ErrUnavailable, err)
	}
	return err
}

// isClosedConn reports an error of a connection that was closed under the
// call (pgx reports those without a net.Error in the chain).
func isClosedConn(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, st := range []string{"conn closed", "unexpected EOF", "connection reset", "broken pipe", "conn busy"} {
		if strings.Contains(strings.ToLower(err.Error()), st) {
			return true
		}
	}
	return false
}

// micro truncates t to what timestamptz keeps.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// nullTime is nil for the zero time, else t in UTC to the microsecond.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micro(t).UTC()
}

// fromNull turns a NULL timestamp into the zero time.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// ReleaseMemory empties the node's metadata cache (it refills from the
// database on demand); the IMAP server calls it when its clients are gone.
func (s *Store) ReleaseMemory() { s.metaCache.reset() }
