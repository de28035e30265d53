package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate applies, in order, every embedded migration not yet recorded in
// schema_migrations. Each migration runs in its own transaction together
// with its schema_migrations row, so a crash leaves it applied or not at all.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.wdb.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, known, err := migrationNames()
	if err != nil {
		return err
	}
	var newest sql.NullInt64
	if err := s.wdb.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest.Valid && int(newest.Int64) > known {
		return fmt.Errorf("database schema version %d is newer than this program's (%d): refusing to open", newest.Int64, known)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number: %w", base, err)
		}
		if err := s.migrateFile(ctx, name, base, version); err != nil {
			return err
		}
	}
	return nil
}

// migrationNames returns the embedded migrations in order and the newest
// version among them: the schema version this program reads and writes.
func migrationNames() (names []string, known int, err error) {
	names, err = fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, 0, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		num, _, _ := strings.Cut(strings.TrimPrefix(name, "migrations/"), "_")
		if v, err := strconv.Atoi(num); err == nil {
			known = max(known, v)
		}
	}
	return names, known, nil
}

// checkSchema is migrate's counterpart for a read-only Store, which cannot
// migrate: it fails unless the database's schema version is exactly the
// one this program knows (an older schema lacks what the queries expect, a
// newer one may mean something else).
func (s *Store) checkSchema(ctx context.Context) error {
	_, known, err := migrationNames()
	if err != nil {
		return err
	}
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if n == 0 {
		return errors.New("database has no popbridge schema (it was never opened read-write): refusing a read-only open")
	}
	var newest sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch v := int(newest.Int64); {
	case !newest.Valid:
		return errors.New("database has no schema version recorded: refusing a read-only open")
	case v > known:
		return fmt.Errorf("database schema version %d is newer than this program's (%d): refusing to open", v, known)
	case v < known:
		return fmt.Errorf("database schema version %d is older than this program's (%d) and a read-only open cannot migrate it: open it read-write once (e.g. restart popbridge serve with this version)", v, known)
	}
	return nil
}

func (s *Store) migrateFile(ctx context.Context, path, base string, version int) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration %s: %w", base, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return fmt.Errorf("check migration %s: %w", base, err)
	}
	if n > 0 {
		return nil
	}
	text, err := migrationFS.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read migration %s: %w", base, err)
	}
	if _, err := tx.ExecContext(ctx, string(text)); err != nil {
		return fmt.Errorf("apply migration %s: %w", base, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		version, base, fmtTime(s.now())); err != nil {
		return fmt.Errorf("record migration %s: %w", base, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration %s: %w", base, err)
	}
	s.log.Info("applied migration", "migration", base)
	return nil
}

// execer is what the private helpers need from *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
