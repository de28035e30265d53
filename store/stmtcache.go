package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps the statements that run on every poll or delivery
// prepared for the life of a connection pool. SQLite parses and plans a
// statement each time it is prepared; with thousands of accounts polled a
// few times a second that parsing was an eighth of the process's CPU.
//
// A statement is prepared on the pool (DB.PrepareContext) only between
// transactions, by prepareWanted: preparing on the pool takes a connection
// of its own, and the writer's pool has exactly one, held by the
// transaction that first needs the statement. Until then a transaction
// prepares it for itself. Once cached, database/sql prepares it on each
// connection of the pool the first time a transaction there uses it
// (Tx.StmtContext, on the transaction's own connection) and keeps it until
// the connection or the cache closes. SQLite re-prepares a statement by
// itself when the schema changes under it.
type stmtCache struct {
	db     *sql.DB
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	wanted map[string]bool
	closed bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// inTx returns query prepared for tx: from the cache when it is there,
// otherwise prepared in tx and wanted in the cache. The returned statement
// belongs to tx and closes with it.
func (c *stmtCache) inTx(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	if !ok && !c.closed {
		c.wanted[query] = true
	}
	c.mu.Unlock()
	if ok {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

// prepareWanted prepares on the pool the statements transactions asked
// for. The caller must hold no transaction of the pool: for the writer's
// pool, it runs between groups under the writer lock. A statement that
// fails to prepare is left to the transactions that use it.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.wanted) == 0 || c.closed {
		c.mu.Unlock()
		return
	}
	var qs []string
	for q := range c.wanted {
		qs = append(qs, q)
	}
	clear(c.wanted)
	c.mu.Unlock()
	for _, q := range qs {
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, dup := c.m[q]; dup || c.closed {
			st.Close()
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
}

// close closes every cached statement; nothing is cached afterwards.
func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var err error
	for _, st := range c.m {
		err = errors.Join(err, st.Close())
	}
	clear(c.m)
	return err
}
