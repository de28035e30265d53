package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/storecopy"
)

var (
	_ storecopy.Dest = (*store.Store)(nil)
	_ storecopy.Dest = (*pgstore.Store)(nil)
)

// StoreCopyReport is what StoreCopy copied and verified (see
// storecopy.Report).
type StoreCopyReport = storecopy.Report

// StoreCopyProgress reports how far StoreCopy has come.
type StoreCopyProgress = storecopy.Progress

// StoreCopyResult is the outcome of StoreCopy.
type StoreCopyResult struct {
	Report StoreCopyReport
	// From and To name the two stores ("sqlite /var/lib/popbridge",
	// "postgres db.internal:5432").
	From, To string
	// KeyNote, when not "", says that provider users' sealed passwords were
	// copied but the destination's [provider] key_file is not the
	// source's: they do not open there until the key is copied.
	KeyNote string
}

// StoreCopy copies the whole store of from into the store of to (which
// must be empty), keeping every UIDVALIDITY, UID, flag, modseq and the POP
// ledger, and verifies the copy (package storecopy). The source must not
// change meanwhile: with SQLite, StoreCopy holds its data directory's lock,
// so it fails while a serve runs on it; with PostgreSQL, stop every node
// first. Both configurations must have passed Validate.
func StoreCopy(ctx context.Context, from, to *Config, logger *slog.Logger, progress func(StoreCopyProgress)) (StoreCopyResult, error) {
	var res StoreCopyResult
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res.From, res.To = storeName(from), storeName(to)
	if same, err := sameStore(from, to); err != nil {
		return res, err
	} else if same {
		return res, fmt.Errorf("store-copy: %s and %s name the same store (%s): copy into a new data_dir or a new database", from.File, to.File, res.From)
	}
	src, err := openBackend(ctx, from, logger, openOptions{})
	if err != nil {
		return res, fmt.Errorf("store-copy: source %s: %w", from.File, err)
	}
	defer src.Close()
	dst, err := openBackend(ctx, to, logger, openOptions{})
	if err != nil {
		return res, fmt.Errorf("store-copy: destination %s: %w", to.File, err)
	}
	defer dst.Close()
	s, d := src.(storecopy.Source), dst.(storecopy.Dest)
	rep, err := storecopy.Copy(ctx, s, d, storecopy.Options{Logger: logger.With(LogKeyComponent, "store-copy"), Progress: progress})
	res.Report = rep
	if err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return res, fmt.Errorf("store-copy: destination %s (%s) is not empty: copy into a new data_dir or an empty database: %w", to.File, res.To, err)
		}
		return res, fmt.Errorf("store-copy: %w", err)
	}
	if rep.ProviderUsers > 0 && !sameKey(from, to) {
		res.KeyNote = fmt.Sprintf("%d provider users' POP passwords were copied sealed with %s; they open only with that key: copy it to %s (mode 0600) before serving the copy, or those users are polled again only after their next login",
			rep.ProviderUsers, from.Path(from.Provider.KeyFile), to.Path(to.Provider.KeyFile))
	}
	return res, nil
}

// storeName names the store of cfg for messages.
func storeName(cfg *Config) string {
	if cfg.Store.backend() == BackendPostgres {
		if cfg.Store.DSNFile != "" {
			return "postgres (dsn_file " + cfg.Path(cfg.Store.DSNFile) + ")"
		}
		return "postgres"
	}
	return "sqlite " + absPath(cfg.Path(cfg.DataDir))
}

// sameStore reports whether from and to name one store: one data_dir, or
// one PostgreSQL DSN.
func sameStore(from, to *Config) (bool, error) {
	if from.Store.backend() != to.Store.backend() {
		return false, nil
	}
	if from.Store.backend() == BackendSQLite {
		return absPath(from.Path(from.DataDir)) == absPath(to.Path(to.DataDir)), nil
	}
	a, err := from.dsn()
	if err != nil {
		return false, fmt.Errorf("store-copy: source %s: %w", from.File, err)
	}
	b, err := to.dsn()
	if err != nil {
		return false, fmt.Errorf("store-copy: destination %s: %w", to.File, err)
	}
	return a == b, nil
}

// sameKey reports whether the provider key files of from and to hold the
// same key (both missing counts as different: nothing would open).
func sameKey(from, to *Config) bool {
	a, err1 := os.ReadFile(from.Path(from.Provider.KeyFile))
	b, err2 := os.ReadFile(to.Path(to.Provider.KeyFile))
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
