// Package storetest is the contract test suite of popbridge's mail store
// backends: one set of tests of the semantics the poller and the IMAP
// server rely on, run against every backend (the SQLite store from the
// store package's tests; another backend from its own). It is a test kit:
// production code never imports it. It imports the store package for its
// types, never the poller or imapfront.
//
// What it pins: UIDs strictly increase per mailbox and are never reused
// (after expunges, and under concurrent appends, deliveries and copies);
// HIGHESTMODSEQ and entry modseqs increase with every change; flag
// operations; COPY and MOVE; EXPUNGE; the mailbox rules of CREATE, RENAME
// and DELETE (RFC 3501 section 6.3); per-user isolation; the POP ledger's
// duplicate guard; Stage, Commit and Release; and the change feed's order.
package storetest

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Backend is what the suite exercises: the union of what the poller
// (poller.Sink), the IMAP server (imapfront.Store) and provider mode need
// of a store, with
// the store package's signatures and semantics. *store.Store satisfies it.
type Backend interface {
	// Users and mailboxes.
	EnsureUser(ctx context.Context, name string) (store.User, error)
	UserByName(ctx context.Context, name string) (store.User, error)
	Mailboxes(ctx context.Context, u store.UserID) ([]store.Mailbox, error)
	MailboxByName(ctx context.Context, u store.UserID, name string) (store.Mailbox, error)
	CreateMailbox(ctx context.Context, u store.UserID, name string, specialUse string) (store.Mailbox, error)
	RenameMailbox(ctx context.Context, u store.UserID, oldName, newName string) error
	DeleteMailbox(ctx context.Context, u store.UserID, name string) error
	Subscriptions(ctx context.Context, u store.UserID) ([]string, error)
	SetSubscribed(ctx context.Context, u store.UserID, name string, subscribed bool) error
	Counts(ctx context.Context, u store.UserID, mb store.MailboxID) (store.MailboxCounts, error)
	Snapshot(ctx context.Context, u store.UserID, mb store.MailboxID) (store.Snapshot, error)
	Bodies(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, fn func(uid store.UID, raw []byte, damaged error) error) error

	// Messages.
	Append(ctx context.Context, u store.UserID, mb store.MailboxID, raw []byte, flags []string, date time.Time) (store.Entry, uint32, error)
	UpdateFlags(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, op store.FlagOp, flags []string) ([]store.Entry, error)
	Expunge(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.UID, error)
	Copy(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error)
	Move(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error)

	// Delivery and the POP ledger.
	Stage(ctx context.Context, ds []store.Delivery) (store.Staged, error)
	Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error)
	LedgerKeys(ctx context.Context, account string, q store.LedgerKeyQuery) ([]store.LedgerKey, error)
	RecordSkipped(ctx context.Context, account, uidl, digest string, size int64, reason string) error
	MarkDeletePending(ctx context.Context, account string, uidls []string) error
	MarkDeleted(ctx context.Context, account string, uidls []string) error
	ClearDeletePending(ctx context.Context, account string, uidls []string) error

	// The change feed.
	Subscribe(fn func(store.Change)) *store.Subscription

	// Provider mode's users (credentials are opaque bytes to a store).
	PutProviderUser(ctx context.Context, u store.ProviderUser) error
	SetProviderUserState(ctx context.Context, name, state string, dropCredential bool) error
	DropProviderCredentials(ctx context.Context) (int, error)
	ProviderUsers(ctx context.Context) ([]store.ProviderUser, error)
	ProviderUserByName(ctx context.Context, name string) (store.ProviderUser, error)
	DeleteUser(ctx context.Context, name string, accounts []string) error
}
