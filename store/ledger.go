package store

import (
	"context"
	"database/sql"
	"strconv"
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
			var e LedgerEntry
			if err := scanLedgerEntry(rows, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// scanLedgerEntry scans the columns account, uidl, digest, size,
// stored_at, message_id, skipped, delete_pending, deleted_at, last_seen
// of a pop_ledger row into e, after the columns of first (if any).
func scanLedgerEntry(rows *sql.Rows, e *LedgerEntry, first ...any) error {
	var (
		stored              string
		msg                 sql.NullInt64
		pending             int64
		deletedAt, lastSeen sql.NullString
		err                 error
	)
	dest := append(first, &e.Account, &e.UIDL, &e.Digest, &e.Size, &stored, &msg, &e.Skipped, &pending, &deletedAt, &lastSeen)
	if err := rows.Scan(dest...); err != nil {
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
	return nil
}

// LedgerKey is a ledger row reduced to what planning a poll needs: read by
// [Store.LedgerKeys] at a fraction of the cost of a [LedgerEntry] (no
// account, message id, LastSeen or DeletedAt to read and parse; the
// questions a poll asks of those are answered by the database against the
// thresholds of a [LedgerKeyQuery]).
type LedgerKey struct {
	UIDL   string
	Digest string
	Size   int64
	// StoredAt, Skipped, Expunged and DeletePending are as in LedgerEntry.
	StoredAt      time.Time
	Skipped       string
	Expunged      bool
	DeletePending bool
	// Deleted reports whether the row is a tombstone: the message left
	// the server (LedgerEntry.DeletedAt is set).
	Deleted bool
	// Stale reports whether LastSeen is unset or not after the query's
	// SeenBefore.
	Stale bool
	// Prunable reports whether PruneLedger(ctx, account, PruneBefore),
	// with the query's PruneBefore, would drop the row (at the time of the
	// read).
	Prunable bool
}

// LedgerKeyQuery holds the thresholds that [Store.LedgerKeys] evaluates for
// every row. A zero time disables its test: with a zero SeenBefore only
// rows never seen are Stale; with a zero PruneBefore no row is Prunable.
type LedgerKeyQuery struct {
	SeenBefore  time.Time
	PruneBefore time.Time
}

// prunable is the SQL condition under which PruneLedger drops a pop_ledger
// row, with before as the placeholder of its threshold. PruneLedger and
// LedgerKeys share it so that LedgerKey.Prunable cannot drift from what
// PruneLedger does.
func prunable(before string) string {
	return `(delete_pending = 0 AND coalesce(last_seen, stored_at) < ` + before +
		` AND (deleted_at IS NULL OR deleted_at < ` + before + `))`
}

// Bits of the flags column of ledgerKeysSQL.
const (
	keyExpunged = 1 << iota
	keyDeletePending
	keyDeleted
	keyStale
	keyPrunable
)

// ledgerKeysSQL reads the LedgerKey fields of one account (?1), with
// SeenBefore as ?2 and PruneBefore as ?3, the boolean fields folded into
// one integer (SQLite's << and | share one precedence level, hence the
// parentheses). Rows come in the order of the (account, uidl, digest)
// unique index, which the query reads instead of sorting.
var ledgerKeysSQL = `SELECT uidl, digest, size, stored_at, skipped,
	((message_id IS NULL AND skipped = '') * ` + strconv.Itoa(keyExpunged) + `)
	| ((delete_pending != 0) * ` + strconv.Itoa(keyDeletePending) + `)
	| ((deleted_at IS NOT NULL) * ` + strconv.Itoa(keyDeleted) + `)
	| ((last_seen IS NULL OR coalesce(last_seen <= ?2, 0)) * ` + strconv.Itoa(keyStale) + `)
	| (coalesce(` + prunable("?3") + `, 0) * ` + strconv.Itoa(keyPrunable) + `)
	FROM pop_ledger WHERE account = ?1 ORDER BY uidl, digest`

// LedgerKeys returns every ledger row of account, tombstones included, as
// a LedgerKey, sorted by UIDL and then digest: the same rows as Ledger,
// with Stale and Prunable evaluated against q. It is the read a poll
// makes, and is several times cheaper than Ledger on a large ledger.
func (s *Store) LedgerKeys(ctx context.Context, account string, q LedgerKeyQuery) ([]LedgerKey, error) {
	var out []LedgerKey
	err := s.read(ctx, "read ledger keys", func(tx *sql.Tx) error {
		rows, err := s.query(ctx, tx, ledgerKeysSQL, account, nullTime(q.SeenBefore), nullTime(q.PruneBefore))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k      LedgerKey
				stored string
				flags  int64
			)
			if err := rows.Scan(&k.UIDL, &k.Digest, &k.Size, &stored, &k.Skipped, &flags); err != nil {
				return err
			}
			if k.StoredAt, err = parseStoredTime(stored); err != nil {
				return err
			}
			k.Expunged = flags&keyExpunged != 0
			k.DeletePending = flags&keyDeletePending != 0
			k.Deleted = flags&keyDeleted != 0
			k.Stale = flags&keyStale != 0
			k.Prunable = flags&keyPrunable != 0
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// parseStoredTime is parseTime with a fast path for the fixed-width UTC
// form nullTime writes ("2006-01-02T15:04:05.000000000Z"): LedgerKeys
// parses one per ledger row. Anything else, or a field out of range, goes
// to parseTime, so the result (and every error) is parseTime's.
func parseStoredTime(s string) (time.Time, error) {
	const n = len("2006-01-02T15:04:05.000000000Z")
	if len(s) != n || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return parseTime(s)
	}
	ok := true
	num := func(from, to int) int {
		v := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				ok = false
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d := num(0, 4), num(5, 7), num(8, 10)
	h, mi, sec, ns := num(11, 13), num(14, 16), num(17, 19), num(20, 29)
	if !ok || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return parseTime(s)
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	if t.Day() != d { // 31 November and the like: parseTime refuses them
		return parseTime(s)
	}
	return t, nil
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

// LedgerRef names one ledger row of an account: a UIDL and the digest of
// the content it named.
type LedgerRef struct {
	UIDL   string
	Digest string
}

// updateByRef runs set (an "UPDATE pop_ledger SET ..." assignment list with
// its args) on the rows of account named by refs, in one transaction.
func (s *Store) updateByRef(ctx context.Context, op, account string, refs []LedgerRef, set string, setArgs ...any) error {
	if err := s.writable(op); err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	return s.write(ctx, op, func(w *writeTx) error {
		st, err := w.stmt(`UPDATE pop_ledger SET ` + set + ` WHERE account = ? AND uidl = ? AND digest = ?`)
		if err != nil {
			return err
		}
		for _, r := range refs {
			args := append(append([]any{}, setArgs...), account, r.UIDL, r.Digest)
			if _, err := st.ExecContext(w.ctx, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// MarkGone records that the rows refs no longer name a message on the
// server: a complete listing did not show their UIDL, or showed it for
// other content. DeletedAt is set to when the row was last known listed
// (LastSeen, or StoredAt; a row already gone keeps its time), so a
// tombstone's retention still counts from its last listing, and the
// pending mark is cleared. A gone row is a tombstone: it keeps
// the content from being imported twice, but is never again taken as
// proof of what a listed message is.
func (s *Store) MarkGone(ctx context.Context, account string, refs []LedgerRef) error {
	return s.updateByRef(ctx, "mark gone", account, refs,
		`delete_pending = 0, deleted_at = coalesce(deleted_at, last_seen, stored_at)`)
}

// MarkListed records that the rows refs name messages listed upstream
// again at at, their content proven equal by its digest: DeletedAt is
// cleared and LastSeen set.
func (s *Store) MarkListed(ctx context.Context, account string, refs []LedgerRef, at time.Time) error {
	return s.updateByRef(ctx, "mark listed", account, refs, `deleted_at = NULL, last_seen = ?`, nullTime(at))
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
// rows it dropped. [LedgerKey.Prunable] tells beforehand which rows it
// would drop.
func (s *Store) PruneLedger(ctx context.Context, account string, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "prune ledger", func(w *writeTx) error {
		b := nullTime(before)
		res, err := w.ExecContext(w.ctx, `DELETE FROM pop_ledger WHERE account = ?1 AND `+prunable("?2"), account, b)
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
	return s.SetAccountStatuses(ctx, []AccountStatus{st})
}

// SetAccountStatuses stores every status of sts in one transaction, each
// replacing its account's previous status.
func (s *Store) SetAccountStatuses(ctx context.Context, sts []AccountStatus) error {
	return s.write(ctx, "set account status", func(w *writeTx) error {
		ins, err := w.stmt(`INSERT INTO account_status (account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count, uidl_reused, renumbered, twins, unproven)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (account) DO UPDATE SET last_attempt = excluded.last_attempt, last_success = excluded.last_success,
			last_error = excluded.last_error, last_error_at = excluded.last_error_at, fetched = excluded.fetched,
			fetched_bytes = excluded.fetched_bytes, skipped = excluded.skipped, upstream_count = excluded.upstream_count,
			uidl_reused = excluded.uidl_reused, renumbered = excluded.renumbered, twins = excluded.twins,
			unproven = excluded.unproven`)
		if err != nil {
			return err
		}
		for _, st := range sts {
			if _, err := ins.ExecContext(w.ctx,
				st.Account, nullTime(st.LastAttempt), nullTime(st.LastSuccess), st.LastError, nullTime(st.LastErrorAt),
				st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount,
				st.Anomalies.UIDLReused, st.Anomalies.Renumbered, st.Anomalies.Twins, st.Anomalies.Unproven); err != nil {
				return err
			}
		}
		return nil
	})
}

// AccountStatuses returns the stored status of every account, ascending by
// account name.
func (s *Store) AccountStatuses(ctx context.Context) ([]AccountStatus, error) {
	var out []AccountStatus
	err := s.read(ctx, "read account statuses", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT account, last_attempt, last_success, last_error, last_error_at,
			fetched, fetched_bytes, skipped, upstream_count, uidl_reused, renumbered, twins, unproven
			FROM account_status ORDER BY account`)
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
				&st.Fetched, &st.FetchedBytes, &st.Skipped, &st.UpstreamCount,
				&st.Anomalies.UIDLReused, &st.Anomalies.Renumbered, &st.Anomalies.Twins, &st.Anomalies.Unproven); err != nil {
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
