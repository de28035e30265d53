// Package imapfront is popbridge's IMAP server: a backend for go-imap v2's
// imapserver (v2.0.0-beta.8) over the store.
//
// # Model
//
// A Server accepts connections itself and hands each to one of a few
// imapserver.Server instances, chosen per connection: imapserver decides
// whether LOGIN is allowed per server, not per connection, so loopback,
// implicit-TLS and AllowPlaintextAuth connections go to one with
// InsecureAuth, the others to one that answers LOGINDISABLED until STARTTLS.
// Every session of a user shares one userState (refcounted); every mailbox
// selected by at least one session has one mailboxState, the tracker shared
// by all sessions of all connections. The store's change feed
// (store.Subscribe, synchronous, in commit order) is applied to the
// mailboxState and queued to each session's view; a session drains its
// queue in Poll (after each command, NOOP, CHECK) and pushes it at once in
// IDLE.
//
// # Invariants
//
//   - A session's sequence numbers are computed against its own client view
//     (the UIDs its client has been told about), never against the store or
//     another session: "*" is the client's last message, and a message
//     expunged by someone else but not yet announced is skipped, never
//     mapped to a neighbour.
//   - A change is applied once: a snapshot's HIGHESTMODSEQ tells which feed
//     changes it already contains.
//   - Each session learns about every add, flag change and expunge in commit
//     order; EXPUNGE is never sent during FETCH, STORE or SEARCH.
//   - A session's own MOVE and EXPUNGE are reported through its queue only,
//     so each EXPUNGE is sent exactly once.
//   - EXAMINE is read-only for real: STORE, EXPUNGE and MOVE are refused, no
//     implicit \Seen, CLOSE expunges nothing.
//   - A rejected literal poisons its connection: imapserver does not drain
//     it, so its bytes would run as commands. LITERAL+ is not advertised, so
//     compliant clients never send a large non-synchronising literal; when a
//     rejection is written on a plaintext (or implicit-TLS) connection anyway,
//     every further command is refused and the connection closed. The
//     client's input is watched too: a non-synchronising literal over 4096
//     bytes is always refused, so it poisons the connection before the
//     server parses it. So does a synchronising literal over 4096 bytes
//     outside APPEND: imapserver refuses it without a continuation request
//     and then waits for a line end a compliant client never sends, so
//     connState hands it a CRLF, imapserver answers BAD at once, and the
//     connection closes (any commands pipelined before it lose their
//     answers). After STARTTLS the wrapper sees only ciphertext; there
//     compliant clients are still safe as long as AppendLimit is at least
//     4096 bytes (they send larger literals synchronising).
//   - One user never reaches another's mailboxes: every store call names the
//     session's user.
//   - A connection gets maxLoginFailures failed logins, then it is closed.
//     Failed logins are logged with address and user, never the password;
//     unknown users (and users with an unusable configured hash) are
//     verified against a dummy bcrypt hash, so every failure costs one full
//     verification.
//   - Every LOGIN and AUTHENTICATE waits out the penalty of its client
//     address and user name (package authlimit: 2, 4, 8, then 15 s after
//     failures, forgotten after 15 min) before the password is checked,
//     and a failure waits out its new penalty before the NO; nothing ever
//     locks an account.
//   - FETCH and STORE answers are coalesced (connState.cork): imapserver
//     flushes after every response, the connection writes ~64 KiB at a time
//     and the rest when the command returns, before its tagged reply. FETCH
//     reads the store in a loader goroutine, one chunk (bodyChunk messages,
//     bodyChunkBytes) ahead of the session's socket writes, with bodies
//     copied into two arenas handed back and forth; the loader is stopped
//     and waited for before Fetch returns. Converted ENVELOPE and
//     BODYSTRUCTURE values are cached per server (convcache.go, bounded),
//     each entry used only for the store metadata values it was made from.
//   - A FETCH of a body part a message does not have answers the empty
//     string (BODY, BINARY; BINARY.SIZE 0), as Dovecot does, so one odd
//     message never fails a FETCH over many. STORE naming \Recent is BAD.
//   - A session whose update queue outgrows maxPending (selected, but neither
//     polling nor idling) is disconnected at its next command, so its client
//     resynchronises.
//
// # Limits
//
// Configurable (Options, zero value = default):
//
//   - connections, over all listeners: MaxConns (1000) in total and
//     MaxConnsPerAddr (20) per IPv4 address or IPv6 /64, loopback exempt
//     from the latter. The caps wrap the raw listener below TLS (package
//     netlimit); a refused client gets "* BYE Too many connections" (after
//     the handshake on implicit TLS) and never reaches imapserver;
//   - login throttling: AuthLimiter (authlimit defaults);
//   - APPEND size: AppendLimit (50 MiB), advertised as APPENDLIMIT;
//   - mailboxes per user: MaxMailboxes (10,000), NO [LIMIT] beyond;
//   - silence of a logged-in connection, IDLE included: IdleTimeout (35
//     min, never under 30 min). imapserver hard-codes 35 min; connState
//     replaces that deadline as imapserver sets it.
//
// Fixed:
//
//   - PreAuthTimeout (30 s): silence before login, and the time any
//     command may take to arrive once started (imapserver);
//   - MaxCommandLine (50 KiB, literals excluded; the connection ends
//     beyond) and 4096 bytes per buffered string literal (imapserver);
//     5 min per APPEND literal read and per FETCH literal write, 30 s per
//     response write (imapserver);
//   - one SEARCH: nesting depth 100, 1000 keys, 64 text keys (search.go),
//     NO [LIMIT] beyond; LIST patterns are matched in O(name × pattern)
//     (listmatch.go);
//   - at most max(4, 2×GOMAXPROCS) password verifications at once; a
//     successful verification is cached for 5 minutes (at most 10,000
//     entries), keyed by the configured hash and an HMAC of the password
//     under a per-process key, like Dovecot's auth_cache: a changed hash
//     never matches an old entry, failures are never cached, and
//     simultaneous identical logins wait for one verification (auth.go);
//   - maxPending queued updates per idle-less selected session (tracker.go);
//   - convCacheEntries (32,768) converted message structures per server
//     (convcache.go); per FETCH, the body data of at most two chunks in
//     memory (each bodyChunkBytes, 16 MiB, or one larger message).
//
// # Locking
//
// Lock order: userState.createMu (CREATE and RENAME only, held across store
// calls), Server.usersMu, userState.mu, mailboxState.mu. The feed runs
// with the store's writer lock held, so no store method is called while
// holding any of these, and no lock is held while writing to a socket: a
// slow client stalls nobody else.
//
// # Standards
//
// IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) with IDLE, NAMESPACE,
// UIDPLUS, MOVE, SPECIAL-USE, CREATE-SPECIAL-USE, LIST-EXTENDED,
// LIST-STATUS, STATUS=SIZE, ESEARCH, SEARCHRES, CHILDREN, BINARY, UNSELECT,
// ENABLE, APPENDLIMIT, UNAUTHENTICATE, SASL-IR, AUTH=PLAIN and LITERAL-.
package imapfront
