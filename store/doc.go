// Package store is popbridge's durable multi-user mail store: the single
// source of truth between the POP3 poller and the IMAP front end. It
// imports none of popbridge's other packages. The longer story (parsing,
// indexing, packs, compaction, read-only opens, the change feed in detail)
// is docs/store-internals.md.
//
// # Model
//
// A [User] owns mailboxes: INBOX and the special-use Drafts, Sent, Trash,
// Junk and Archive from the start, and any hierarchy ("/" delimited) the
// user creates. A [Mailbox] has a UIDVALIDITY, a UIDNEXT and a
// HIGHESTMODSEQ; an [Entry] is one message in one mailbox, with its UID,
// flags, keywords and the modseq of its last change. A message's bytes are
// stored once (bare LF made CRLF), shared by every entry that refers to it,
// and parsed once into its envelope, structure and search text: at APPEND,
// or by the background indexer after [Store.Deliver]; until then reads
// parse on demand with the same parser. Bytes and texts live in
// append-only, checksummed pack files beside one SQLite database; a body
// text that is just the body read as text is derived from the bytes
// instead of being stored twice.
//
// The POP ledger records, per upstream account, every message seen, keyed
// by (account, UIDL, content digest): when and as which message it was
// stored, whether it was skipped, whether a DELE is pending, and when it
// left the server (a tombstone). Account status rows keep each poller's
// last state and its identity anomalies.
//
// # Invariants
//
//   - UIDs strictly increase per mailbox and are never reused: they come
//     from mailboxes.uidnext, updated in the transaction that adds the
//     entries.
//   - UIDVALIDITY values are strictly greater than every value issued
//     before; a renamed mailbox keeps its own, a recreated one gets a new
//     value and a new [MailboxID]. MessageIDs and MailboxIDs are never
//     reused, and a message's bytes and metadata never change.
//   - HIGHESTMODSEQ increases by one per change of a mailbox; the entries a
//     change touches get that modseq.
//   - Every call that names a mailbox also names its user, and every query
//     is constrained by that user: another user's mailbox is [ErrNotFound].
//   - [Store.Deliver] ([Store.Stage] then [Staged.Commit]) stores
//     messages, entries and ledger rows in one transaction; an (account,
//     UIDL, digest) already in the ledger is never stored a second time.
//   - A committed row never points at bytes that are not on disk: records
//     are written and fdatasync'd before the transaction that refers to
//     them. Damaged bytes are reported as [ErrCorrupt] for that message
//     only.
//   - A transaction reported committed is durable (WAL, synchronous=FULL).
//
// # Locking
//
// Writes go through one writer connection behind the store's writer mutex,
// so writers never see SQLITE_BUSY; once begun, a write runs to commit or
// rollback regardless of cancellation. Concurrent writes share one
// transaction and one fsync, each in its own savepoint, all or nothing
// and durable when it returns (group commit: group.go); [WithUrgent] and
// [WithOrigin] writes go ahead of queued background ones. Reads use a separate pool of
// query_only connections, one consistent snapshot per read method. One
// Store at a time has a directory open (flock on dir/popbridge.lock);
// a read-only Store (Options.ReadOnly) takes no lock and can open a
// directory that a running service holds.
//
// [Store.Subscribe] callbacks receive every committed [Change] in commit
// order, each subscription on its own goroutine ([Feed]): the writer only
// queues the changes, so a slow subscriber delays no write, and one that
// falls too far behind gets a [ChangeResync] instead of unbounded memory.
// [Subscription.Sync] waits until a subscriber has seen every commit so
// far. Every change of a mailbox carries its HIGHESTMODSEQ after the
// change, so a [Snapshot] holds exactly the changes up to its
// Mailbox.HighestModSeq.
//
// # Other backends
//
// Types shared with the other store backends (package pgstore, several
// nodes on PostgreSQL) live here too: [ErrUnavailable] for a database
// that cannot be reached, and [Lease] with [ErrLeaseLost] for the leases
// that let one node of a cluster, and only one, poll an account. The
// SQLite store, embedded in one node, uses neither.
package store
