package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// The change feed. A write transaction that changes mail inserts one row
// per store.Change into the changes table and NOTIFYs notifyChannel with
// the last sequence number, after taking feedLockKey as an advisory
// transaction lock: the lock is held until commit, so sequence numbers are
// handed out in commit order and a reader that has seen sequence n has
// seen every committed change before it.
//
// Each Store has a listener (one dedicated connection, LISTENing) and a
// dispatcher. The dispatcher reads the rows after the last sequence it
// delivered and calls the subscribers, in sequence order, on its own
// goroutine: when a notification arrives, when a local commit pokes it,
// after the listener (re)connects (catch-up: notifications sent while it
// was away are lost, the rows are not), and every PollInterval.

const (
	notifyChannel = "popbridge_changes"
	// feedLockKey orders the writers of the change feed.
	feedLockKey int64 = migrationLockKey + 1
	// catchUpBatch is how many changes the dispatcher reads per query.
	catchUpBatch = 1000
	// pruneEvery is how often the dispatcher drops changes older than
	// the retention.
	pruneEvery = 10 * time.Minute
)

// wireChange is the JSON form of a store.Change in the changes table
// (Origin stays in the process that wrote it).
type wireChange struct {
	Kind        store.ChangeKind `json:"k"`
	User        store.UserID     `json:"u"`
	Mailbox     store.MailboxID  `json:"m,omitempty"`
	MailboxName string           `json:"n,omitempty"`
	OldName     string           `json:"o,omitempty"`
	ModSeq      uint64           `json:"s,omitempty"`
	Entries     []store.Entry    `json:"e,omitempty"`
	UIDs        []store.UID      `json:"x,omitempty"`
}

type feed struct {
	s         *Store
	cfg       *pgx.ConnConfig
	retention time.Duration
	interval  time.Duration

	// pub fans the changes out to subscribers, each on its own
	// goroutine (the same Feed the SQLite store publishes through).
	pub *store.Feed

	originMu sync.Mutex
	origins  map[int64]any

	wake chan struct{}
	// last is the sequence of the last change delivered; only the
	// dispatcher goroutine touches it once started.
	last int64

	// published is last as the writers see it: a write returns once the
	// feed has published its changes (waitPublished), so that a
	// subscriber's Sync after a write covers it, as with the SQLite
	// store. advanced is closed and replaced whenever published grows.
	pubMu     sync.Mutex
	published int64
	advanced  chan struct{}

	errMu     sync.Mutex
	listenErr error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startFeed(ctx context.Context, s *Store, cfg *pgx.ConnConfig, retention, interval time.Duration) (*feed, error) {
	if retention <= 0 {
		retention = 24 * time.Hour
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	lc := cfg.Copy()
	if lc.RuntimeParams == nil {
		lc.RuntimeParams = map[string]string{}
	}
	lc.RuntimeParams["application_name"] = "popbridge-listen " + s.node
	f := &feed{s: s, cfg: lc, retention: retention, interval: interval,
		pub: store.NewFeed(), origins: map[int64]any{}, wake: make(chan struct{}, 1),
		listenErr: errors.New("listener not connected yet")}
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM changes`).Scan(&f.last); err != nil {
		return nil, fmt.Errorf("read change feed position: %w", err)
	}
	f.published, f.advanced = f.last, make(chan struct{})
	// The first connection is made here, so that Open fails on a
	// database where LISTEN is impossible (e.g. behind a pooler in
	// transaction mode) and Health is good once Open returns.
	conn, err := f.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("change feed: %w", err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(2)
	go f.listen(fctx, conn)
	go f.dispatch(fctx)
	return f, nil
}

// connect opens the listening connection and LISTENs.
func (f *feed) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, f.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen: %w", err)
	}
	f.setListenErr(nil)
	return conn, nil
}

func (f *feed) close() {
	f.cancel()
	f.wg.Wait()
	f.pub.Close()
}

// setPublished records that every change up to seq has been published,
// waking the writers waiting for it.
func (f *feed) setPublished(seq int64) {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	if seq > f.published {
		f.published = seq
		close(f.advanced)
		f.advanced = make(chan struct{})
	}
}

// publishWait bounds how long a write waits for the feed to publish its
// changes: when the feed cannot read the table, the write (committed)
// returns anyway, and the feed publishes the changes once it can.
const publishWait = 5 * time.Second

// waitPublished waits until the feed has published the change seq (or
// ctx ends, or publishWait passes).
func (f *feed) waitPublished(ctx context.Context, seq int64) {
	timeout := time.NewTimer(publishWait)
	defer timeout.Stop()
	for {
		f.pubMu.Lock()
		done, ch := f.published >= seq, f.advanced
		f.pubMu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		}
	}
}

func (f *feed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feed) health() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.listenErr != nil {
		return fmt.Errorf("postgres at %s: change listener: %w: %w", f.s.host, ErrUnavailable, f.listenErr)
	}
	return nil
}

func (f *feed) setListenErr(err error) {
	f.errMu.Lock()
	f.listenErr = err
	f.errMu.Unlock()
}

// record inserts w's changes into the feed and announces them; it returns
// their sequence numbers, ascending.
func (f *feed) record(w *wtx) ([]int64, error) {
	if len(w.changes) == 0 {
		return nil, nil
	}
	payloads := make([][]byte, len(w.changes))
	for i, c := range w.changes {
		b, err := json.Marshal(wireChange{c.Kind, c.User, c.Mailbox, c.MailboxName, c.OldName, c.ModSeq, c.Entries, c.UIDs})
		if err != nil {
			return nil, fmt.Errorf("encode change: %w", err)
		}
		payloads[i] = b
	}
	if _, err := w.Exec(w.ctx, `SELECT pg_advisory_xact_lock($1)`, feedLockKey); err != nil {
		return nil, fmt.Errorf("lock change feed: %w", err)
	}
	rows, err := w.Query(w.ctx, `INSERT INTO changes (payload)
		SELECT p FROM unnest($1::bytea[]) WITH ORDINALITY AS t(p, i) ORDER BY i RETURNING seq`, payloads)
	if err != nil {
		return nil, fmt.Errorf("record changes: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("record changes: %w", err)
	}
	slices.Sort(seqs)
	if _, err := w.Exec(w.ctx, `SELECT pg_notify($1, $2)`, notifyChannel, fmt.Sprint(seqs[len(seqs)-1])); err != nil {
		return nil, fmt.Errorf("notify changes: %w", err)
	}
	return seqs, nil
}

func (f *feed) setOrigins(seqs []int64, origin any) {
	if origin == nil || len(seqs) == 0 {
		return
	}
	f.originMu.Lock()
	for _, q := range seqs {
		f.origins[q] = origin
	}
	f.originMu.Unlock()
}

func (f *feed) dropOrigins(seqs []int64) {
	f.originMu.Lock()
	for _, q := range seqs {
		delete(f.origins, q)
	}
	f.originMu.Unlock()
}

func (f *feed) takeOrigin(seq int64) any {
	f.originMu.Lock()
	defer f.originMu.Unlock()
	o, ok := f.origins[seq]
	if ok {
		delete(f.origins, seq)
	}
	return o
}

// Subscribe registers fn to receive the changes that the feed delivers
// from then on (every change committed by any node on the database after
// this Store was opened), in commit order, each once, on the
// subscription's own goroutine (see store.Feed.Subscribe: fn may take its
// time and may call the store). A change committed on this node reaches
// fn once the feed has read it back from the changes table, shortly after
// the write returned.
func (s *Store) Subscribe(fn func(store.Change)) *store.Subscription {
	if s.feed == nil {
		// Read-only: a feed of its own that nothing publishes to.
		return store.NewFeed().Subscribe(fn)
	}
	return s.feed.pub.Subscribe(fn)
}

// listen keeps one connection LISTENing, reconnecting with backoff, and
// wakes the dispatcher for every notification and after every connect.
// conn is the first connection, already listening.
func (f *feed) listen(ctx context.Context, conn *pgx.Conn) {
	defer f.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		err := f.wait(ctx, conn)
		conn.Close(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return
		}
		f.setListenErr(err)
		f.s.log.Warn("change listener lost its connection; reconnecting", "err", err)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			if conn, err = f.connect(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			f.setListenErr(err)
		}
		backoff = 50 * time.Millisecond
	}
}

// wait wakes the dispatcher once (for what was committed while no
// connection listened) and then for every notification, until conn fails.
func (f *feed) wait(ctx context.Context, conn *pgx.Conn) error {
	f.poke()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		f.poke()
	}
}

// dispatch delivers changes whenever woken, and every interval.
func (f *feed) dispatch(ctx context.Context) {
	defer f.wg.Done()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	lastPrune := time.Time{}
	var lastLog time.Time
	// After a failed read (the database restarting, a pooled connection
	// that died with it), the feed is read again soon, backing off, not
	// only at the next notification or tick.
	var retry <-chan time.Time
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		case <-retry:
		}
		retry = nil
		if err := f.catchUp(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if time.Since(lastLog) > 10*time.Second {
				f.s.log.Warn("read change feed", "err", err)
				lastLog = time.Now()
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, f.interval)
			continue
		}
		backoff = 50 * time.Millisecond
		if time.Since(lastPrune) > pruneEvery {
			lastPrune = time.Now()
			if _, err := f.prune(ctx); err != nil && ctx.Err() == nil {
				f.s.log.Warn("prune change feed", "err", err)
			}
		}
	}
}

// prune drops the changes older than the retention (by the database's
// clock) and returns how many.
func (f *feed) prune(ctx context.Context) (int64, error) {
	tag, err := f.s.pool.Exec(ctx, `DELETE FROM changes WHERE committed < now() - make_interval(secs => $1)`, f.retention.Seconds())
	return tag.RowsAffected(), err
}

// catchUp delivers every change after f.last.
func (f *feed) catchUp(ctx context.Context) error {
	for {
		rows, err := f.s.pool.Query(ctx, `SELECT seq, payload FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, f.last, catchUpBatch)
		if err != nil {
			return err
		}
		type row struct {
			seq     int64
			payload []byte
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.seq, &x.payload)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, r := range batch {
			var wc wireChange
			if err := json.Unmarshal(r.payload, &wc); err != nil {
				f.s.log.Error("undecodable change in the feed; skipped", "seq", r.seq, "err", err)
			} else {
				f.deliver(store.Change{Kind: wc.Kind, User: wc.User, Mailbox: wc.Mailbox, MailboxName: wc.MailboxName,
					OldName: wc.OldName, ModSeq: wc.ModSeq, Entries: wc.Entries, UIDs: wc.UIDs, Origin: f.takeOrigin(r.seq)})
			}
			f.last = r.seq
		}
		f.setPublished(f.last)
		if len(batch) < catchUpBatch {
			return nil
		}
	}
}

func (f *feed) deliver(c store.Change) {
	f.pub.Publish(c.Origin, []store.Change{c})
}
