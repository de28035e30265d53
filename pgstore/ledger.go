package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// The POP ledger: the same rows, keys and states as the SQLite store's
// (see store/ledger.go), times to the microsecond.

// Ledger returns every ledger row of account, tombstones included, in the
// order they were recorded.
func (s *Store) Ledger(ctx context.Context, account string) ([]store.LedgerEntry, error) {
	var out []store.LedgerEntry
	err := s.read(ctx, "read ledger", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT account, uidl, digest, size, stored_at, message_id, skipped, delete_pending, deleted_at, last_seen
			FROM pop_ledger WHERE account = $1 ORDER BY id`, account)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LedgerEntry, error) {
			var e store.LedgerEntry
			return e, scanLedgerEntry(r, &e)
		})
		return err
	})
	return out, err
}

// scanLedgerEntry scans the columns account, uidl, digest, size,
// stored_at, message_id, skipped, delete_pending, deleted_at, last_seen of
// a pop_ledger row into e, after the columns of first (if any).
func scanLedgerEntry(r pgx.Row, e *store.LedgerEntry, first ...any) error {
	var (
		msg                 *int64
		deletedAt, lastSeen *time.Time
	)
	dest := append(first, &e.Account, &e.UIDL, &e.Digest, &e.Size, &e.StoredAt, &msg, &e.Skipped, &e.DeletePending, &deletedAt, &lastSeen)
	if err := r.Scan(dest...); err != nil {
		return err
	}
	e.StoredAt = e.StoredAt.UTC()
	e.DeletedAt, e.LastSeen = fromNull(deletedAt), fromNull(lastSeen)
	if msg != nil {
		e.Message = store.MessageID(*msg)
	}
	e.Expunged = e.Skipped == "" && msg == nil
	return nil
}

// prunable is the SQL condition under which PruneLedger drops a row, with
// before as the placeholder of its threshold (NULL: nothing is prunable).
// LedgerKeys shares it.
func prunable(before string) string {
	return `coalesce(NOT delete_pending AND coalesce(last_seen, stored_at) < ` + before +
		` AND (deleted_at IS NULL OR deleted_at < ` + before + `), false)`
}

// LedgerKeys returns every ledger row of account, tombstones included, as
// a store.LedgerKey, sorted by UIDL and then digest (bytewise), with Stale
// and Prunable evaluated against q.
func (s *Store) LedgerKeys(ctx context.Context, account string, q store.LedgerKeyQuery) ([]store.LedgerKey, error) {
	var out []store.LedgerKey
	err := s.read(ctx, "read ledger keys", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT uidl, digest, size, stored_at, skipped,
			message_id IS NULL AND skipped = '', delete_pending, deleted_at IS NOT NULL,
			last_seen IS NULL OR coalesce(last_seen <= $2::timestamptz, false),
			`+prunable("$3::timestamptz")+`
			FROM pop_ledger WHERE account = $1 ORDER BY uidl, digest`, account, nullTime(q.SeenBefore), nullTime(q.PruneBefore))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LedgerKey, error) {
			var k store.LedgerKey
			err := r.Scan(&k.UIDL, &k.Digest, &k.Size, &k.StoredAt, &k.Skipped, &k.Expunged, &k.DeletePending, &k.Deleted, &k.Stale, &k.Prunable)
			k.StoredAt = k.StoredAt.UTC()
			return k, err
		})
		return err
	})
	return out, err
}

// RecordSkipped records a message that was not fetched (reason, e.g. "too
// large"; "" is recorded as "skipped"). A row already recorded as skipped
// is updated; a row of a stored message is left alone. A later Deliver of
// the same (account, UIDL, digest) stores the message and clears the mark.
func (s *Store) RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error {
	if reason == "" {
		reason = "skipped"
	}
	return s.write(ctx, "record skipped", func(w *wtx) error {
		now := micro(s.now())
		_, err := w.Exec(w.ctx, `INSERT INTO pop_ledger (account, uidl, digest, size, stored_at, skipped, last_seen)
			VALUES ($1, $2, $3, $4, $5, $6, $5)
			ON CONFLICT (account, uidl, digest) DO UPDATE SET skipped = excluded.skipped, size = excluded.size, last_seen = excluded.last_seen
			WHERE pop_ledger.skipped != ''`, account, uidl, digest, size, now, reason)
		return err
	})
}

// updateByUIDL runs set (an "UPDATE pop_ledger SET ..." assignment list
// whose placeholders start at $3) on every row of account whose UIDL is
// in uidls.
func (s *Store) updateByUIDL(ctx context.Context, op, account string, uidls []string, set string, setArgs ...any) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if len(uidls) == 0 {
		return nil
	}
	return s.write(ctx, op, func(w *wtx) error {
		_, err := w.Exec(w.ctx, `UPDATE pop_ledger SET `+set+` WHERE account = $1 AND uidl = ANY ($2)`,
			append([]any{account, uidls}, setArgs...)...)
		return err
	})
}

// MarkDeletePending records, durably, that DELE is about to be sent for
// uidls. Call it before sending DELE.
func (s *Store) MarkDeletePending(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "mark delete pending", account, uidls, `delete_pending = true`)
}

// MarkDeleted records that the upstream confirmed deletion of uidls (QUIT
// succeeded): DeletedAt is set to now and the pending mark cleared.
func (s *Store) MarkDeleted(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "mark deleted", account, uidls, `delete_pending = false, deleted_at = $3`, micro(s.now()))
}

// ClearDeletePending clears the pending mark of uidls (the deletion did
// not happen).
func (s *Store) ClearDeletePending(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "clear delete pending", account, uidls, `delete_pending = false`)
}

// TouchLedger records that uidls appeared in the upstream listing at at.
func (s *Store) TouchLedger(ctx context.Context, account string, uidls []string, at time.Time) error {
	return s.updateByUIDL(ctx, "touch ledger", account, uidls, `last_seen = $3`, nullTime(at))
}

// updateByRef runs set (placeholders from $4) on the rows of account named
// by refs, in one transaction.
func (s *Store) updateByRef(ctx context.Context, op, account string, refs []store.LedgerRef, set string, setArgs ...any) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if len(refs) == 0 {
		return nil
	}
	uidls := make([]string, len(refs))
	digests := make([]string, len(refs))
	for i, r := range refs {
		uidls[i], digests[i] = r.UIDL, r.Digest
	}
	return s.write(ctx, op, func(w *wtx) error {
		_, err := w.Exec(w.ctx, `UPDATE pop_ledger p SET `+set+` FROM unnest($2::text[], $3::text[]) AS t(u, d)
			WHERE p.account = $1 AND p.uidl = t.u AND p.digest = t.d`, append([]any{account, uidls, digests}, setArgs...)...)
		return err
	})
}

// MarkGone records that the rows refs no longer name a message on the
// server. DeletedAt is set to when the row was last known listed
// (LastSeen, or StoredAt; a row already gone keeps its time) and the
// pending mark cleared.
func (s *Store) MarkGone(ctx context.Context, account string, refs []store.LedgerRef) error {
	return s.updateByRef(ctx, "mark gone", account, refs,
		`delete_pending = false, deleted_at = coalesce(p.deleted_at, p.last_seen, p.stored_at)`)
}

// MarkListed records that the rows refs name messages listed upstream
// again at at: DeletedAt is cleared and LastSeen set.
func (s *Store) MarkListed(ctx context.Context, account string, refs []store.LedgerRef, at time.Time) error {
	return s.updateByRef(ctx, "mark listed", account, refs, `deleted_at = NULL, last_seen = $4`, nullTime(at))
}

// PruneLedger drops the rows of account that are no longer listed
// upstream: last seen (or, never seen, stored) before `before`, deleted
// upstream before `before` if deleted at all, and not delete-pending. It
// returns how many rows it dropped.
func (s *Store) PruneLedger(ctx context.Context, account string, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "prune ledger", func(w *wtx) error {
		tag, err := w.Exec(w.ctx, `DELETE FROM pop_ledger WHERE account = $1 AND `+prunable("$2::timestamptz"), account, nullTime(before))
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}

// SetAccountStatus stores st, replacing the account's previous status.
func (s *Store) SetAccountStatus(ctx context.Context, st store.AccountStatus) error {
	return s.SetAccountStatuses(ctx, []store.AccountStatus{st})
}

// SetAccountStatuses stores every status of sts in one transaction, each
// replacing its account's previous status.
func (s *Store) SetAccountStatuses(ctx context.Context, sts []store.AccountStatus) error {
	return s.write(ctx, "set account status", func(w *wtx) error {
		b := &pgx.Batch{}
		for _, st := range sts {
			b.Queue(`INSERT INTO account_status (account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count, uidl_reused, renumbered, twins, unproven)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (account) DO UPDATE SET last_attempt = excluded.last_attempt, last_success = excluded.last_success,
			last_error = excluded.last_error, last_error_at = excluded.last_error_at, fetched = excluded.fetched,
			fetched_bytes = excluded.fetched_bytes, skipped = excluded.skipped, upstream_count = excluded.upstream_count,
			uidl_reused = excluded.uidl_reused, renumbered = excluded.renumbered, twins = excluded.twins,
			unproven = excluded.unproven`,
				st.Account, nullTime(st.LastAttempt), nullTime(st.LastSuccess), st.LastError, nullTime(st.LastErrorAt),
				st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount,
				st.Anomalies.UIDLReused, st.Anomalies.Renumbered, st.Anomalies.Twins, st.Anomalies.Unproven)
		}
		return w.SendBatch(w.ctx, b).Close()
	})
}

// AccountStatuses returns the stored status of every account, ascending
// by account name.
func (s *Store) AccountStatuses(ctx context.Context) ([]store.AccountStatus, error) {
	var out []store.AccountStatus
	err := s.read(ctx, "read account statuses", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count, uidl_reused, renumbered, twins, unproven
			FROM account_status ORDER BY account`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AccountStatus, error) {
			var (
				st                        store.AccountStatus
				attempt, success, errorAt *time.Time
			)
			err := r.Scan(&st.Account, &attempt, &success, &st.LastError, &errorAt,
				&st.Fetched, &st.FetchedBytes, &st.Skipped, &st.UpstreamCount,
				&st.Anomalies.UIDLReused, &st.Anomalies.Renumbered, &st.Anomalies.Twins, &st.Anomalies.Unproven)
			st.LastAttempt, st.LastSuccess, st.LastErrorAt = fromNull(attempt), fromNull(success), fromNull(errorAt)
			return st, err
		})
		return err
	})
	return out, err
}

// RenameAccount carries the POP ledger and the poll status of account
// from over to account to, in one transaction, and returns the number of
// ledger rows moved. Rows of from whose (UIDL, digest) to already has are
// dropped; a status of from is dropped when to has one.
func (s *Store) RenameAccount(ctx context.Context, from, to string) (int, error) {
	if from == to {
		return 0, fmt.Errorf("rename account %q: old and new name are the same", from)
	}
	var moved int
	err := s.write(ctx, "rename account", func(w *wtx) error {
		tag, err := w.Exec(w.ctx, `UPDATE pop_ledger p SET account = $1 WHERE account = $2
			AND NOT EXISTS (SELECT 1 FROM pop_ledger q WHERE q.account = $1 AND q.uidl = p.uidl AND q.digest = p.digest)`, to, from)
		if err != nil {
			return fmt.Errorf("re-key ledger of %q to %q: %w", from, to, err)
		}
		moved = int(tag.RowsAffected())
		if _, err := w.Exec(w.ctx, `DELETE FROM pop_ledger WHERE account = $1`, from); err != nil {
			return fmt.Errorf("drop ledger rows of %q already known to %q: %w", from, to, err)
		}
		if _, err := w.Exec(w.ctx, `UPDATE account_status SET account = $1 WHERE account = $2
			AND NOT EXISTS (SELECT 1 FROM account_status WHERE account = $1)`, to, from); err != nil {
			return fmt.Errorf("move status of %q to %q: %w", from, to, err)
		}
		if _, err := w.Exec(w.ctx, `DELETE FROM account_status WHERE account = $1`, from); err != nil {
			return fmt.Errorf("drop status of %q: %w", from, err)
		}
		return nil
	})
	return moved, err
}

// LedgerAccounts returns the number of ledger rows of every account name
// that has any, tombstones included.
func (s *Store) LedgerAccounts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.read(ctx, "read ledger accounts", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT account, count(*) FROM pop_ledger GROUP BY account`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				return err
			}
			out[name] = int(n)
		}
		return rows.Err()
	})
	return out, err
}
