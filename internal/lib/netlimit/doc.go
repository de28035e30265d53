// Package netlimit caps the number of open connections a listener hands out,
// in total and per client address.
//
// # Model
//
// [NewListener] wraps a net.Listener. [Listener.Accept] takes connections
// from the inner listener and counts each one it returns against two caps:
// Options.MaxConns for all connections together and Options.MaxPerAddr for
// connections from one client address (one IPv4 address, or one IPv6 /64 by
// default). A connection over either cap is not returned: it is handed to
// Options.Reject (for example to write "* BYE too many connections"), closed,
// reported to Options.OnReject, and Accept goes on waiting for the next one.
// Listeners given the same [Counter] (Options.Counter) share their counts,
// so the caps apply to their connections together (each Listener checks
// its own MaxConns and MaxPerAddr against the shared counts).
// A slot is freed when the returned connection's Close is called, once, no
// matter how often Close is called. Callers must therefore close every
// connection Accept returns, which net/http, go-imap's imapserver and
// crypto/tls all do.
//
// # Where to put it: below TLS
//
// Wrap the raw TCP listener and put TLS on top:
//
//	ln, _ := net.Listen("tcp", ":993")
//	lim := netlimit.NewListener(ln, netlimit.Options{})
//	tlsLn := tls.NewListener(lim, tlsConfig)
//	server.Serve(tlsLn)
//
// Never wrap a TLS listener: go-imap's imapserver decides whether
// cleartext-looking logins are allowed with a *tls.Conn type assertion on the
// connection it gets (canAuth), so a netlimit connection around a *tls.Conn
// would turn port 993 into LOGINDISABLED. Below TLS, Reject sees the raw
// connection before any handshake; on an implicit-TLS port it must either do
// the handshake itself (tls.Server(c, cfg)) before writing, or be nil so the
// connection is simply closed. Rejection therefore costs the server no
// handshake unless Reject asks for one.
//
// # Concurrency and goroutines
//
// Accept may be called from several goroutines; the counts are guarded by
// the Counter's mutex and the rejection state by the Listener's, neither
// held while calling Options callbacks or doing I/O, nor both at once. Reject
// runs in a goroutine per rejected connection, at most [MaxRejecting] at a
// time (beyond that, rejected connections are closed without calling
// Reject), each under a deadline of Options.RejectTimeout. [Listener.Close]
// closes the inner listener, which unblocks pending Accept calls, and waits
// for those goroutines to finish. Connections already returned stay open and
// keep their slots until closed.
package netlimit
