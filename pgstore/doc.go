// Package pgstore is popbridge's mail store on PostgreSQL, for several
// popbridge nodes serving one store. It has the model, the method
// signatures and the semantics of package store (the embedded SQLite
// store), whose types it uses, and reuses store's MIME parser, metadata
// encoding, flag rules and text matcher (store/backend.go), so that both
// answer alike.
//
// # Model
//
// Everything lives in the database: users, mailboxes (UIDVALIDITY,
// UIDNEXT, HIGHESTMODSEQ), messages (bytes in bytea chunks of 8,000
// bytes, their envelope and structure in the store's binary encoding,
// their decoded search texts),
// mailbox entries (UID, flags and keywords, modseq), subscriptions, the
// POP ledger and account status, the change feed and leases. The schema
// is a series of embedded, numbered SQL files (migrations/), applied by
// [Open] one at a time in a transaction each and recorded in
// schema_migrations; a session-level advisory lock lets one node migrate
// while the others wait. Message bytes are stored in rows of up to 8,000
// bytes each, inline and uncompressed, read back by one range scan
// (migration 0005: as one value they went through TOAST in 2 KB pieces),
// written by one binary COPY per delivered batch, and deleted with their
// message by a statement trigger (migration 0006: a foreign key checked
// every chunk row as it was inserted);
// search texts are compressed with lz4 where the server has it (migration
// 0003), with pglz otherwise. mailbox_messages keeps 30 % of each page
// free (migration 0004), so that a flag change rewrites a row in its own
// page (a HOT update, no index entry) rather than moving it.
//
// # Indexing
//
// [Store.Deliver] does not parse: a delivered message is stored with its
// bytes, size and date and is "unindexed" until a background indexer
// (every node runs one; they share the work with FOR UPDATE SKIP LOCKED)
// stores its envelope, structure and search texts. Until then Meta and
// SearchText parse it on demand with the same parser, so answers do not
// depend on it (index.go).
//
// # Invariants
//
//   - UIDs strictly increase per mailbox and are never reused, whichever
//     node appends, copies or delivers: every transaction that changes a
//     mailbox first locks its row (SELECT ... FOR UPDATE), reads UIDNEXT
//     and HIGHESTMODSEQ, and writes them back before commit, so the
//     writers of one mailbox run one after the other. MailboxIDs and
//     MessageIDs are identity columns, never reused; UIDVALIDITY comes
//     from a counter row that only grows.
//   - HIGHESTMODSEQ increases by one per change of a mailbox.
//   - Every call that names a mailbox also names its user, and every
//     query is constrained by that user.
//   - [Store.Deliver] stores messages, entries and ledger rows in one
//     transaction; an (account, UIDL, digest) already in the ledger is
//     never stored a second time (a unique key, on every node).
//   - Times are kept to the microsecond (timestamptz); INTERNALDATE keeps
//     its zone offset.
//   - A transaction that conflicts with a concurrent one (deadlock,
//     serialization failure, a unique or foreign key violation caused by
//     a concurrent insert) is retried from the start, up to 10 times.
//
// # Change feed
//
// Every committed change is a row of the changes table, numbered in
// commit order, and a NOTIFY carrying its number: a transaction that
// publishes changes takes an advisory transaction lock just before it
// inserts them, held to its commit, so numbers follow commits (PostgreSQL
// serialises the commits of notifying transactions anyway). Rows are kept
// for Options.ChangeRetention. [Store.Subscribe]
// callbacks receive the changes of every node, in commit order, on the
// feed's goroutine (never on the writer's); after a lost notification or
// a reconnect of the listening connection, the feed catches up from the
// table, so nothing is lost or delivered twice. Changes are delivered
// asynchronously: a write returns before its change reaches subscribers,
// also on the node that wrote it.
//
// # Errors
//
// The store's sentinels (store.ErrNotFound, ErrExists, ErrNoSelect, ...)
// are returned where the SQLite store returns them. A database that
// cannot be reached, or a connection lost during a call, gives an error
// wrapping [ErrUnavailable] that names the server's host and port (never
// the password); the next call uses a new connection.
//
// # Leases
//
// [Store.AcquireLease], [Store.RenewLease] and [Store.ReleaseLease] give
// named leases (store.Lease) to one node at a time, judged by the
// database's clock, with a fencing token; a lease that lapses can be taken
// by another node. [Store.RenewLeases] and [Store.ReleaseLeases] renew or
// give back many leases in one statement (a node polling 10,000 accounts
// renews their leases together); [Store.LookLeases] tells, in one
// read-only statement, who holds each of many leases and for how long (a
// node waiting for the accounts other nodes poll asks once for all of
// them). The Store satisfies poller.Leaser.
//
// # Verify and repair
//
// [Store.Verify] reads every message in full on the server and reports
// messages whose bytes, texts or metadata are missing, unreadable or
// wrong, with the store.VerifyReport of the SQLite store;
// [Store.RawBytes], [Store.ReplaceMessage] and [Store.Quarantine] are the
// repair steps of `popbridge verify -repair`. ReplaceMessage gives the
// content a new MessageID (entries and ledger rows follow it), so that
// messages stay immutable for every node's metadata cache.
//
// Not here (SQLite-specific): read-only opens (any node may read), pack
// files (PackProblems, the Packs and Unpacked of a VerifyReport) and
// DamageStats' counters of damaged pack reads.
package pgstore
