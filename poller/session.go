package poller

// The session layer: one POP3 conversation with an upstream, built on
// go-pop3 v1.0.1, with what go-pop3 lacks added underneath it (dial.go).
// go-pop3 gets its connection from its Dialer already dialed, secured
// (implicit TLS, or STLS after CAPA with the plaintext-injection check;
// never a plaintext fallback) and past the greeting (kept for APOP). That
// connection is a meteredConn, which puts a deadline on every read and
// write, charges every response against a byte budget and a line-length
// limit, and is closed when the operation's context ends. Commands, status
// lines, CAPA, LIST and UIDL go through go-pop3 (Send, ReadOne, Cmd,
// ReadAll); message bodies (RETR, TOP) are read by meteredConn.readBody
// straight from the socket buffer into one buffer per message, because
// go-pop3's ReadAll copies every line and grows its buffer by doubling
// (measured: about 4x the CPU per message).
//
// Invariants:
//   - nothing a server sends after a protocol violation is used: the first
//     transport error, overrun or malformed reply breaks the session;
//   - go-pop3's reader never holds bytes past the line it asked for
//     (meteredConn.Read hands up one line at a time), so readBody sees the
//     whole body;
//   - a message reaches Retrieve's callback only after its terminating "."
//     and a correct reply to the "LIST n" sentinel that follows it, so a
//     message cut short by an unstuffed "." line is never delivered (this
//     is the only guard: the engine commits what Retrieve hands it);
//   - DELEs take effect only if Quit returns nil; Abort never sends QUIT;
//   - errors are *AccountError and never contain the secret.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	pop3 "github.com/knadh/go-pop3"
)

// listItem is one message of a maildrop listing.
type listItem struct {
	Num  int    // message number, valid for this session only
	Size int64  // size from LIST (as the server claims it)
	UIDL string // unique id; "" when the server has no UIDL
}

// Limits on listing data (a lying or hostile server cannot grow memory
// beyond them).
const (
	maxListingBytes = 64 << 20 // LIST or UIDL response (about a million messages)
	maxListingLine  = 1 << 10
	maxUIDLLen      = 255 // RFC 1939 says 70; tolerate sloppy servers, refuse garbage
	maxHeaderBytes  = 4 << 20
	budgetSlack     = 64 << 10
)

// session is one POP3 session in the TRANSACTION state, built on go-pop3.
// A session is used by one goroutine at a time; only Abort may be called
// concurrently with another method. After a transport error, a protocol
// violation or an exceeded budget the session is broken: every later call
// returns the same error and only Quit (which then just closes) or Abort
// make sense.
type session struct {
	acct     Account
	cfg      sessionConfig
	log      *slog.Logger
	pc       *pop3.Conn
	mc       *meteredConn
	greeting string
	caps     capabilities
	capaOK   bool     // the server answered CAPA with +OK
	redact   []string // secret forms to scrub from server replies
	broken   error
}

// dialSession connects to a's server, secures the connection as a.TLS says,
// reads CAPA (again after STLS), and logs in. d opens the TCP connection (nil:
// net.Dialer); log (nil: discard) should already carry the account's name,
// the session adds none. Every error is an *AccountError.
func dialSession(ctx context.Context, a Account, d func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) (*session, error) {
	return openSession(ctx, a, sessionConfig{Dial: d, Logger: log})
}

// openSession is dialSession with explicit tuning.
func openSession(ctx context.Context, a Account, cfg sessionConfig) (*session, error) {
	cfg.setDefaults()
	switch a.Auth {
	case "", "user", "apop", "plain", "xoauth2":
	default:
		return nil, opErr(a, "login", fmt.Errorf("unknown auth mechanism %q (want user, apop, plain or xoauth2): %w", a.Auth, ErrBadConfig))
	}
	if a.Secret == nil {
		return nil, opErr(a, "login", fmt.Errorf("no secret configured: %w", ErrBadCredentials))
	}
	secret, err := a.Secret(ctx)
	if err != nil {
		return nil, &AccountError{Account: a.Name, Op: "secret", Temporary: true, Err: err}
	}
	if err := checkCredential("user name", a.Username); err != nil {
		return nil, opErr(a, "login", err)
	}
	if err := checkCredential("secret", secret); err != nil {
		return nil, opErr(a, "login", err)
	}
	pc, mc, greeting, err := connect(ctx, a, &cfg)
	if err != nil {
		return nil, err
	}
	s := &session{acct: a, cfg: cfg, log: cfg.Logger, pc: pc, mc: mc, greeting: greeting}
	s.redact = secretForms(a.Username, secret)
	ok := false
	defer func() {
		if !ok {
			mc.Close()
		}
	}()
	deadline := time.Now().Add(cfg.DialTimeout)
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	if err := s.readCapa(ctx, deadline); err != nil {
		return nil, err
	}
	if err := s.login(ctx, secret, deadline); err != nil {
		return nil, err
	}
	// LOGIN-DELAY and EXPIRE may be per user ("... USER"): ask again.
	if s.capaOK && capaHasUserArg(s.caps) {
		if err := s.readCapa(ctx, deadline); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

func capaHasUserArg(c capabilities) bool {
	for _, l := range c.Raw {
		f := strings.Fields(strings.ToUpper(l))
		if len(f) == 3 && (f[0] == "LOGIN-DELAY" || f[0] == "EXPIRE") && f[2] == "USER" {
			return true
		}
	}
	return false
}

// Caps returns the capabilities from the last CAPA (after TLS and login).
func (s *session) Caps() capabilities { return s.caps }

// begin starts an operation: it refuses a broken session and closes the
// connection if ctx ends before the returned func is called.
func (s *session) begin(ctx context.Context) (func(), error) {
	if s.broken != nil {
		return nil, s.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(s.acct, "session", err)
	}
	stop := context.AfterFunc(ctx, func() { s.mc.raw.Close() })
	return func() { stop() }, nil
}

// expect sets the budget of the next response; overflow is the error an
// overrun wraps. A response has no deadline of its own after the login
// (only ctx's, if any): it fails when the server stalls (no byte for
// IOTimeout) or drips (under SlowBytes per SlowWindow), however long a
// steady transfer takes.
func (s *session) expect(ctx context.Context, budget, maxLine int64, overflow error) {
	d, _ := ctx.Deadline()
	s.mc.expect(budget, maxLine, d, overflow)
}

// expectStatus sets the budget for one status line.
func (s *session) expectStatus(ctx context.Context) {
	s.expect(ctx, maxStatusLine+4096, maxStatusLine, ErrProtocol)
}

// fail turns an error from go-pop3 into an *AccountError. Transport errors,
// protocol violations and exceeded budgets break the session; a plain -ERR
// reply does not.
func (s *session) fail(ctx context.Context, op string, err error) *AccountError {
	var ae *AccountError
	if errors.As(err, &ae) {
		if ae.Reply == "" {
			s.breakWith(ae)
		}
		return ae
	}
	if s.mc.err != nil || errors.Is(err, ErrProtocol) || errors.Is(err, ErrMessageTooLarge) {
		cause := err
		if s.mc.err != nil && !errors.Is(err, s.mc.err) {
			cause = s.mc.err
		}
		if cerr := ctx.Err(); cerr != nil {
			cause = fmt.Errorf("%w (%v)", cerr, cause)
		}
		ae = opErr(s.acct, op, cause)
		s.breakWith(ae)
		return ae
	}
	if reply, isReply := replyText(err); isReply {
		return replyErr(s.acct, op, s.scrub(reply))
	}
	ae = opErr(s.acct, op, fmt.Errorf("%s: %w", s.scrub(err.Error()), ErrProtocol))
	s.breakWith(ae)
	return ae
}

func (s *session) breakWith(err error) {
	if s.broken == nil {
		s.broken = err
	}
	s.mc.Close()
}

// replyText recognises go-pop3's -ERR errors and rebuilds the reply line.
// go-pop3 returns errors.New(text after "-ERR "), a fixed text for a bare
// "-ERR", and "unknown response: ..." for anything else.
func replyText(err error) (string, bool) {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unknown response: "):
		return "", false
	case msg == "unknown error (no info specified in response)":
		return "-ERR", true
	}
	return "-ERR " + msg, true
}

// continuation reports whether err is go-pop3's reaction to a SASL
// continuation line ("+ data") and returns the data.
func continuation(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	msg, ok := strings.CutPrefix(err.Error(), "unknown response: +")
	if !ok {
		return "", false
	}
	msg = strings.TrimSuffix(msg, ". Neither -ERR, nor +OK")
	if msg != "" && msg[0] != ' ' {
		return "", false // "+OKAY" or similar garbage
	}
	return strings.TrimSpace(msg), true
}

// scrub removes the secret (and its encodings) from a server's words.
func (s *session) scrub(text string) string {
	for _, r := range s.redact {
		text = strings.ReplaceAll(text, r, "[redacted]")
	}
	return text
}

// readCapa issues CAPA through go-pop3 and stores the result.
func (s *session) readCapa(ctx context.Context, deadline time.Time) error {
	s.mc.expect(maxCapaBytes, maxStatusLine, deadline, ErrProtocol)
	buf, err := s.pc.Cmd("CAPA", true)
	if err != nil {
		ae := s.fail(ctx, "capa", err)
		if ae.Reply != "" {
			s.caps, s.capaOK = capabilities{}, false
			return nil
		}
		return ae
	}
	s.caps, s.capaOK = parseCapa(strings.Split(buf.String(), "\r\n")), true
	return nil
}

// HeaderDigests returns, for each message number, the hex SHA-256 of the
// message's header as TOP n 0 returns it (header lines and the empty
// separator line, CRLF line ends). Used to identify messages on servers
// without UIDL. Pipelined when the server allows it.
func (s *session) HeaderDigests(ctx context.Context, nums []int) (map[int]string, error) {
	items := make([]listItem, len(nums))
	for i, n := range nums {
		items[i] = listItem{Num: n}
	}
	out := make(map[int]string, len(nums))
	err := s.multi(ctx, "top", items, func(it listItem) (string, int64) {
		return "TOP " + strconv.Itoa(it.Num) + " 0", maxHeaderBytes
	}, func(it listItem, raw []byte) error {
		sum := sha256.Sum256(raw)
		out[it.Num] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// retrBudget is the most bytes a RETR response for it may take: the size
// limit plus room for dot-stuffing and line ends, or, without a limit,
// twice the listed size plus 1 MiB.
func retrBudget(it listItem, maxSize int64) int64 {
	if maxSize > 0 {
		return maxSize + maxSize/4 + budgetSlack
	}
	return 2*it.Size + 1<<20
}

// Retrieve fetches items with RETR, in order, calling fn with each message
// as received (CRLF line ends, dot-stuffing removed; raw is not reused and fn
// may keep it). Each message is checked before fn sees it: it must fit its
// byte budget (see retrBudget), must keep arriving (no stall, no drip; no
// limit on its total time), and must be followed by a correct reply to a
// "LIST n" sentinel, which catches a message cut short by an unstuffed "."
// line. Commands are pipelined (up to
// the window) when the server advertises PIPELINING.
//
// Items whose listed size exceeds maxSize (> 0) are refused with
// ErrMessageTooLarge before anything is sent; callers filter them first.
// If Retrieve fails, the failing message is the first item fn has not seen;
// an error wrapping ErrMessageTooLarge means that message exceeded its
// budget. An error from fn is returned as is and breaks the session.
func (s *session) Retrieve(ctx context.Context, items []listItem, maxSize int64, fn func(it listItem, raw []byte) error) error {
	if maxSize > 0 {
		for _, it := range items {
			if it.Size > maxSize {
				return &AccountError{Account: s.acct.Name, Op: "retr",
					Err: fmt.Errorf("message %d: listed size %d over limit %d: %w", it.Num, it.Size, maxSize, ErrMessageTooLarge)}
			}
		}
	}
	return s.multi(ctx, "retr", items, func(it listItem) (string, int64) {
		return "RETR " + strconv.Itoa(it.Num), retrBudget(it, maxSize)
	}, fn)
}

// multi runs a multi-line command per item (RETR or TOP), each followed by
// a "LIST n" sentinel, pipelined in a sliding window when the server
// advertises PIPELINING, one at a time otherwise. cmd returns the command
// line and the byte budget of the response's body.
func (s *session) multi(ctx context.Context, op string, items []listItem,
	cmd func(listItem) (line string, budget int64), fn func(listItem, []byte) error) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	pipelined := s.caps.Pipelining
	window := 1
	if pipelined {
		window = s.cfg.Window
	}
	sentinel := func(it listItem) error {
		if err := s.pc.Send("LIST " + strconv.Itoa(it.Num)); err != nil {
			return s.fail(ctx, op, err)
		}
		return nil
	}
	sent, inflight := 0, 0
	for _, it := range items {
		// Refill the window when it is half empty, in one write: the
		// server gets commands in batches and we make few syscalls.
		if sent < len(items) && (inflight == 0 || inflight <= window/2) {
			var batch strings.Builder
			for sent < len(items) && inflight < window {
				line, _ := cmd(items[sent])
				if batch.Len() > 0 {
					batch.WriteString("\r\n")
				}
				batch.WriteString(line)
				if pipelined {
					batch.WriteString("\r\nLIST " + strconv.Itoa(items[sent].Num))
				}
				sent++
				inflight++
			}
			if err := s.pc.Send(batch.String()); err != nil {
				return s.fail(ctx, op, err)
			}
		}
		s.expectStatus(ctx)
		if _, err := s.pc.ReadOne(); err != nil {
			ae := s.fail(ctx, op, err)
			if ae.Reply != "" {
				ae.Err = fmt.Errorf("message %d: %w", it.Num, ae.Err)
				if pipelined {
					// The sentinel and later replies are still coming;
					// give the connection up rather than resynchronise.
					s.breakWith(ae)
				}
			}
			return ae
		}
		// The body comes straight from the metered connection: go-pop3's
		// ReadAll would copy every line and grow its buffer by doubling.
		// It may take as long as a steady server needs; a stalling or
		// dripping one is cut off (see expect).
		_, budget := cmd(it)
		s.expect(ctx, budget, 0, ErrMessageTooLarge)
		body, err := s.mc.readBody(it.Size)
		if err != nil {
			return s.fail(ctx, op, fmt.Errorf("message %d: %w", it.Num, err))
		}
		if !pipelined {
			if err := sentinel(it); err != nil {
				return err
			}
		}
		s.expectStatus(ctx)
		got, err := s.pc.ReadOne()
		if err != nil || !sentinelOK(got, it.Num) {
			if err == nil {
				err = fmt.Errorf("message %d: reply to LIST %d was %q: %w", it.Num, it.Num, s.scrub(truncate(string(got), 80)), ErrProtocol)
			} else if _, isReply := replyText(err); isReply && s.mc.err == nil {
				err = fmt.Errorf("message %d: reply to LIST %d: %v: %w", it.Num, it.Num, s.scrub(err.Error()), ErrProtocol)
			}
			return s.fail(ctx, op, err)
		}
		inflight--
		if err := fn(it, body); err != nil {
			s.breakWith(opErr(s.acct, op, fmt.Errorf("stopped after message %d: %w", it.Num, err)))
			return err
		}
	}
	return nil
}

// sentinelOK checks a "LIST n" reply ("n size").
func sentinelOK(reply []byte, num int) bool {
	f := strings.Fields(string(reply))
	return len(f) == 2 && f[0] == strconv.Itoa(num)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Delete marks messages for deletion with DELE (pipelined when possible).
// The server removes them only when Quit succeeds. On a -ERR reply Delete
// still reads every outstanding reply, so the session stays usable, and
// returns the first error; the DELEs that succeeded still take effect at
// Quit.
func (s *session) Delete(ctx context.Context, nums []int) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	window := 1
	if s.caps.Pipelining {
		window = s.cfg.Window
	}
	var first error
	for start := 0; start < len(nums); start += window {
		batch := nums[start:min(start+window, len(nums))]
		for _, n := range batch {
			if err := s.pc.Send("DELE " + strconv.Itoa(n)); err != nil {
				return s.fail(ctx, "dele", err)
			}
		}
		for _, n := range batch {
			s.expectStatus(ctx)
			if _, err := s.pc.ReadOne(); err != nil {
				ae := s.fail(ctx, "dele", err)
				if ae.Reply == "" {
					return ae
				}
				ae.Err = fmt.Errorf("message %d: %w", n, ae.Err)
				if first == nil {
					first = ae
				}
			}
		}
	}
	return first
}

// Quit sends QUIT and closes the connection. It returns nil only when the
// server answered "+OK", i.e. the DELEs of this session were committed. On
// any error the deletions must be treated as not done (RFC 1939 section 6).
func (s *session) Quit(ctx context.Context) error {
	end, err := s.begin(ctx)
	if err != nil {
		s.mc.Close()
		return err
	}
	defer end()
	defer s.mc.Close()
	s.expectStatus(ctx)
	s.mc.capturing, s.mc.capture = true, nil
	if _, err := s.pc.Cmd("QUIT", false); err != nil {
		return s.fail(ctx, "quit", err)
	}
	// go-pop3 takes an empty line for +OK; insist on the real thing, read
	// from the wire after QUIT was sent.
	if !strings.HasPrefix(string(s.mc.capture), "+OK") {
		return s.fail(ctx, "quit", fmt.Errorf("reply to QUIT was %q: %w", truncate(string(s.mc.capture), 40), ErrProtocol))
	}
	s.breakWith(opErr(s.acct, "session", errors.New("session ended with QUIT")))
	return nil
}

// Abort closes the connection without QUIT, so no DELE of this session
// takes effect. It is safe to call at any time, also concurrently with
// another method (which then fails), and more than once.
func (s *session) Abort() {
	s.mc.raw.Close()
}

// serverReplied reports whether err is an AccountError carrying the
// server's own reply (a -ERR), as opposed to a broken connection.
func serverReplied(err error) bool {
	var ae *AccountError
	return errors.As(err, &ae) && ae.Reply != ""
}

// probeServer connects to a's server, secures the connection as a.TLS
// says, reads CAPA, and QUITs without logging in: what can be checked of
// a server for which no credentials are known (provider mode). Every error
// is an *AccountError with the same hints as a poll's.
func probeServer(ctx context.Context, a Account, cfg sessionConfig) error {
	cfg.setDefaults()
	pc, mc, greeting, err := connect(ctx, a, &cfg)
	if err != nil {
		return err
	}
	s := &session{acct: a, cfg: cfg, log: cfg.Logger, pc: pc, mc: mc, greeting: greeting}
	end, err := s.begin(ctx)
	if err != nil {
		mc.Close()
		return err
	}
	err = s.readCapa(ctx, time.Now().Add(cfg.DialTimeout))
	end()
	if err != nil {
		mc.Close()
		return err
	}
	return s.Quit(ctx)
}
