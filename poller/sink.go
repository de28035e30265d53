package poller

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Sink is what the poller needs from the store. *store.Store satisfies it;
// the method signatures are the store's own (see the store package for the
// semantics of each). Tests substitute an in-memory fake. A pass reads the
// ledger once, with LedgerKeys (the fields its plan needs, not the whole
// LedgerEntry), while it logs in and lists the upstream.
//
// The poller relies on these guarantees: Stage makes a batch's bytes
// durable without making anything visible; the Staged's Commit stores every
// delivery and its ledger row in one durable transaction (all or nothing),
// with the duplicate guard of store.Store.Stage; a batch released without
// Commit leaves nothing visible; MarkDeletePending is durable when it
// returns. Everything else may be retried. The poller stages several
// batches at once and commits them in retrieval order.
type Sink interface {
	Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error)
	LedgerKeys(ctx context.Context, account string, q store.LedgerKeyQuery) ([]store.LedgerKey, error)
	RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error
	MarkDeletePending(ctx context.Context, account string, uidls []string) error
	MarkDeleted(ctx context.Context, account string, uidls []string) error
	MarkGone(ctx context.Context, account string, refs []store.LedgerRef) error
	MarkListed(ctx context.Context, account string, refs []store.LedgerRef, at time.Time) error
	ClearDeletePending(ctx context.Context, account string, uidls []string) error
	TouchLedger(ctx context.Context, account string, uidls []string, at time.Time) error
	PruneLedger(ctx context.Context, account string, before time.Time) (int, error)
	SetAccountStatuses(ctx context.Context, sts []store.AccountStatus) error
	AccountStatuses(ctx context.Context) ([]store.AccountStatus, error)
}
