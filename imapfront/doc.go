// Package imapfront is popbridge's IMAP server: a backend for go-imap v2's
// imapserver (v2.0.0-beta.8) over the store. It imports the store, never
// the poller or bridge. The limits and the longer story are in
// docs/imapfront-internals.md; the beta.8 behaviours it works around, with
// their upstream links, in docs/imapserver-workarounds.md.
//
// # Model
//
// A Server accepts connections itself (caps below TLS, a pre-login budget)
// and hands each to one of a few imapserver.Server instances, chosen per
// connection, because imapserver decides whether LOGIN is allowed per
// server: loopback, implicit-TLS and AllowPlaintextAuth connections go to
// one with InsecureAuth, the others to one that answers LOGINDISABLED
// until STARTTLS. Every session of a user shares one userState; every
// selected mailbox has one mailboxState, the tracker shared by all its
// sessions. The store's change feed (in commit order, on the feed's own
// goroutine) is applied to the mailboxState and queued to each session's
// view; a session waits for the feed to catch up with every commit when a
// command begins and before it writes its updates (so its own changes
// come before its tagged reply), drains its queue after each command and
// at once in IDLE.
//
// # Invariants
//
//   - A session's sequence numbers are its own client's view, never the
//     store's or another session's; a message expunged elsewhere but not
//     yet announced is skipped, never mapped to a neighbour.
//   - Each session learns every add, flag change and expunge in commit
//     order, each EXPUNGE exactly once, never during FETCH, STORE or
//     SEARCH; a keyword reaches a client only after the FLAGS that
//     announces it.
//   - EXAMINE is read-only for real.
//   - A rejected literal poisons its connection, so its bytes never run as
//     commands (LITERAL+ is not advertised).
//   - One user never reaches another's mailboxes: every store call names
//     the session's user.
//   - Every login attempt waits out the penalty of its address and user
//     name, one attempt per address at a time; unknown users cost a full
//     verification too; nothing ever locks an account.
//   - A client's syntax error is BAD, never NO [SERVERBUG]; one damaged or
//     odd message never fails a FETCH or SEARCH over many.
//
// # Locking
//
// Lock order: userState.createMu (CREATE and RENAME only, held across store
// calls), Server.usersMu, userState.mu, mailboxState.mu. The feed takes
// them, so no session waits for the feed (or calls a store method) while
// holding one, and no lock is held while writing to a socket: a slow
// client stalls nobody else.
package imapfront
