package imapfront

import (
	"strings"
	"testing"
)

// TestPanicRecovered: a panic in a session method is logged and answered
// with a generic failure; the connection and the server live on. A panic in
// the middle of a response closes that connection only.
func TestPanicRecovered(t *testing.T) {
	env := newEnv(t)
	env.deliver("alice", "INBOX", msg("one"))
	point := make(chan string, 1)
	hooksOf(t, env.srv).fault = func(p string) {
		select {
		case want := <-point:
			if want == p {
				panic("injected fault at " + p)
			}
			point <- want
		default:
		}
	}
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	point <- "fetch"
	if _, st := c.cmd("FETCH 1 FLAGS"); !strings.HasPrefix(st, "NO [SERVERBUG]") {
		t.Fatalf("FETCH with panic: %s", st)
	}
	c.ok("NOOP")
	c.ok("FETCH 1 FLAGS")

	// In FETCH's loader goroutine (fetchPipelined).
	point <- "fetch-load"
	if _, st := c.cmd("FETCH 1 BODY.PEEK[]"); !strings.HasPrefix(st, "NO [SERVERBUG]") {
		t.Fatalf("FETCH with panic in the loader: %s", st)
	}
	c.ok("FETCH 1 BODY.PEEK[]")

	point <- "fetch-response"
	c.write("x FETCH 1 FLAGS")
	for {
		if _, err := c.readLine(ioWait); err != nil {
			break // the connection was closed
		}
	}
	env.rawLogin("alice").ok("SELECT INBOX")
	logs := env.logs.String()
	if strings.Count(logs, "panic in imap session") != 3 {
		t.Fatalf("panics not logged:\n%s", logs)
	}
	// newEnv's cleanup fails on a logged panic; these were expected.
	env.logs.mu.Lock()
	env.logs.buf.Reset()
	env.logs.mu.Unlock()
}

// TestGarbage: bad input gets BAD/NO and the server keeps serving.
func TestGarbage(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	tests := []struct{ name, line, want string }{
		{"unknown command", "g1 FROBNICATE", "g1 BAD"},
		{"fetch unselected", "g2 FETCH 1 FLAGS", "g2 BAD"},
		{"bad seqset", "g3 SELECT INBOX", "g3 OK"},
		{"bad fetch item", "g4 FETCH 1 (NOPE)", "g4 BAD"},
		{"zero seq", "g5 FETCH 0 FLAGS", "g5 BAD"}, // a syntax error (nz-number)
		{"over-long line", "g6 NOOP " + strings.Repeat("a", 60<<10), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write("%s", tt.line)
			if tt.want == "" {
				return
			}
			for {
				l := c.line()
				if strings.HasPrefix(l, "* ") {
					continue
				}
				if !strings.HasPrefix(l, tt.want) {
					t.Fatalf("%q: %q", tt.line, l)
				}
				return
			}
		})
	}
	// Whatever happened to that connection, others are served.
	env.rawLogin("alice").ok("SELECT INBOX")
	// Before login, one unknown command ends the connection (imapserver).
	r := env.raw()
	r.write("GET / HTTP/1.1")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") && !strings.Contains(l, "BAD") {
		t.Fatalf("HTTP request: %q", l)
	}
}
