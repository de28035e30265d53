package store

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// Ledger returns every ledger row of account, tombstones included, in the
// order they were recorded.
func (s *Store) Ledger(ctx context.Context, account string) ([]LedgerEntry, error) {
	var out []LedgerEntry
	err := s.read(ctx, "read ledger", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT account, uidl, digest, size, stored_at, message_id, skipped, delete_pending, deleted_at, last_seen
			FROM pop_ledger WHERE account = ? ORDER BY id`, account)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e                   LedgerEntry
				stored              string
				msg                 sql.NullInt64
				pending             int64
				deletedAt, lastSeen sql.NullString
			)
			if err := rows.Scan(&e.Account, &e.UIDL, &e.Digest, &e.Size, &stored, &msg, &e.Skipped, &pending, &deletedAt, &lastSeen); err != nil {
				return err
			}
			if e.StoredAt, err = parseTime(stored); err != nil {
				return err
			}
			if e.DeletedAt, err = parseNullTime(deletedAt); err != nil {
				return err
			}
			if e.LastSeen, err = parseNullTime(lastSeen); err != nil {
				return err
			}
			e.Message = MessageID(msg.Int64)
			e.Expunged = e.Skipped == "" && !msg.Valid
			e.DeletePending = pending != 0
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// RecordSkipped records a message that was not fetched (reason, e.g. "too
// large"; "" is recorded as "skipped"). A row already recorded as skipped is
// updated; a row of a stored message is left alone. A later Deliver of the
// same (account, UIDL, digest) stores the message and clears the mark.
func (s *Store) RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error {
	if reason == "" {
		reason = "skipped"
	}
	return s.write(ctx, "record skipped", func(w *writeTx) error {
		now := nullTime(s.now())
		_, err := w.ExecContext(w.ctx, `INSERT INTO pop_ledger (account, uidl, digest, size, stored_at, skipped, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (account, uidl, digest) DO UPDATE SET skipped = excluded.skipped, size = excluded.size, last_seen = excluded.last_seen
			WHERE pop_ledger.skipped != ''`, account, uidl, digest, size, now, reason, now)
		return err
	})
}

// updateByUIDL runs set (an "UPDATE pop_ledger SET ..." assignment list with
// its args) on every row of account whose UIDL is in uidls, in chunks.
func (s *Store) updateByUIDL(ctx context.Context, op, account string, uidls []string, set string, setArgs ...any) error {
	if err := s.writable(op); err != nil {
		return err
	}
	if len(uidls) == 0 {
		return nil
	}
	return s.write(ctx, op, func(w *writeTx) error {
		for len(uidls) > 0 {
			n := min(len(uidls), sqlMaxVars)
			args := append(append([]any{}, setArgs...), account)
			for _, u := range uidls[:n] {
				args = append(args, u)
			}
			q := `UPDATE pop_ledger SET ` + set + ` WHERE account = ? AND uidl IN (?` + strings.Repeat(", ?", n-1) + `)`
			if _, err := w.ExecContext(w.ctx, q, args...); err != nil {
				return err
			}
			uidls = uidls[n:]
		}
		return nil
	})
}

// MarkDeletePending records, durably, that DELE is about to be sent for
// uidls. Call it before sending DELE.
func (s *Store) MarkDeletePending(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "mark delete pending", account, uidls, `delete_pending = 1`)
}

// MarkDeleted records that the upstream confirmed deletion of uidls (QUIT
// succeeded): DeletedAt is set to now and the pending mark cleared.
func (s *Store) MarkDeleted(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "mark deleted", account, uidls, `delete_pending = 0, deleted_at = ?`, nullTime(s.now()))
}

// ClearDeletePending clears the pending mark of uidls (the deletion did not
// happen).
func (s *Store) ClearDeletePending(ctx context.Context, account string, uidls []string) error {
	return s.updateByUIDL(ctx, "clear delete pending", account, uidls, `delete_pending = 0`)
}

// TouchLedger records that uidls appeared in the upstream listing at at.
func (s *Store) TouchLedger(ctx context.Context, account string, uidls []string, at time.Time) error {
	return s.updateByUIDL(ctx, "touch ledger", account, uidls, `last_seen = ?`, nullTime(at))
}

// PruneLedger drops the rows of account that are no longer listed upstream:
// last seen (or, never seen, stored) before `before`, deleted upstream before
// `before` if deleted at all, and not delete-pending. It returns how many
// rows it dropped.
func (s *Store) PruneLedger(ctx context.Context, account string, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "prune ledger", func(w *writeTx) error {
		b := nullTime(before)
		res, err := w.ExecContext(w.ctx, `DELETE FROM pop_ledger WHERE account = ? AND delete_pending = 0
			AND coalesce(last_seen, stored_at) < ? AND (deleted_at IS NULL OR deleted_at < ?)`, account, b, b)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// SetAccountStatus stores st, replacing the account's previous status.
func (s *Store) SetAccountStatus(ctx context.Context, st AccountStatus) error {
	return s.write(ctx, "set account status", func(w *writeTx) error {
		_, err := w.ExecContext(w.ctx, `INSERT INTO account_status (account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (account) DO UPDATE SET last_attempt = excluded.last_attempt, last_success = excluded.last_success,
			last_error = excluded.last_error, last_error_at = excluded.last_error_at, fetched = excluded.fetched,
			fetched_bytes = excluded.fetched_bytes, skipped = excluded.skipped, upstream_count = excluded.upstream_count`,
			st.Account, nullTime(st.LastAttempt), nullTime(st.LastSuccess), st.LastError, nullTime(st.LastErrorAt),
			st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount)
		return err
	})
}

// AccountStatuses returns the stored status of every account, ascending by
// account name.
func (s *Store) AccountStatuses(ctx context.Context) ([]AccountStatus, error) {
	var out []AccountStatus
	err := s.read(ctx, "read account statuses", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count FROM account_status ORDER BY account`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				st                         AccountStatus
				attempt, success, errorsAt sql.NullString
			)
			if err := rows.Scan(&st.Account, &attempt, &success, &st.LastError, &errorsAt,
				&st.Fetched, &st.FetchedBytes, &st.Skipped, &st.UpstreamCount); err != nil {
				return err
			}
			if st.LastAttempt, err = parseNullTime(attempt); err != nil {
				return err
			}
			if st.LastSuccess, err = parseNullTime(success); err != nil {
				return err
			}
			if st.LastErrorAt, err = parseNullTime(errorsAt); err != nil {
				return err
			}
			out = append(out, st)
		}
		return rows.Err()
	})
	return out, err
}
