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
//	→ deliver them in group commits (≤ 256 messages / 32 MB per durable
//	  transaction, by two committer goroutines while retrieval continues;
//	  at most 64 MB retrieved and not yet committed)
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
// # Several nodes: account leases
//
// With Options.Leaser (several nodes on one PostgreSQL store), a node
// polls an account only while it holds the account's lease, named
// [LeaseName] ("account:NAME", for configured and provider accounts
// alike). A worker takes the lease before its first poll and keeps it
// until it stops (account removed, configuration changed, shutdown), when
// it releases it so that another node takes the account over at once.
// One keeper per Poller renews every lease the node holds in one call
// every LeaseTTL/3 (default TTL 30 s): 10,000 accounts cost one statement
// per period, not 10,000. A lease the renewal does not return is lost; a
// lease whose renewals fail or hang is given up once the next renewal
// would come too late, before it can lapse. A pass running under a lost
// lease stops before any further commit or DELE (the store's duplicate
// guard would keep exactly-once anyway); the pass is not a failure.
//
// A node that finds the lease held elsewhere does not poll: Status says
// which node holds it ("polled by node NAME"), and the worker waits, with
// no timer of its own, while the keeper watches the lease. The keeper
// looks at every lease its workers wait for in one call (Leaser.LookLeases,
// one read-only statement however many: 5,000 waiting accounts cost one
// statement per look, not an acquire each) when the first of them could
// have lapsed by the database's clock (Lease.Left), no sooner than
// TTL/10 and no later than TTL/2 after the previous look (plus up to
// TTL/20 of jitter). A look wakes only the workers whose lease it found
// free (lapsed or released), which then acquire it; it also shows a new
// holder in Status. When the holder dies (kill -9, network loss) its lease
// lapses after at most one TTL and the first look after that hands the
// account over, polled at once: within TTL + TTL/10 + TTL/20 of the
// holder's last renewal, under the two TTLs promised; a lease released by a clean stop
// is taken within TTL/2 + TTL/20. PollOnce holds the lease for its pass
// (sharing the worker's) and fails with ErrLeaseHeld when another node
// holds it.
//
// # Store unavailable
//
// A pass whose store call fails with store.ErrUnavailable (the database
// cannot be reached) stops there: nothing more is committed, no DELE is
// sent (the session is aborted), and the account is neither marked failed
// (LastError unchanged, no user notice) nor backed off as after an upstream
// failure: it retries after 1 s doubling, capped at 30 s (with jitter), and
// Status.StoreUnavailable (State "store unavailable") says so meanwhile.
// Once the database answers again the next pass fetches what is left;
// messages committed before the outage are known by the ledger.
//
// # Identity
//
// A message is identified by its UIDL, or on a server without UIDL by a
// synthetic UIDL made of its header digest (TOP n 0) and size. The ledger
// stores with it the SHA-256 of the whole raw message (the content
// digest), which is the only proof of what a message is: a UIDL, a size or
// a header digest is a hint.
//
// A listed message is taken for stored content without retrieving it only
// while its identity has a live ledger row of the listed size: its own
// UIDL listed once, or every live row of the identity listed once (twins
// on a UIDL-less server). A row is live until a complete listing no longer
// shows its identity; then it is a tombstone (store MarkGone), and a
// message listed under it again is retrieved and compared before anything
// is decided. Every other retrieved message is classified by its digest,
// in retrieval order: the content its identity named (known; a tombstone
// listed again comes back to life, store MarkListed), content stored under
// another identity (recorded as a duplicate, not stored: renumbering),
// content of another message of the same pass (a twin, recorded after the
// pass's commits if the one stored was), or new (delivered; if its
// identity named other content, the UIDL was reused). When content turns
// up under a new identity while the identity that held it is still listed,
// that row is marked gone so the next pass compares what the old identity
// names now; when most of the listing was renumbered, every identity taken
// for stored by its listing is marked so. These anomalies are counted per
// account (status, /metrics).
//
// What no listing shows: a server may give a UIDL whose message left
// between two polls to new content of exactly the same size. Such a
// message is taken for the old one and not stored, but never deleted
// unseen: every DELE retrieves and compares first (invariant 1), and a
// message found different then is stored.
//
// # Invariants
//
//  1. Nothing lost: a DELE is sent only for a message retrieved in the
//     same session whose digest matches content committed in the store
//     (deletions() is the one place that decides DELE, and refuses any
//     without that proof). A UIDL listed with the same size at every poll
//     is not enough: RFC 1939 lets a server give a UIDL to new content
//     once the old message is gone, and such a swap between two polls
//     leaves no gap in the listings. With leave_on_server=false messages
//     are retrieved and deleted in one session; delete_after,
//     delete_on_expunge and a DELE retried after a failed QUIT cost one
//     more RETR. The row is durably marked delete-pending before DELE. Any
//     failure closes the connection without QUIT, so no DELE of that
//     session takes effect; a QUIT that fails leaves the rows pending and
//     the next poll proves and deletes again, or finds them gone.
//  2. No duplicates: a message is delivered only if its digest is not
//     already stored for the account, and its ledger row is written in the
//     same transaction as its bytes, so a crash between RETR and commit
//     re-fetches it and a crash after commit does not. Ledger rows outlive
//     the upstream messages as tombstones for 90 days after they were last
//     listed, so an upstream that lists old mail again (after an empty
//     listing, say) does not re-import it.
//  3. A message larger than max_message_size is recorded as skipped once
//     (counted in the status, logged once) and never retrieved.
//  4. On shutdown (the Run context ends) no new poll starts; messages
//     already retrieved are committed (within a grace period), and the
//     session is closed without QUIT.
//
// The model test (model_test.go, also a fuzz target) checks 1 and 2 over
// random histories of upstream behaviour with crashes at random points.
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
