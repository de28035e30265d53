package bridge

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
)

// LedgerNote is what `popbridge check` says about the ledger of one
// account name in the store.
type LedgerNote struct {
	// Account is the configured account taking over Previous's ledger; ""
	// for an orphan.
	Account string
	// Previous is the name the rows are stored under: a previous_names
	// entry of Account, or (orphan) a name no account has.
	Previous string
	// Rows is the number of ledger rows under Previous.
	Rows int
}

// Orphan reports whether the rows belong to no configured account: the
// account was removed, or renamed without previous_names (its mail would
// be fetched again under the new name).
func (n LedgerNote) Orphan() bool { return n.Account == "" }

// LedgerNotes reads the store (read-only, beside a running serve) and
// returns, for every account name with ledger rows that is not a
// configured account's name, what a start will do with them: carried over
// by previous_names, or left behind (an orphan). An absent database
// yields no notes.
func LedgerNotes(ctx context.Context, cfg *Config, logger *slog.Logger) ([]LedgerNote, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{readOnly: true})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	counts, err := st.LedgerAccounts(ctx)
	if err != nil {
		return nil, err
	}
	var notes []LedgerNote
	for _, a := range cfg.Accounts {
		delete(counts, a.Name)
	}
	delete(counts, noticeLedger) // popbridge's own notices, no account's
	for _, a := range cfg.Accounts {
		for _, prev := range a.PreviousNames {
			if n := counts[prev]; n > 0 {
				notes = append(notes, LedgerNote{Account: a.Name, Previous: prev, Rows: n})
				delete(counts, prev)
			}
		}
	}
	var orphans []string
	for name := range counts {
		orphans = append(orphans, name)
	}
	slices.Sort(orphans)
	for _, name := range orphans {
		notes = append(notes, LedgerNote{Previous: name, Rows: counts[name]})
	}
	return notes, nil
}
