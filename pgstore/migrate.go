package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockKey is the key of the session-level advisory lock that
// serialises migrations between nodes ("popbridge" in ASCII, truncated).
const migrationLockKey int64 = 0x706f706272696467

// migration is one numbered SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations, ascending by version. Files
// are named NNNN_what.sql.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: name must start with a positive number and '_'", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must run 1, 2, 3 ... without gaps", out[i].name)
		}
	}
	return out, nil
}

// migrate applies the pending migrations, each in its own transaction
// recorded in schema_migrations. One node at a time migrates: the others
// wait on a session-level advisory lock and then find nothing to do. A
// database whose schema is newer than this program's is refused.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockKey); err != nil {
			// The lock goes with the session: close it.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("migrate: schema version %d is newer than this program's (%d): upgrade popbridge", current, len(ms))
	}
	for _, m := range ms[current:] {
		// Some rewrite every message (0005: about 10 s per GB of mail
		// on a small machine): say so before, not only after.
		s.log.Info("applying schema migration", "migration", m.name)
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		s.log.Info("applied schema migration", "migration", m.name)
	}
	return nil
}

// checkSchema is what a read-only Store does instead of migrate: it
// changes nothing, and fails unless the database holds a popbridge schema
// of exactly this program's version (wrapping fs.ErrNotExist when it
// holds none).
func (s *Store) checkSchema(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var current int
	err = s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return fmt.Errorf("the database holds no popbridge store yet (no schema_migrations table): %w", fs.ErrNotExist)
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	case current == 0:
		return fmt.Errorf("the database holds no popbridge store yet (no migration applied): %w", fs.ErrNotExist)
	case current < len(ms):
		return fmt.Errorf("schema version %d is older than this program's (%d): `popbridge serve` or `poll` of this version migrates it when it starts; read-only commands do not", current, len(ms))
	case current > len(ms):
		return fmt.Errorf("schema version %d is newer than this program's (%d): upgrade popbridge", current, len(ms))
	}
	return nil
}
