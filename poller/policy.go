package poller

import (
	"strings"
	"time"
)

// Skip reasons recorded in the ledger (store.LedgerEntry.Skipped).
const (
	// reasonTooLarge marks a message whose LIST size exceeded
	// max_message_size. It is never fetched while the limit stays.
	reasonTooLarge = "too large"
	// reasonDuplicatePrefix starts the reason of a message that came back
	// under a new UIDL with content already stored under another one
	// ("duplicate of <uidl>"); its content is durable locally.
	reasonDuplicatePrefix = "duplicate of "
)

// policy is an account's fetch and deletion policy, taken from Account.
type policy struct {
	leaveOnServer   bool
	deleteAfter     time.Duration // 0: never
	deleteOnExpunge bool
	maxSize         int64 // 0: no limit
}

// policyOf extracts the policy of a.
func policyOf(a Account) policy {
	return policy{
		leaveOnServer:   a.LeaveOnServer,
		deleteAfter:     a.DeleteAfter,
		deleteOnExpunge: a.DeleteOnExpunge,
		maxSize:         a.MaxMessageSize,
	}
}

// tooLarge reports whether a message of the given LIST size must not be
// fetched.
func (pol policy) tooLarge(size int64) bool {
	return pol.maxSize > 0 && size > pol.maxSize
}

// msgState is what the deletion policy knows about one upstream message,
// derived from its ledger rows.
type msgState struct {
	// Stored is true when the message's content is durable in the store
	// (delivered, or a duplicate of a delivered message). Nothing that is
	// not stored is ever deleted upstream.
	Stored bool
	// StoredAt is when it was stored.
	StoredAt time.Time
	// Expunged is true when the local copy has been expunged from every
	// mailbox.
	Expunged bool
}

// deleteReason says why the message should be deleted upstream now, or ""
// to leave it. It is the single place that decides DELE (invariant 1 is
// enforced by the Stored check).
func (pol policy) deleteReason(st msgState, now time.Time) string {
	switch {
	case !st.Stored:
		return ""
	case !pol.leaveOnServer:
		return "leave_on_server=false"
	case pol.deleteAfter > 0 && !st.StoredAt.IsZero() && now.Sub(st.StoredAt) >= pol.deleteAfter:
		return "delete_after"
	case pol.deleteOnExpunge && st.Expunged:
		return "delete_on_expunge"
	}
	return ""
}

// isDuplicateReason reports whether a ledger skip reason marks a duplicate
// of stored content.
func isDuplicateReason(reason string) bool {
	return strings.HasPrefix(reason, reasonDuplicatePrefix)
}
