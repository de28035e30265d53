package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// Backend is the mail store the bridge runs on: the embedded SQLite store
// (package store) or the PostgreSQL store (package pgstore), chosen by
// [store] backend. It is what the IMAP server and the poller need, plus
// what the bridge's own parts (provider mode, verify, import and export,
// status, notices) call; the signatures and semantics are the store
// package's, pinned for both backends by internal/testkit/storetest.
type Backend interface {
	imapfront.Store
	poller.Sink

	Close() error
	// Health is nil while the store answers and knows of no damage.
	Health() error
	DamageStats() store.DamageStats
	Verify(ctx context.Context, progress func(done int)) (store.VerifyReport, error)
	ReplaceMessage(ctx context.Context, id store.MessageID, raw []byte) error
	Quarantine(ctx context.Context, u store.UserID, src store.MailboxID, uid store.UID) (store.UID, error)
	RawBytes(ctx context.Context, id store.MessageID) ([]byte, error)

	Users(ctx context.Context) ([]store.User, error)
	Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error)
	Ledger(ctx context.Context, account string) ([]store.LedgerEntry, error)
	LedgerAccounts(ctx context.Context) (map[string]int, error)
	RenameAccount(ctx context.Context, from, to string) (int, error)

	PutProviderUser(ctx context.Context, u store.ProviderUser) error
	SetProviderUserState(ctx context.Context, name, state string, dropCredential bool) error
	DropProviderCredentials(ctx context.Context) (int, error)
	ProviderUsers(ctx context.Context) ([]store.ProviderUser, error)
	ProviderUserByName(ctx context.Context, name string) (store.ProviderUser, error)
	DeleteUser(ctx context.Context, name string, accounts []string) error
}

var (
	_ Backend = (*store.Store)(nil)
	_ Backend = (*pgstore.Store)(nil)
)

// openOptions say how a command opens the store.
type openOptions struct {
	// readOnly opens the SQLite store read-only, beside a running serve
	// (the PostgreSQL store is shared by design and opens as usual).
	readOnly bool
}

// openBackend opens the store of cfg: the SQLite store in data_dir, or
// the PostgreSQL database of [store]. Its errors start with "open store".
func openBackend(ctx context.Context, cfg *Config, log *slog.Logger, o openOptions) (Backend, error) {
	slog := log.With(LogKeyComponent, "store")
	switch cfg.Store.backend() {
	case BackendPostgres:
		// data_dir keeps this node's own files (the automatic TLS
		// certificate, the provider key), made as the SQLite store makes
		// its directory.
		if !o.readOnly {
			if err := os.MkdirAll(cfg.Path(cfg.DataDir), 0o700); err != nil {
				return nil, fmt.Errorf("open store: data_dir: %w", err)
			}
		}
		dsn, err := cfg.dsn()
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		octx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
		defer cancel()
		st, err := pgstore.Open(octx, dsn, pgstore.Options{Logger: slog, NodeName: cfg.Store.NodeName, ReadOnly: o.readOnly})
		if err != nil {
			return nil, err // pgstore.Open's errors start with "open store:" and name the host, never the password
		}
		return st, nil
	default:
		st, err := store.Open(ctx, cfg.Path(cfg.DataDir), store.Options{Logger: slog, ReadOnly: o.readOnly})
		if err != nil {
			return nil, err // store.Open's errors already start with "open store"
		}
		return st, nil
	}
}

// leaserOf returns the account leases of st when several nodes may share
// it (the PostgreSQL store: one node polls each account at a time), nil
// for the single-node SQLite store.
func leaserOf(st Backend) poller.Leaser {
	if pg, ok := st.(*pgstore.Store); ok {
		return pg
	}
	return nil
}

// storeOpenTimeout bounds opening the store at start: a database that does
// not answer fails start with its host named instead of hanging.
const storeOpenTimeout = 30 * time.Second
