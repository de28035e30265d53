package imapfront

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/popbridge/popbridge/internal/lib/authlimit"
	"github.com/popbridge/popbridge/store"
)

// Test users: login name -> password.
var testPasswords = map[string]string{"alice": "alice-secret", "bob": "bob-secret"}

// testEnv is a server on 127.0.0.1:0 over a store in a temporary directory.
type testEnv struct {
	t     testing.TB
	st    *store.Store
	dir   string // the store's data directory
	srv   *Server
	addr  string
	logs  *logBuffer
	hints *hintRecorder
	clock *fakeClock
}

// fakeClock drives the login throttle of test servers: sleeping records
// the duration and advances the clock at once, so no test really waits.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []sleepRecord
}

// ioWait bounds every wait for an answer the test expects. It only turns
// a hang into a failure, so it is generous: the suite runs under -race on
// a loaded 2-core machine, where bcrypt alone can take seconds.
const ioWait = 30 * time.Second

// sleepRecord is one throttle sleep.
type sleepRecord struct {
	d time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, sleepRecord{d: d})
	c.now = c.now.Add(d)
	return ctx.Err()
}

// advance moves the clock forward without recording a sleep.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// take returns and forgets the recorded sleeps.
func (c *fakeClock) take() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, len(c.sleeps))
	for i, s := range c.sleeps {
		out[i] = s.d
	}
	c.sleeps = nil
	return out
}

type envOption func(*Options)

// testHashes are computed once with the minimum bcrypt cost.
var testHashes = sync.OnceValue(func() map[string]string {
	m := make(map[string]string)
	for u, p := range testPasswords {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		m[u] = string(h)
	}
	return m
})

// logBuffer is a concurrency-safe log sink for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// hintRecorder records Hint calls.
type hintRecorder struct {
	mu    sync.Mutex
	hints []string
}

func (h *hintRecorder) Hint(user, mailbox string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hints = append(h.hints, user+":"+mailbox)
}

func (h *hintRecorder) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hints...)
}

func newEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	return newEnvHook(t, nil, opts...)
}

// newEnvHook is newEnv with hook applied to the server before it serves,
// for the unexported test knobs.
func newEnvHook(t testing.TB, hook func(*Server), opts ...envOption) *testEnv {
	t.Helper()
	return newEnvDir(t, t.TempDir(), hook, opts...)
}

// newEnvDir is newEnvHook with the store in dir.
func newEnvDir(t testing.TB, dir string, hook func(*Server), opts ...envOption) *testEnv {
	t.Helper()
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	logs := &logBuffer{}
	hints := &hintRecorder{}
	clock := newFakeClock()
	o := Options{
		Store:       st,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Hinter:      hints,
		AuthLimiter: authlimit.New(authlimit.Options{Now: clock.Now, Sleep: clock.Sleep}),
	}
	for name, h := range testHashes() {
		o.Users = append(o.Users, User{Name: name, PasswordHash: h})
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hooksOf(t, srv) // counts panics from the start
	if hook != nil {
		hook(srv)
	}
	// What Serve does first, done here so that every message the test
	// delivers is deterministically \Recent (recent.go).
	srv.ensureFeed()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	env := &testEnv{t: t, st: st, dir: dir, srv: srv, addr: ln.Addr().String(), logs: logs, hints: hints, clock: clock}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioWait)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		st.Close()
		if strings.Contains(logs.String(), "panic") {
			t.Errorf("server logged a panic:\n%s", logs.String())
		}
	})
	return env
}

// user returns the store user of name, creating it.
func (e *testEnv) user(name string) store.User {
	e.t.Helper()
	u, err := e.st.EnsureUser(context.Background(), name)
	if err != nil {
		e.t.Fatalf("EnsureUser: %v", err)
	}
	return u
}

// mailbox returns a mailbox of user.
func (e *testEnv) mailbox(user, name string) store.Mailbox {
	e.t.Helper()
	u := e.user(user)
	mb, err := e.st.MailboxByName(context.Background(), u.ID, name)
	if err != nil {
		e.t.Fatalf("MailboxByName(%q): %v", name, err)
	}
	return mb
}

// deliver stores raw into user's folder the way the poller does.
func (e *testEnv) deliver(user, folder string, raw string) store.Delivered {
	e.t.Helper()
	return deliverTo(e.t, e.st, user, folder, raw)
}

// deliverAll delivers msg(subj) for each subject, in order, to user's folder.
func (e *testEnv) deliverAll(user, folder string, subjects ...string) {
	e.t.Helper()
	for _, subj := range subjects {
		deliverTo(e.t, e.st, user, folder, msg(subj))
	}
}

// deliverTo is deliver for a given testing.TB (inside fuzz targets, the
// target's t).
func deliverTo(t testing.TB, st *store.Store, user, folder string, raw string) store.Delivered {
	t.Helper()
	if _, err := st.EnsureUser(context.Background(), user); err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	d, err := st.Deliver(context.Background(), []store.Delivery{{
		Account: "acct-" + user, UIDL: fmt.Sprintf("uidl-%d", time.Now().UnixNano()), Digest: "d",
		User: user, Folder: folder, Raw: []byte(raw),
	}})
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return d[0]
}

// msg returns a small message with subject subj.
func msg(subj string) string {
	return "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: " + subj +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <" + strings.ReplaceAll(subj, " ", ".") +
		"@example.org>\r\n\r\nHello, this is " + subj + ".\r\n"
}

// client dials and logs in with imapclient.
func (e *testEnv) client(user string) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, testPasswords[user]).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// rawClient speaks IMAP line by line, for exact assertions on the wire.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	n    int
}

func (e *testEnv) raw() *rawClient {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: e.t, conn: conn, br: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		e.t.Fatalf("greeting: %q", l)
	}
	return c
}

// rawLogin dials and logs in.
func (e *testEnv) rawLogin(user string) *rawClient {
	c := e.raw()
	c.ok("LOGIN %s %s", user, testPasswords[user])
	return c
}

// rawSelected dials, logs in and selects mailbox.
func (e *testEnv) rawSelected(user, mailbox string) *rawClient {
	e.t.Helper()
	c := e.rawLogin(user)
	c.ok("SELECT %s", mailbox)
	return c
}

// line reads one response line (with any literals inlined), failing after
// 5 s.
func (c *rawClient) line() string {
	c.t.Helper()
	l, err := c.readLine(ioWait)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return l
}

func (c *rawClient) readLine(d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	var sb strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return sb.String() + l, err
		}
		l = strings.TrimRight(l, "\r\n")
		sb.WriteString(l)
		// A line ending in a literal announcement continues after it.
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:len(l)-1], "+"))
			if err == nil {
				buf := make([]byte, n)
				if _, err := io.ReadFull(c.br, buf); err != nil {
					return sb.String(), err
				}
				sb.Write(buf)
				continue
			}
		}
		return sb.String(), nil
	}
}

// write sends one raw line.
func (c *rawClient) write(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends a tagged command and returns the untagged lines and the tagged
// status line.
func (c *rawClient) cmd(format string, args ...any) ([]string, string) {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	c.write(tag+" "+format, args...)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (c *rawClient) ok(format string, args ...any) []string {
	c.t.Helper()
	u, st := c.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		c.t.Fatalf("%s: %s (untagged %q)", fmt.Sprintf(format, args...), st, u)
	}
	return u
}

// idle enters IDLE.
func (c *rawClient) idle() {
	c.t.Helper()
	c.n++
	c.write("t%d IDLE", c.n)
	if l := c.line(); !strings.HasPrefix(l, "+") {
		c.t.Fatalf("IDLE: %q", l)
	}
}

// done leaves IDLE and returns the untagged lines that came before OK.
func (c *rawClient) done() []string {
	c.t.Helper()
	c.write("DONE")
	tag := fmt.Sprintf("t%d ", c.n)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag) {
			if !strings.HasPrefix(l, tag+"OK") {
				c.t.Fatalf("IDLE end: %q", l)
			}
			return untagged
		}
		untagged = append(untagged, l)
	}
}

// expect reads lines until want lines have arrived, in order, and fails on
// anything else.
func (c *rawClient) expect(want ...string) {
	c.t.Helper()
	for i, w := range want {
		l, err := c.readLine(ioWait)
		if err != nil {
			c.t.Fatalf("waiting for %q (line %d of %q): %v", w, i, want, err)
		}
		if l != w {
			c.t.Fatalf("got %q, want %q (line %d of %q)", l, w, i, want)
		}
	}
}

// silent asserts that nothing arrives within d.
func (c *rawClient) silent(d time.Duration) {
	c.t.Helper()
	if l, err := c.readLine(d); err == nil {
		c.t.Fatalf("unexpected %q", l)
	}
}

// grep returns the lines containing sub.
func grep(lines []string, sub string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
