package imapfront

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
)

// connState wraps one accepted connection (plain TCP, or the *tls.Conn of an
// implicit-TLS listener) before imapserver sees it. It
//
//   - poisons the connection when the server rejects a literal the client
//     may already be sending: imapserver does not drain it, so its bytes
//     would be executed as commands (docs/imapserver-workarounds.md, "Rejected literals run as commands"). Once poisoned, every
//     session method refuses and the socket is closed;
//   - knows when the connection is quiet (the server is blocked reading the
//     next command and no session method runs), the moment Shutdown may
//     send BYE without cutting a reply short;
//   - tells the server when it is closed.
//
// Literal rejections are recognised on plaintext writes only: after
// STARTTLS imapserver wraps this conn in its own *tls.Conn and the writes
// seen here are ciphertext. Not advertising LITERAL+ is the first line of
// defence there (see doc.go).
type connState struct {
	net.Conn
	srv    *Server
	remote string
	addr   netip.Addr // client address, for the login throttle; zero if unknown

	poisoned atomic.Bool
	// ran is set when a session method starts and cleared when a tagged
	// response is written: a tagged NO [SERVERBUG] written while it is
	// false comes from imapserver's command parser (fixServerBug).
	ran atomic.Bool
	// tlsUp is set once STARTTLS succeeded: writes seen here are then
	// ciphertext.
	tlsUp atomic.Bool
	// trace, when set, logs the traffic of a traced user (trace.go).
	trace  atomic.Pointer[imapTrace]
	lits   literalScanner // client input; only the reading goroutine uses it
	inject []byte         // bytes Read returns before reading more; reading goroutine only
	closed sync.Once
	done   chan struct{} // closed by Close

	// Write coalescing (cork/uncork): while a session method writes a
	// batch of responses, imapserver's flush after every response lands in
	// wbuf and reaches the socket in writes of about corkSize bytes.
	wmu    sync.Mutex
	corked bool
	wbuf   []byte
	// wdl is the write deadline imapserver last asked for while corked
	// (SetWriteDeadline): applied to the socket only when buffered data
	// is written to it.
	wdl time.Time

	// preElem is c's element in Server.pre while c has not logged in;
	// guarded by Server.pre.mu.
	preElem *list.Element
	// readErr is the deadline error of a read that timed out: every later
	// read fails with it at once (stickyTimeout).
	readErr error

	mu       sync.Mutex
	imapConn *imapserver.Conn
	sess     *session
	reading  bool          // blocked in Read
	active   int           // session methods running
	quietCh  chan struct{} // closed on the next state change, for byeWhenQuiet
	draining bool          // BYE decided: refuse new session methods
}

func newConnState(s *Server, c net.Conn) *connState {
	return &connState{Conn: c, srv: s, remote: c.RemoteAddr().String(), addr: remoteAddr(c.RemoteAddr()), done: make(chan struct{})}
}

// remoteAddr returns the IP address of a, unmapped and without zone; the
// zero Addr when a is not an IP address.
func remoteAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap().WithZone("")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// idleDeadlineOver tells imapserver's idle deadline apart from its others:
// it sets 35 minutes to wait for a logged-in client's next command (and in
// IDLE), and at most 5 minutes for anything else (conn.go constants).
const idleDeadlineOver = 10 * time.Minute

// SetReadDeadline implements net.Conn. imapserver hard-codes its idle
// timeout; a deadline that far away is replaced by one IdleTimeout from
// now. After STARTTLS the *tls.Conn forwards its deadlines here too.
func (c *connState) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && time.Until(t) > idleDeadlineOver {
		t = time.Now().Add(c.srv.idleTimeout)
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn. imapserver sets a write deadline
// when it starts every response, when it starts and ends every literal, and
// clears it when the response ends: four timer updates per FETCH response,
// 7 % of a 100,000-message header sync's CPU. While corked, its writes only
// reach wbuf, so the deadline is recorded and applied to the socket when
// buffered data is written to it (bufferLocked, uncork): every write to the
// socket stays bounded by the deadline imapserver last set.
func (c *connState) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	if c.corked {
		c.wdl = t
		c.wmu.Unlock()
		return nil
	}
	c.wmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// attach records the imapserver connection and session of cs.
func (c *connState) attach(ic *imapserver.Conn, sess *session) {
	c.mu.Lock()
	c.imapConn = ic
	c.sess = sess
	c.mu.Unlock()
}

// Read implements net.Conn and records that the server waits for input.
// It also watches the client's literal announcements (literalScanner) and
// poisons the connection before the server parses a literal it will
// refuse:
//
//   - a non-synchronising literal over 4096 bytes (LITERAL+ is not
//     advertised): imapserver would run its bytes as commands;
//   - a synchronising literal over 4096 bytes in any command but APPEND:
//     imapserver refuses it without a continuation request and then waits
//     for the end of a line that a compliant client never sends (it waits
//     for "+"), so both sides would hang until the 30 s command timeout. A
//     CRLF is handed to imapserver after the announcement, so it answers
//     BAD at once; the poisoned connection closes after that answer.
func (c *connState) Read(p []byte) (int, error) {
	if len(c.inject) > 0 {
		n := copy(p, c.inject)
		c.inject = c.inject[n:]
		return n, nil
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	c.setReading(true)
	n, err := c.Conn.Read(p)
	c.setReading(false)
	if t := c.trace.Load(); t != nil && n > 0 {
		t.client(p[:n])
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// imapserver waits for a command in two steps, each under its
		// own 30 s deadline when not logged in: the first byte, then
		// the rest. When the first times out it tries the second anyway,
		// so a silent client was closed after 60 s, not the documented
		// PreAuthTimeout. A client silent past a deadline is done.
		c.readErr = err
	}
	if n > 0 && !c.poisoned.Load() {
		switch v, rest := c.lits.feed(p[:n]); v {
		case litNonSyncTooBig:
			c.poisoned.Store(true)
			c.srv.log.Warn("imap connection closed after a rejected literal", "conn", c.remote, "reason", "non-synchronizing literal over 4096 bytes")
		case litSyncTooBig:
			c.poisoned.Store(true)
			c.srv.log.Warn("imap connection closed after a rejected literal", "conn", c.remote, "reason", "synchronizing literal over 4096 bytes outside APPEND")
			// Whatever the client sent after the announcement is dropped
			// (it cannot be a compliant client's) and replaced by the
			// line end imapserver waits for.
			n -= rest
			c.inject = []byte("\r\n")
			k := copy(p[n:], c.inject)
			n += k
			c.inject = c.inject[k:]
		}
	}
	return n, err
}

func (c *connState) setReading(r bool) {
	c.mu.Lock()
	c.reading = r
	c.changedLocked()
	c.mu.Unlock()
}

// changedLocked wakes byeWhenQuiet. Must be called with c.mu held.
func (c *connState) changedLocked() {
	if c.quietCh != nil {
		close(c.quietCh)
		c.quietCh = nil
	}
}

// Write implements net.Conn. A tagged literal rejection written while no
// session method runs (so it cannot be message data of a FETCH) poisons the
// connection once it has been sent.
func (c *connState) Write(p []byte) (int, error) {
	if t := c.trace.Load(); t != nil {
		t.server(p)
	}
	c.wmu.Lock()
	if c.corked {
		n, err := c.bufferLocked(p)
		c.wmu.Unlock()
		return n, err
	}
	c.wmu.Unlock()
	orig := len(p)
	if !c.tlsUp.Load() {
		if q := c.fixServerBug(p); q != nil {
			p = q
		}
	}
	n, err := c.Conn.Write(p)
	if n == len(p) {
		n = orig
	} else {
		n = min(n, orig)
	}
	if c.poisoned.Load() && len(p) > 0 && p[0] != '*' && p[0] != '+' {
		// The tagged answer to the poisoned command went out: close.
		c.Conn.Close()
		return n, err
	}
	if isLiteralRejection(p) {
		c.mu.Lock()
		active := c.active
		c.mu.Unlock()
		if active == 0 {
			c.poison()
		}
	}
	return n, err
}

// serverBugTail ends imapserver's answer to an error that is neither an
// *imap.Error nor a parse error it recognises.
const serverBugTail = " NO [SERVERBUG] Internal server error\r\n"

// fixServerBug looks at a plaintext write of imapserver. go-imap beta.8
// answers some malformed commands NO [SERVERBUG] instead of BAD: the
// parser's own errors that are not imapwire.DecoderExpectError (conn.go
// readCommand), namely an argument that is not valid modified UTF-7 (a
// LIST pattern, upstream PR emersion/go-imap#702, or a mailbox name), a
// sequence set or unknown SEARCH key that imapnum cannot parse ("UID
// SEARCH TEXT wool socks"), and a command over the size limit. None of
// these reaches a session method, so a tagged SERVERBUG written while no
// session method ran since the last tagged response is the client's
// syntax error: fixServerBug returns p with that line replaced, or nil to
// write p as it is. The replacement is BAD [CLIENTBUG], except where the
// command tells which error it was: a mailbox name or LIST pattern that is
// not modified UTF-7 (see the cases below). It also counts the SERVERBUG
// answers that remain (Options.OnServerBug) and clears c.ran after every
// tagged response.
func (c *connState) fixServerBug(p []byte) []byte {
	c.mu.Lock()
	active := c.active
	c.mu.Unlock()
	if active > 0 {
		return nil // a session method writes: message data, not a status
	}
	last := p
	if len(p) >= 2 {
		if i := bytes.LastIndex(p[:len(p)-2], []byte("\r\n")); i >= 0 {
			last = p[i+2:]
		}
	}
	if len(last) == 0 || last[0] == '*' || last[0] == '+' || !bytes.HasSuffix(last, []byte("\r\n")) {
		return nil
	}
	if bytes.HasSuffix(last, []byte(" OK Begin TLS negotiation now\r\n")) {
		c.tlsUp.Store(true)
	}
	ran := c.ran.Swap(false)
	tag, rest, _ := bytes.Cut(last, []byte(" "))
	if !bytes.HasPrefix(rest, []byte("NO [SERVERBUG]")) {
		return nil
	}
	if ran || !bytes.Equal(last[len(tag):], []byte(serverBugTail)) {
		c.srv.serverBug()
		return nil
	}
	q := make([]byte, 0, len(p)+16)
	q = append(q, p[:len(p)-len(last)]...)
	q = append(q, tag...)
	switch name := c.lits.names.name(tag); name {
	case "LIST", "LSUB":
		// Its only such error is a reference or pattern that is not
		// valid modified UTF-7. No mailbox name matches it: the answer
		// is the empty list, as Dovecot's (ImapTest atoms).
		return append(q, " OK "+name+" completed\r\n"...)
	case "CREATE", "RENAME":
		// Their only such error is a mailbox name that is not valid
		// modified UTF-7.
		return append(q, " NO [CANNOT] Mailbox name is not valid modified UTF-7\r\n"...)
	case "SELECT", "EXAMINE", "DELETE", "STATUS", "SUBSCRIBE", "UNSUBSCRIBE", "APPEND":
		// Likewise; no mailbox has such a name (Dovecot answers NO).
		return append(q, " NO [NONEXISTENT] Mailbox name is not valid modified UTF-7\r\n"...)
	}
	return append(q, " BAD [CLIENTBUG] Syntax error\r\n"...)
}

// corkSize is how many bytes a corked connection collects before writing
// them to the socket; a write at least half that size goes out at once,
// together with what is buffered (one writev, no copy).
const corkSize = 64 << 10

// corkFlushTimeout bounds the final write of uncork, like imapserver's own
// 30 s per response (imapserver has already cleared its deadline by then).
const corkFlushTimeout = 30 * time.Second

// wbufPool recycles the cork buffers: a connection holds one only while a
// session method writes.
var wbufPool = sync.Pool{New: func() any { b := make([]byte, 0, corkSize); return &b }}

// cork makes Write collect data until uncork, so that the many small
// responses of one command (imapserver flushes after every FETCH response)
// reach the socket in few large writes. Only the connection's goroutine
// calls cork and uncork, inside a session method: no other goroutine writes
// to the connection then (IDLE has its own command, and BYE on shutdown
// waits until no session method runs).
func (c *connState) cork() {
	c.wmu.Lock()
	if !c.corked {
		c.corked = true
		c.wbuf = (*wbufPool.Get().(*[]byte))[:0]
		c.wdl = time.Time{}
	}
	c.wmu.Unlock()
}

// uncork writes what cork collected and makes Write direct again.
func (c *connState) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.corked {
		return nil
	}
	c.corked = false
	var err error
	if len(c.wbuf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(corkFlushTimeout))
		_, err = c.Conn.Write(c.wbuf)
	}
	// The deadline imapserver last asked for (none, between responses).
	c.Conn.SetWriteDeadline(c.wdl)
	b := c.wbuf[:0]
	c.wbuf = nil
	wbufPool.Put(&b)
	if err != nil {
		return fmt.Errorf("write responses: %w", err)
	}
	return nil
}

// bufferLocked is Write on a corked connection. Must be called with c.wmu
// held. The deadline imapserver last set (SetWriteDeadline) applies to the
// writes it makes to the socket; none set: corkFlushTimeout.
func (c *connState) bufferLocked(p []byte) (int, error) {
	if len(c.wbuf)+len(p) <= corkSize {
		c.wbuf = append(c.wbuf, p...)
		return len(p), nil
	}
	dl := c.wdl
	if dl.IsZero() {
		dl = time.Now().Add(corkFlushTimeout)
	}
	c.Conn.SetWriteDeadline(dl)
	if len(p) < corkSize/2 {
		if _, err := c.Conn.Write(c.wbuf); err != nil {
			c.wbuf = c.wbuf[:0]
			return 0, err
		}
		c.wbuf = append(c.wbuf[:0], p...)
		return len(p), nil
	}
	held := int64(len(c.wbuf))
	bufs := net.Buffers{c.wbuf, p}
	n, err := bufs.WriteTo(c.Conn)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		return int(max(0, min(n-held, int64(len(p))))), err
	}
	return len(p), nil
}

// Close implements net.Conn; it also tells the server the connection ended.
func (c *connState) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		close(c.done)
		c.srv.removeConn(c)
	})
	return err
}

// poison marks the connection unusable and closes it.
func (c *connState) poison() {
	if c.poisoned.Swap(true) {
		return
	}
	c.srv.log.Warn("imap connection closed after a rejected literal", "conn", c.remote)
	c.Conn.Close()
}

// enter marks a session method running; it fails when the connection is
// poisoned or the server is sending BYE.
func (c *connState) enter() error {
	if c.poisoned.Load() {
		return errPoisoned
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return errShuttingDown
	}
	c.active++
	c.ran.Store(true)
	c.changedLocked()
	return nil
}

// leave ends what enter began.
func (c *connState) leave() {
	c.mu.Lock()
	c.active--
	c.changedLocked()
	c.mu.Unlock()
}

// byeWhenQuiet waits until the connection is between commands, then sends
// BYE and closes it. It gives up when ctx is done (Shutdown then closes).
func (c *connState) byeWhenQuiet(ctx context.Context) {
	for {
		c.mu.Lock()
		if c.reading && c.active == 0 {
			c.draining = true
			ic := c.imapConn
			c.mu.Unlock()
			if ic == nil {
				c.Close()
				return
			}
			ic.Bye("Server is shutting down")
			c.Close()
			return
		}
		if c.quietCh == nil {
			c.quietCh = make(chan struct{})
		}
		ch := c.quietCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// maxNonSyncLiteral is the largest non-synchronising literal imapserver
// accepts without LITERAL+ (LITERAL-, RFC 7888).
const maxNonSyncLiteral = 4096

// Verdicts of literalScanner.feed.
const (
	litOK            = iota
	litNonSyncTooBig // "{n+}" with n > maxNonSyncLiteral
	litSyncTooBig    // "{n}" with n > maxNonSyncLiteral outside APPEND
)

// headKeep is how much of a command's first line literalScanner keeps: a
// tag and the command name.
const headKeep = 64
