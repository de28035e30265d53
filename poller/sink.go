package poller

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Sink is what the poller needs from the store. *store.Store satisfies it;
// the method signatures are the store's own (see the store package for the
// semantics of each). Tests substitute an in-memory fake.
//
// The poller relies on these guarantees: Deliver stores every delivery and
// its ledger row in one durable transaction (all or nothing), and
// MarkDeletePending is durable when it returns. Everything else may be
// retried.
type Sink interface {
	Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error)
	Ledger(ctx context.Context, account string) ([]store.LedgerEntry, error)
	RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error
	MarkDeletePending(ctx context.Context, account string, uidls []string) error
	MarkDeleted(ctx context.Context, account string, uidls []string) error
	ClearDeletePending(ctx context.Context, account string, uidls []string) error
	TouchLedger(ctx context.Context, account string, uidls []string, at time.Time) error
	PruneLedger(ctx context.Context, account string, before time.Time) (int, error)
	SetAccountStatus(ctx context.Context, st store.AccountStatus) error
	AccountStatuses(ctx context.Context) ([]store.AccountStatus, error)
}
