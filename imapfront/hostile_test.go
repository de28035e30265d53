package imapfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileDeadline bounds each hostile case; a server that needs longer
// (an exponential matcher, a runaway SEARCH) fails the test.
const hostileDeadline = 20 * time.Second

// hostileCase is one kind of hostile input.
type hostileCase struct {
	name string
	// state: "" (not logged in), "auth" (logged in) or "selected" (INBOX).
	state string
	// cmds are sent one at a time ("<tag> " prepended), each answer read
	// before the next; payload, if set, is sent raw instead and its answer
	// is the line tagged tag.
	cmds    []string
	payload func() []byte
	tag     string
	// ok lists the tagged answers accepted besides NO, BAD and the server
	// closing the connection (with or without BYE), e.g. "OK" for a valid
	// but expensive LIST.
	ok []string
	// after checks the server's state after the case.
	after func(t *testing.T, env *testEnv)
}

// TestHostileInput sends each hostile input over raw TCP and expects BAD,
// NO or a closed connection (OK only where the command is valid), within
// hostileDeadline, with no panic; after each case a fresh client must still
// log in, select INBOX and fetch. CPU time (whole process, client
// included) per case is logged.
func TestHostileInput(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("hostile one"))
	env.deliver("alice", "INBOX", msg("hostile two"))
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	tests := []hostileCase{
		{name: "1 MB line", state: "selected", tag: "h1", payload: func() []byte {
			return []byte("h1 NOOP " + strings.Repeat("a", 1<<20) + "\r\n")
		}},
		{name: "4294967295 literal APPEND", state: "auth", cmds: []string{"APPEND INBOX {4294967295}"}},
		// imapserver would wait for a line end the client never sends
		// (notes: connState.Read); answered BAD at once, then closed.
		{name: "4294967295 literal SEARCH", state: "selected", cmds: []string{"SEARCH TEXT {4294967295}"}},
		{name: "5000-byte literal mailbox name", state: "auth", cmds: []string{"CREATE {5000}"}},
		{name: "4294967295 non-sync literal with commands inside", state: "auth", tag: "h4", payload: func() []byte {
			return []byte("h4 APPEND INBOX {4294967295+}\r\nx CREATE Injected\r\ny DELETE Trash\r\n")
		}, after: func(t *testing.T, env *testEnv) {
			u := env.rawLogin("alice").ok(`LIST "" *`)
			if len(grep(u, "Injected")) != 0 || len(grep(u, `"Trash"`)) != 1 {
				t.Fatalf("literal bytes were executed: %q", u)
			}
		}},
		{name: "5000 {4096} literals in one SEARCH", state: "selected", tag: "h5", payload: func() []byte {
			var b strings.Builder
			b.WriteString("h5 SEARCH")
			lit := strings.Repeat("q", 4096)
			for range 5000 {
				b.WriteString(" TEXT {4096}\r\n")
				b.WriteString(lit)
			}
			b.WriteString("\r\n")
			return []byte(b.String())
		}},
		{name: "NOT NOT x10000", state: "selected", cmds: []string{"SEARCH " + strings.Repeat("NOT ", 10000) + "ALL"}},
		{name: "OR x5000", state: "selected", cmds: []string{"SEARCH " + strings.Repeat("OR ALL ", 5000) + "ALL"}},
		{name: "LIST many stars", state: "auth", ok: []string{"OK"}, cmds: []string{
			`LIST "" "**********************b"`,
			`LIST "" "%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*b"`,
			`LIST "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"`,
		}},
		{name: "invalid mUTF-7", state: "auth", cmds: []string{
			`CREATE "&Jjo"`, `CREATE "&AGE-"`, `CREATE "&-&"`, `SELECT "&2D3eAA-"`, `RENAME INBOX "&"`, `STATUS "&ZeVnLIqe" (MESSAGES)`,
		}},
		{name: "dot-dot and slashes", state: "auth", cmds: []string{
			`CREATE "../etc"`, `CREATE "a/../b"`, `CREATE "a/./b"`, `SELECT "../INBOX"`, `RENAME INBOX "../x"`,
			`CREATE "/abs"`, `CREATE "a//b"`, `CREATE ".."`, `DELETE "../../"`,
		}},
		{name: "NUL and control bytes in names", state: "auth", cmds: []string{
			"CREATE \"a\x00b\"", "CREATE {3}\r\na\x00b", "SELECT {5}\r\nIN\x00OX", "CREATE {3}\r\na\x07b", "CREATE \"a\rb\"",
		}},
		{name: "STATUS DELETED-STORAGE", state: "auth", cmds: []string{
			"STATUS x (DELETED-STORAGE)", "STATUS INBOX (DELETED-STORAGE)", "STATUS INBOX (MESSAGES DELETED-STORAGE)",
			`LIST "" * RETURN (STATUS (DELETED-STORAGE))`, "STATUS INBOX (NOPE)",
		}},
		{name: "commands before login", state: "", cmds: []string{"SELECT INBOX", "FETCH 1 FLAGS"}},
		{name: "commands in authenticated state", state: "auth", cmds: []string{
			"FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "UNSELECT", "CLOSE", "SEARCH ALL",
			"COPY 1 Trash", "MOVE 1 Trash", "UID FETCH 1 FLAGS", "UID EXPUNGE 1", "LOGIN alice alice-secret",
		}},
		{name: "commands in selected state", state: "selected", cmds: []string{
			"LOGIN alice alice-secret", "AUTHENTICATE PLAIN", "STARTTLS", "STORE 1:* +FLAGS.SILENT",
			"COPY 1 Nowhere", "FETCH 1 (BODY[1]<4294967295.4294967295>", "UID FETCH 1:* (RFC822.SIZE FLAGS X-NOPE)",
		}},
		{name: "IDLE ended by garbage", state: "selected", tag: "h9", payload: func() []byte {
			return []byte("h9 IDLE\r\nNOT-DONE\r\n")
		}},
		{name: "garbage bytes after login", state: "selected", payload: func() []byte { return garbage }},
		{name: "garbage bytes before login", state: "", payload: func() []byte { return garbage }},
	}
	var maxCPU time.Duration
	var maxCase string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu0 := cpuTime()
			start := time.Now()
			runHostile(t, env, tt)
			cpu := cpuTime() - cpu0
			t.Logf("%s: %v wall, %v CPU", tt.name, time.Since(start).Round(time.Millisecond), cpu.Round(time.Millisecond))
			if cpu > maxCPU {
				maxCPU, maxCase = cpu, tt.name
			}
			if tt.after != nil {
				tt.after(t, env)
			}
			if n := hooksOf(t, env.srv).panics.Load(); n != 0 {
				t.Fatalf("server recovered %d panic(s)", n)
			}
			if !freshClientWorks(t, env.addr) {
				t.Fatalf("INBOX emptied by %s", tt.name)
			}
		})
	}
	t.Logf("max CPU per case: %v (%s); peak RSS %s", maxCPU.Round(time.Millisecond), maxCase, procStatus("VmHWM"))
}

// runHostile runs one case on a fresh connection.
func runHostile(t *testing.T, env *testEnv, tt hostileCase) {
	var conn net.Conn
	var br *bufio.Reader
	if tt.state == "" {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, br = c, bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting: %q %v", l, err)
		}
	} else {
		conn, br = dialLogin(t, env.addr, "alice")
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hostileDeadline))
	if tt.state == "selected" {
		io.WriteString(conn, "s0 SELECT INBOX\r\n")
		if st, closed := readTagged(t, br, "s0"); closed || !strings.HasPrefix(st, "OK") {
			t.Fatalf("SELECT: %q", st)
		}
	}
	accept := func(what, st string, closed bool) bool {
		if closed {
			return false
		}
		for _, p := range append([]string{"NO", "BAD"}, tt.ok...) {
			if strings.HasPrefix(st, p) {
				return true
			}
		}
		t.Fatalf("%s: answered %q", what, st)
		return true
	}
	if tt.payload != nil {
		writeErr := make(chan error, 1)
		go func() {
			_, err := conn.Write(tt.payload())
			writeErr <- err
		}()
		if tt.tag == "" {
			// Read until the server closes; nothing it says may be OK.
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					if isTimeout(err) {
						t.Fatalf("garbage: connection still open after %v", hostileDeadline)
					}
					break
				}
				if f := strings.Fields(l); len(f) > 1 && f[0] != "*" && f[0] != "+" && f[1] == "OK" {
					t.Fatalf("garbage got %q", l)
				}
			}
		} else {
			st, closed := readTagged(t, br, tt.tag)
			accept(tt.tag, st, closed)
		}
		conn.Close()
		<-writeErr
		return
	}
	for i, cmd := range tt.cmds {
		tag := fmt.Sprintf("h%d", i)
		if _, err := io.WriteString(conn, tag+" "+cmd+"\r\n"); err != nil {
			return // closed by the server after an earlier command
		}
		st, closed := readTagged(t, br, tag)
		if !accept(cmd, st, closed) {
			return
		}
	}
}

// readTagged reads until the answer tagged tag and returns its status
// part, or reports that the connection closed first; a timeout fails t.
func readTagged(t *testing.T, br *bufio.Reader, tag string) (string, bool) {
	t.Helper()
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("no answer to %s within %v", tag, hostileDeadline)
			}
			return "", true
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return strings.TrimRight(rest, "\r\n"), false
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// cpuTime returns the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus returns a field of /proc/self/status, e.g. "VmHWM".
func procStatus(field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
