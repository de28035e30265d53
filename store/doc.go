// Package store is popbridge's durable multi-user mail store: the single
// source of truth between the POP3 poller and the IMAP front end.
//
// # Model
//
// A [User] owns mailboxes. A [Mailbox] has a hierarchical name ("/" is the
// delimiter, INBOX always spelled "INBOX"), a UIDVALIDITY, a UIDNEXT and a
// HIGHESTMODSEQ. Every new user gets INBOX plus the special-use mailboxes
// Drafts, Sent, Trash, Junk and Archive, all subscribed. Subscriptions are
// kept by name, independently of the mailboxes (RFC 3501 allows subscribing
// to names that do not exist). Intermediate levels created implicitly
// ("CREATE a/b/c" creates a and a/b) and deleted mailboxes that still have
// children are \Noselect placeholders.
//
// A message's bytes are stored once, byte-exact except that bare LF is
// normalised to CRLF (NUL and bare CR are kept), and shared by every mailbox
// entry that refers to it (COPY does not duplicate bytes). A message is
// deleted when its last entry is expunged. An [Entry] is a message in one
// mailbox: its UID, system flags (a bitmask) and keywords, and the modseq of
// its last change.
//
// Each message is parsed once (parse.go): the decoded [Envelope], the
// [Part] tree with the byte offsets of every part's header and body, sizes,
// line counts and decoded sizes, the decoded header text and the decoded
// text of its text parts (for [Store.SearchText]). FETCH
// ENVELOPE/BODYSTRUCTURE/RFC822.SIZE never re-read a body once a message is
// indexed. [Store.Append] parses at once; [Store.Deliver], which stores the
// poller's batches, does not parse at all: it stores the bytes (durably,
// with the ledger rows) and a background indexer (index.go) parses them as
// soon as deliveries pause, and on Open. Until a message is indexed, every
// read that needs what parsing gives ([Store.Meta], [Store.SearchText])
// parses it from its stored bytes with the same parser, so an unindexed
// message answers exactly as an indexed one. The text extraction is
// single-pass (lower-casing and white-space collapsing into one pooled
// buffer; base64 attachments are measured, not decoded). The envelope and
// structure are stored in a compact, versioned binary encoding
// (metacodec.go; rows written in the first version's JSON are still read)
// and decoded with a few allocations per message. [Store.Meta] keeps the
// decoded metadata in a bounded in-memory cache keyed by [MessageID]
// (Options.MetaCacheEntries / MetaCacheBytes, CLOCK eviction), filled when
// a message is stored or indexed and when it is read: the values it
// returns are shared between callers and must be treated as read-only. The
// parser never fails: malformed MIME is described as well as possible, a
// multipart without parts becomes text/plain (BODYSTRUCTURE cannot express
// a multipart with no children), nesting is capped at 100 levels.
//
// The POP ledger records, per upstream account, every message seen: key
// (account, UIDL, digest), when it was stored and as which message (NULL
// once expunged everywhere: a tombstone), whether it was skipped, whether a
// DELE is pending and when the upstream confirmed deletion. Account status
// rows keep each poller's last state.
//
// # Invariants
//
//   - UIDs strictly increase per mailbox and are never reused: they come
//     from mailboxes.uidnext, updated in the same transaction as the entries,
//     so a crash can never hand out a UID twice.
//   - MessageIDs are never reused (messages.id is AUTOINCREMENT) and a
//     message's bytes and metadata never change, so cached metadata can
//     never be stale; a deleted message's cache entry is dropped after the
//     deleting transaction commits.
//   - UIDVALIDITY values come from a persisted counter, strictly greater than
//     every value issued before (and at least the Unix time). A renamed
//     mailbox keeps its UIDVALIDITY; a recreated one gets a new value and a
//     new [MailboxID] (IDs are never reused either).
//   - HIGHESTMODSEQ increases by one per change (add, flags, expunge); the
//     entries a change touches get that modseq.
//   - Every call that names a mailbox also names its user, and every query
//     is constrained by that user: another user's mailbox answers
//     [ErrNotFound].
//   - [Store.Deliver] stores messages, mailbox entries and ledger rows in one
//     transaction; a (account, UIDL, digest) already in the ledger is never
//     stored a second time.
//
// # On-disk layout and durability
//
// One SQLite database, dir/popbridge.db (dir created 0700, file 0600; next
// to it the lock file popbridge.lock, 0600, holding the holder's pid), in
// WAL mode with synchronous=FULL: a committed transaction is in the WAL and
// fsynced before the commit returns, so it survives kill -9 and power loss
// (if the disk honours flushes). The pragmas are in the DSN, so every pooled
// connection gets them (busy_timeout, journal_mode=WAL, synchronous=FULL,
// foreign_keys=1). The schema is created by embedded, numbered migrations
// (migrations/NNNN_name.sql), each applied in its own transaction and
// recorded in schema_migrations.
//
// Message bytes and their decoded texts are not in the database but in
// append-only pack files, dir/blobs/pack-NNNNNNNN (0700 / 0600; blobs.go):
// SQLite in WAL mode writes every byte twice, a pack once. A record is
// written and fdatasync'd before the transaction that refers to it begins,
// so a committed row never points at bytes that are not on disk; every read
// checks the record's CRC-32C and reports damage as [ErrCorrupt], for that
// message only: reads of many messages hand it over and go on (damage.go),
// Open checks the packs against the database, and [Store.Verify] checks
// everything. Records of
// deleted messages (and of writes a crash cut off before their commit) are
// dead space: a background compactor rewrites a sealed pack that is less
// than half live and deletes it, without ever pulling a pack from under a
// read. Stores written before packs existed have their bodies moved into
// packs by Open. Everything SQLite-specific is in sqlite.go; the API
// exposes no SQLite types.
//
// # Locking and transactions
//
// Writes go through one writer connection (SetMaxOpenConns(1), BEGIN
// IMMEDIATE) and are serialised in Go by the store's writer mutex, so writers
// never see SQLITE_BUSY. A write is checked against its context before it
// begins; once begun it runs to commit or rollback regardless of
// cancellation, so "committed" and "reported as committed" never diverge.
// Only one Store may have a directory open at a time (the writer lock is
// per Store): Open takes an exclusive flock on dir/popbridge.lock, held
// until Close, and a second Open of the directory, from this process or
// another, fails at once with [ErrLocked].
//
// A read-only Store (Options.ReadOnly, for `popbridge status`) is the
// exception: it takes no lock, so it can open a directory that a running
// service holds. It creates nothing and runs no migration (the database
// must exist with exactly this program's schema version), opens only
// reader connections, in SQLite's mode=ro and query_only, and every write
// method fails with [ErrReadOnly]. Through the shared WAL index
// (popbridge.db-shm) its reads see every transaction the writer, in any
// process, has committed.
//
// Reads use a separate pool of query_only connections; each
// read method runs in one read transaction and sees one consistent
// snapshot. No read transaction outlives its method call, so WAL
// checkpoints are never starved.
//
// # Change feed
//
// [Store.Subscribe] registers a callback that receives every committed
// [Change]. Callbacks run synchronously after the commit, in commit order,
// while the writer mutex is still held: no other write can commit before
// every subscriber has seen the changes of the previous one. Callbacks must
// therefore be quick and must not call write methods (that would deadlock);
// reads are allowed. [ChangeAdd] is published for Deliver, Append, Copy,
// Move (destination) and renaming INBOX (destination); [ChangeExpunge] for
// Expunge, Move (source), DeleteMailbox and renaming INBOX (source);
// [ChangeFlags] for UpdateFlags entries whose flags changed.
//
// Every change of a mailbox carries the mailbox's HIGHESTMODSEQ after it,
// strictly increasing per mailbox (each change bumps it by one; a new
// mailbox's ChangeMailboxCreated carries its initial value, 1): a
// [Snapshot] contains exactly the changes with ModSeq up to its
// Mailbox.HighestModSeq. Renames, deletions and subscription
// changes bump HIGHESTMODSEQ too (RFC 7162 lets it grow without message
// changes); a subscription change for a name that is not a mailbox carries
// Mailbox 0 and ModSeq 0. [WithOrigin] tags a write's context; its changes
// carry the tag in Change.Origin.
package store
