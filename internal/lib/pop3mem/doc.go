// Package pop3mem is an in-process POP3 server over an in-memory maildrop:
// the demo's sample upstream, and the fake upstream of the tests, which can
// misbehave on command ([Faults]; the zero value is a well-behaved server).
// It is shaped like net/http/httptest: [NewServer] starts it on 127.0.0.1 with a random port,
// [Server.Addr] tells where, and [Server.Close] stops it and every
// connection. The server implements RFC 1939 (USER/PASS, APOP, STAT, LIST,
// UIDL, TOP, RETR, DELE, RSET, NOOP, QUIT with the AUTHORIZATION,
// TRANSACTION and UPDATE states and correct dot-stuffing), RFC 2449 CAPA,
// RFC 2595 STLS, RFC 5034 AUTH PLAIN and the XOAUTH2 SASL mechanism (both the
// initial-response and the two-step form), and implicit TLS
// ([Server.StartTLS]) with a certificate the caller supplies ([WithTLS]).
//
// # Model
//
// The server holds one maildrop (a list of [Message]) shared by all
// connections. A session takes a snapshot of the maildrop when it logs in;
// its message numbers refer to that snapshot for the whole session, as in a
// real server. DELE marks a message in the session only; the marked messages
// are removed from the maildrop when the client sends QUIT in the TRANSACTION
// state (UPDATE state), before the server replies "+OK". A session that ends
// any other way removes nothing. The maildrop can be changed at any time with
// [Server.AddMessage], [Server.AddMessageUIDL] and [Server.SetMessages];
// sessions already logged in do not see the change.
//
// Message bytes are normalised to CRLF line endings when added (a missing
// final line end is added too); a client reading RETR receives exactly
// [Message.Raw] after removing the dot-stuffing, and LIST reports len(Raw).
//
// Invariants a test can rely on: every counter ([Server.Count]) is
// incremented when the command line is read, before any reply is written, so
// a client that has read a reply also sees the count; deletions are applied
// before the "+OK" to QUIT is written; [Server.Close] returns only after every
// connection goroutine has ended.
//
// # Misbehaviour
//
// [Faults] lists the ways the server can break the protocol on purpose
// (dropped and stalled connections, slow drip, a slow but steady rate, -ERR
// on any command, missing UIDL, message numbers reordered between sessions,
// bare LF, giant lines, unstuffed "." lines, endless messages, lying LIST
// sizes, lost or failing QUIT, plaintext injected after STLS, STLS not
// offered). Set them with
// [Server.SetFaults] or [Server.UpdateFaults] at any time; every command reads
// the current setting. Stalls end when the client closes the connection or
// when [Server.Close] is called.
package pop3mem
