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

// legacyBatch is how many messages migrateLegacyBodies moves per step.
const legacyBatch = 256

// migrateLegacyBodies moves the bytes and texts of messages written by a
// program older than migration 0003 (held in message_data and
// message_text) into packs, a batch per pack write and transaction, so a
// crash leaves each message either moved or not (a moved message's old
// rows are deleted in the transaction that points it at its pack). Such
// messages were parsed at delivery, so they stay indexed. When it moved
// anything, it vacuums the database to give the space back.
func (s *Store) migrateLegacyBodies(ctx context.Context) error {
	moved := 0
	for {
		type legacy struct {
			id              MessageID
			raw, head, text []byte
		}
		var batch []legacy
		err := s.read(ctx, "read legacy bodies", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT m.id, d.data, COALESCE(t.header_text, ''), COALESCE(t.body_text, '')
				FROM messages m JOIN message_data d ON d.message_id = m.id LEFT JOIN message_text t ON t.message_id = m.id
				WHERE m.pack IS NULL ORDER BY m.id LIMIT ?`, legacyBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var l legacy
				if err := rows.Scan(&l.id, &l.raw, &l.head, &l.text); err != nil {
					return err
				}
				batch = append(batch, l)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("migrate message bodies: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		recs := make([]blobRec, 0, 2*len(batch))
		for _, l := range batch {
			recs = append(recs, rawRecord(l.raw), blobRec{l.head, l.text})
		}
		err = s.writeRecords(ctx, "move legacy bodies", recs, func(w *writeTx, locs []recordLoc) error {
			for i, l := range batch {
				raw, text := locs[2*i], locs[2*i+1]
				if _, err := w.ExecContext(w.ctx, `UPDATE messages SET pack = ?, pack_off = ?, body_crc = ?, indexed = 1,
					text_pack = ?, text_off = ?, head_len = ?, text_len = ?, head_crc = ?, text_crc = ?
					WHERE id = ? AND pack IS NULL`, raw.pack, raw.off, int64(raw.sum),
					text.pack, text.off, len(l.head), len(l.text), int64(text.crc[0]), int64(text.crc[1]), l.id); err != nil {
					return fmt.Errorf("point message %d at its pack: %w", l.id, err)
				}
				for _, q := range []string{`DELETE FROM message_data WHERE message_id = ?`, `DELETE FROM message_text WHERE message_id = ?`} {
					if _, err := w.ExecContext(w.ctx, q, l.id); err != nil {
						return fmt.Errorf("drop legacy copy of message %d: %w", l.id, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrate message bodies: %w", err)
		}
		moved += len(batch)
	}
	if moved == 0 {
		return nil
	}
	s.log.Info("moved message bodies into packs", "messages", moved)
	if _, err := s.wdb.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("vacuum after moving bodies: %w", err)
	}
	return nil
}
