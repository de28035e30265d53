package store

import (
	"context"
	"database/sql"
	"fmt"
)

// RenameAccount carries the POP ledger and the poll status of account from
// over to account to, in one transaction, and returns the number of ledger
// rows moved. It is what `previous_names` in the configuration does: the
// ledger is keyed by account name, so without it a renamed account would
// fetch its whole mailbox again.
//
// Rows of from whose (UIDL, digest) to already has are dropped (to's row
// is kept: it records the same upstream message); a status of from is
// dropped when to has one. Renaming an account that has no rows moves
// nothing and is not an error, so calling it again is harmless.
func (s *Store) RenameAccount(ctx context.Context, from, to string) (int, error) {
	if from == to {
		return 0, fmt.Errorf("rename account %q: old and new name are the same", from)
	}
	var moved int
	err := s.write(ctx, "rename account", func(w *writeTx) error {
		res, err := w.ExecContext(w.ctx, `UPDATE OR IGNORE pop_ledger SET account = ? WHERE account = ?`, to, from)
		if err != nil {
			return fmt.Errorf("re-key ledger of %q to %q: %w", from, to, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		moved = int(n)
		if _, err := w.ExecContext(w.ctx, `DELETE FROM pop_ledger WHERE account = ?`, from); err != nil {
			return fmt.Errorf("drop ledger rows of %q already known to %q: %w", from, to, err)
		}
		if _, err := w.ExecContext(w.ctx, `UPDATE OR IGNORE account_status SET account = ? WHERE account = ?`, to, from); err != nil {
			return fmt.Errorf("move status of %q to %q: %w", from, to, err)
		}
		if _, err := w.ExecContext(w.ctx, `DELETE FROM account_status WHERE account = ?`, from); err != nil {
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
	err := s.read(ctx, "read ledger accounts", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT account, count(*) FROM pop_ledger GROUP BY account`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				return err
			}
			out[name] = n
		}
		return rows.Err()
	})
	return out, err
}
