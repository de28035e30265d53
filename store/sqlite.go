package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// This file holds everything specific to the SQLite backend: the file name,
// the DSN with its per-connection pragmas, pool sizing and the few
// SQLite-only SQL fragments. The rest of the package speaks plain SQL
// through database/sql (with "?" placeholders, which a PostgreSQL backend
// rebinds to $n, and INSERT ... RETURNING instead of LastInsertId), so a
// PostgreSQL backend can replace this file and the migrations.

// dbFileName is the database file inside the data directory.
const dbFileName = "popbridge.db"

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection. Writes are serialised in Go (Store.wmu), so it only matters
// for readers racing a WAL checkpoint or another process holding the file.
const busyTimeoutMS = 10000

// walAutocheckpointPages is the WAL size, in pages, at which a commit
// checkpoints the WAL into the database (SQLite's default is 1000). Group
// commits write several MB each, so at the default nearly every commit was
// followed by a checkpoint and its two extra fsyncs; at 8000 pages (32 MB
// with 4 KB pages) a checkpoint comes every few commits, writes pages that
// changed more than once only once, and writes them in page order.
const walAutocheckpointPages = 8000

// journalSizeLimit (bytes) is the size a WAL larger than that is truncated
// to when it is reset after a checkpoint, so one very large transaction
// does not leave a WAL of its size on disk. It is above the WAL's usual
// peak (walAutocheckpointPages plus one group commit), so it costs nothing
// in steady state.
const journalSizeLimit = 64 << 20

// sqliteDSN returns the DSN for path. Every pragma is in the DSN, so
// database/sql applies it to every connection it opens, not only the first.
// Writers begin with BEGIN IMMEDIATE (the write lock is taken at BEGIN, so a
// read-then-write transaction can never fail with SQLITE_BUSY_SNAPSHOT);
// readers begin deferred and are query_only, so a read transaction never
// takes the write lock.
func sqliteDSN(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walAutocheckpointPages))
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit))
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
		q.Set("_txlock", "deferred")
	}
	return "file:" + path + "?" + q.Encode()
}

// openSQLite creates dir (0700) and the database file (0600) if missing and
// opens the writer pool (one connection) and the reader pool.
func openSQLite(ctx context.Context, dir string) (wdb, rdb *sql.DB, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, dbFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, nil, fmt.Errorf("create database file: %w", err)
	}
	wdb, err = sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, nil, fmt.Errorf("open writer pool: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	// The writer connection is opened first: it switches the file to WAL
	// before any reader connects.
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, nil, fmt.Errorf("open writer connection: %w", err)
	}
	rdb, err = sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		wdb.Close()
		return nil, nil, fmt.Errorf("open reader pool: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	return wdb, rdb, nil
}

// sqliteReadOnlyDSN returns the DSN of a read-only Store's connections.
// mode=ro (honoured because the DSN is a "file:" URI) opens the file
// read-only: SQLite fails with SQLITE_CANTOPEN instead of creating a
// missing file and every write fails with SQLITE_READONLY; query_only(1)
// is a second guard. journal_mode and synchronous are left alone: they
// would be writes, and the file is already in WAL mode. A mode=ro
// connection still maps the WAL index (dir/popbridge.db-shm), creating it
// (and the -wal file) when no other connection has, so it reads the
// commits of a writer in another process while that writer runs.
func sqliteReadOnlyDSN(path string) string {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "query_only(1)")
	q.Set("_txlock", "deferred")
	return "file:" + path + "?" + q.Encode()
}

// openSQLiteReadOnly opens the reader pool of a read-only Store on the
// existing database dir/popbridge.db; it creates nothing.
func openSQLiteReadOnly(ctx context.Context, dir string) (*sql.DB, error) {
	path := filepath.Join(dir, dbFileName)
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("database %s does not exist (a read-only open does not create it): %w", path, err)
		}
		return nil, fmt.Errorf("stat database: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("database %s is not a regular file", path)
	}
	rdb, err := sql.Open("sqlite", sqliteReadOnlyDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open reader pool: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	if err := rdb.PingContext(ctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("open read-only connection: %w", err)
	}
	return rdb, nil
}

// sqlMaxVars bounds the number of placeholders per statement.
const sqlMaxVars = 500

// SQLite result codes (the primary code is the low byte of an extended
// code).
const (
	sqliteCorrupt = 11 // SQLITE_CORRUPT: the database disk image is malformed
	sqliteFull    = 13 // SQLITE_FULL: the disk is full
	sqliteNotADB  = 26 // SQLITE_NOTADB: not a database file
)

// sqliteCode returns the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		return ce.Code() & 0xff
	}
	return 0
}

// isDBCorrupt reports whether err is SQLite reporting a damaged database.
func isDBCorrupt(err error) bool {
	c := sqliteCode(err)
	return c == sqliteCorrupt || c == sqliteNotADB
}

// sqliteIOErrShmSize (SQLITE_IOERR_SHMSIZE) is what opening a WAL
// database answers when the shared-memory file can't be grown: on Linux,
// a full disk.
const sqliteIOErrShmSize = 10 | 19<<8

// isDBFull reports whether err is SQLite reporting a full disk.
func isDBFull(err error) bool {
	var ce interface{ Code() int }
	return sqliteCode(err) == sqliteFull || errors.As(err, &ce) && ce.Code() == sqliteIOErrShmSize
}
