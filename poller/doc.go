// Package poller pulls mail from upstream POP3 accounts into the store,
// exactly once.
//
// # Model
//
// A [Poller] runs one worker per [Account]. A worker polls on the account's
// poll interval with ±10% jitter; after a failure it backs off
// exponentially with jitter (15 s doubling, capped at 30 min, never below
// the interval for a permanent error such as a refused login) and resets
// on success. The first polls are spread at random over 10 s, or over
// 50 ms per account when there are more than 200 accounts (at most one
// interval), so that many accounts do not connect at once.
//
// [Poller.PollNow] (the operator: SIGUSR1, popbridge poll) and
// [Poller.Hint] (an IMAP client looked at the mailbox; at most once per
// 15 s per account) ask for an early poll. [Poller.PollAll] asks for one
// for every account, spread at random over 50 ms per account. After a
// refused login (a permanent error) hints are dropped until the backoff
// has passed, so a client refreshing every few seconds cannot make
// popbridge retry a wrong password often enough to get the account locked;
// the operator's requests still poll. No poll, early or not, logs in
// sooner than the server's CAPA LOGIN-DELAY allows. [Poller.PollOnce]
// runs a synchronous pass; passes of one account never overlap.
//
// Every session, the login included, holds a connection slot from before
// it dials until it has QUIT or was aborted: at most
// Options.MaxConnections (default 20) over all accounts and
// Options.MaxConnectionsPerHost (default 10) towards one host:port. A pass
// that finds no slot waits for one, in arrival order (a waiter for a full
// host does not hold up waiters for other hosts), with Status.Waiting set;
// [Poller.ConnectionStats] counts open sessions and waiters, and
// [Poller.SetConnectionLimits] changes the caps while running.
//
// One pass is one POP3 session:
//
//	login → LIST+UIDL (meanwhile, one ledger read)
//	→ plan (pure: identities, policy)
//	→ RETR the unknown messages (pipelined by the session)
//	→ deliver them in group commits (≤ 64 messages / 8 MB per durable
//	  transaction, by two committer goroutines while retrieval continues;
//	  at most 32 MB retrieved and not yet committed)
//	→ MarkDeletePending (durable) → DELE → QUIT → MarkDeleted
//
// A message cut short by an unstuffed "." line is never stored: the
// session layer alone guards against it. It follows every RETR (and TOP)
// with a "LIST n" sentinel, pipelined with the commands when the server
// advertises PIPELINING, and hands a message on only after a correct reply
// to its sentinel; the engine commits what it is handed without a further
// check. When a retrieval fails, the message being read becomes a
// suspect: later passes fetch suspects last, one at a time, and a suspect
// that fails three probes in a row is recorded as skipped (it stays on the
// server, the reason is logged and kept in the ledger), so one bad message
// cannot block an account.
//
// A poll with nothing new costs the login, the listing round trips (LIST
// and UIDL, pipelined when the server allows), one ledger read and one
// status write. The ledger read (store LedgerKeys: only what the plan
// needs, with "LastSeen due for a refresh" and "expired tombstone" decided
// by the database) starts before the login and overlaps it and the
// listing. A listed row's LastSeen is rewritten only when it is 6 hours
// old or more, so idle polls in between write nothing per message;
// expired tombstones are pruned at most once a day, and only by a pass
// whose ledger read found some.
//
// # Identity
//
// A message is identified by its UIDL, or on a server without UIDL by a
// synthetic UIDL made of its header digest (TOP n 0) and size. The ledger
// stores with it the SHA-256 of the raw message (the content digest). A
// known UIDL listed with another size is retrieved and compared: the same
// digest is the known message, another digest a new message reusing the
// UIDL. The same (UIDL, digest) is never delivered twice.
//
// # Invariants
//
//  1. Nothing lost: a DELE is sent only for a message whose bytes and
//     ledger row are committed, and after its row is durably marked
//     delete-pending. Any failure closes the connection without QUIT, so
//     no DELE of that session takes effect. A QUIT that fails leaves the
//     rows pending; the next poll re-checks the listing (still listed:
//     DELE again if the policy still says so; gone: deleted).
//  2. No duplicates: a message is delivered only if its identity is not
//     in the ledger (or its content differs, for a reused UIDL), and its
//     ledger row is written in the same transaction as its bytes, so a
//     crash between RETR and commit re-fetches it and a crash after commit
//     does not. Ledger rows outlive the upstream messages as tombstones
//     for 90 days after they were last listed, so an upstream that lists
//     old mail again (after an empty listing, say) does not re-import it.
//     When none of a non-trivial ledger's UIDLs is listed and more than
//     half as many "new" ones appear (a mass UIDL change), retrieved
//     messages are matched by content against the ledger and recorded,
//     not stored, when they are already held. Later occurrences of a UIDL
//     within one listing are ignored and logged.
//  3. A message larger than max_message_size is recorded as skipped once
//     (counted in the status, logged once) and never retrieved.
//  4. On shutdown (the Run context ends) no new poll starts; messages
//     already retrieved are committed (within a grace period), and the
//     session is closed without QUIT.
//
// # Concurrency
//
// Poller methods are safe for concurrent use. Poller.mu guards the
// account list, workers and in-memory status; each account's passes are
// serialised by a one-token channel in its acctState. Every goroutine is
// started by Run (workers) or by a pass (its committer) and waited for by
// the same.
//
// The session layer (dial.go, session.go, capa.go, auth.go, errors.go)
// speaks POP3 over github.com/knadh/go-pop3 with deadlines and byte
// budgets; this file's siblings only use it through the popSession
// interface. The login has an absolute deadline (30 s); after it, a
// response has none: it fails when the server sends nothing for the I/O
// timeout (60 s) or less than 4 KiB in 2 minutes (a slow drip), so a slow
// but steady server delivers a message of any size.
package poller
