// Package storecopy copies a whole popbridge store from one backend to
// another — the embedded SQLite store (package store) to PostgreSQL
// (package pgstore) and back — so that nothing changes for the people and
// programs that use it: IMAP clients download nothing again (every
// mailbox keeps its UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, every message
// its UID, flags, keywords, modseq and INTERNALDATE, every user and
// mailbox its ID) and the poller fetches nothing twice (the POP ledger is
// copied row by row: account, UIDL, digest, size, times, the message it
// became, skip reasons, pending deletions and tombstones). Account
// statuses with their identity-anomaly counters, subscriptions (also of
// names with no mailbox), the UIDVALIDITY counter and the users of
// provider mode are copied too. Leases and the PostgreSQL change feed are
// not: they belong to the nodes running on a database, not to the mail.
// What the stores derive from a message's bytes (envelope, structure,
// search texts) is derived again by the destination, with the same
// parser: PostgreSQL as each batch is imported, SQLite by its background
// indexer (reads parse on demand until then), so damaged search texts in
// the source are not carried over.
//
// [Copy] takes two stores already opened by the caller (`popbridge
// store-copy` opens them from two configuration files). The source must
// not change during the copy: stop every popbridge serving it. The
// destination must be empty (a new data_dir, or a new PostgreSQL
// database): Copy refuses anything else with an error wrapping
// [store.ErrNotEmpty] before it writes a row. A copy that fails half-way
// leaves a partial destination that a second Copy refuses: discard it
// (remove the data_dir, or drop and create the database) and copy again.
//
// # Memory and speed
//
// Messages are streamed: the bytes of at most one batch
// ([Options.BatchBytes], default 16 MiB, or [Options.BatchMessages]
// messages) are held at a time, whatever the size of the store. What
// grows with the store is a 32-byte hash per message (and the map that
// holds it, about 100 bytes a message in all), kept to verify the copy,
// and the users, mailboxes, provider users and account statuses, read in
// one piece. Each batch is one durable transaction in the destination.
//
// # Verification
//
// After the copy, Copy reads the destination back and compares it with
// what it read from the source: users, mailboxes (name, special-use,
// \Noselect, subscription, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ),
// subscriptions, provider users and account statuses field by field;
// every message's bytes (SHA-256), size and INTERNALDATE; per mailbox the
// count, the UID list, the flags, the modseqs and the messages' bytes;
// the ledger per account. Times are compared to the microsecond, the
// precision PostgreSQL keeps. Any difference fails the copy with an error
// wrapping [ErrMismatch] that lists the first differences.
//
// # Damaged messages
//
// A message of the source whose bytes cannot be read (a pack record
// failing its checksum, a missing pack, missing bytes) is handled the way
// `popbridge verify -repair` handles a message it cannot recover: the
// destination gets [store.DamageNotice] in its place (same MessageID, so
// its ledger rows still keep the poller from fetching it again), and each
// of its entries is moved into the user's "Damaged" mailbox
// ([store.DamagedMailbox], created when missing). The report lists each
// one with where it was, where it went and the upstream accounts (and
// UIDLs) its ledger rows name. The copy cannot fetch a
// message again from its upstream: run `popbridge verify -repair` on the
// source first, which can, and copy what is left.
//
// # Secrets
//
// Provider users' credentials are copied as the opaque sealed bytes the
// store keeps: they stay valid only with the same [provider] key_file. A
// destination run with another key treats them as undecryptable, and
// those users must log in again before their mail is polled.
package storecopy
