package imapfront

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Store is what the IMAP server needs from the mail store: exactly the
// methods it calls, with the signatures (and the semantics, see the store
// package) of *store.Store, which satisfies it. Every backend of the store
// package's contract (internal/testkit/storetest) can serve IMAP through it.
type Store interface {
	UserByName(ctx context.Context, name string) (store.User, error)
	EnsureUser(ctx context.Context, name string) (store.User, error)

	Mailboxes(ctx context.Context, u store.UserID) ([]store.Mailbox, error)
	MailboxByName(ctx context.Context, u store.UserID, name string) (store.Mailbox, error)
	CreateMailbox(ctx context.Context, u store.UserID, name string, specialUse string) (store.Mailbox, error)
	RenameMailbox(ctx context.Context, u store.UserID, oldName, newName string) error
	DeleteMailbox(ctx context.Context, u store.UserID, name string) error
	Subscriptions(ctx context.Context, u store.UserID) ([]string, error)
	SetSubscribed(ctx context.Context, u store.UserID, name string, subscribed bool) error
	Counts(ctx context.Context, u store.UserID, mb store.MailboxID) (store.MailboxCounts, error)
	Snapshot(ctx context.Context, u store.UserID, mb store.MailboxID) (store.Snapshot, error)

	Meta(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.MessageMeta, error)
	Bodies(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, fn func(uid store.UID, raw []byte, damaged error) error) error
	SearchText(ctx context.Context, u store.UserID, mb store.MailboxID, q store.TextQuery, uids []store.UID) ([]store.UID, error)

	Append(ctx context.Context, u store.UserID, mb store.MailboxID, raw []byte, flags []string, date time.Time) (store.Entry, uint32, error)
	UpdateFlags(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, op store.FlagOp, flags []string) ([]store.Entry, error)
	Expunge(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.UID, error)
	Copy(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error)
	Move(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error)

	Subscribe(fn func(store.Change)) *store.Subscription
	// ReleaseMemory empties the store's in-memory caches; the server calls
	// it when the last client has been gone for a while.
	ReleaseMemory()
}

var _ Store = (*store.Store)(nil)

// BriefLister is a Store that can list messages without their envelope
// and structure (store.Store.MetaBrief, pgstore.Store.MetaBrief: one
// query, nothing decoded or cached). A FETCH whose sections are all found
// in the bytes alone (bytesOnly: whole messages, top-level headers and
// texts) uses it when the backend has it.
type BriefLister interface {
	MetaBrief(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.MessageMeta, error)
}

// BriefMetaStore is a BriefLister that can also read the messages' brief
// metadata with their bytes (store.Store.BodiesBrief): a FETCH of only
// flags, sizes, dates and top-level headers (the header sync most clients
// start with) then needs no listing first.
type BriefMetaStore interface {
	BriefLister
	BodiesBrief(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, want store.BriefFields, fn func(m *store.MessageMeta, raw []byte, damaged error) error) error
}

var _ BriefMetaStore = (*store.Store)(nil)
