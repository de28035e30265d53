package imapfront

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// deliverSized stores n messages of about size bytes each (sizedMsg, the
// first numbered first) in user's INBOX and returns their bytes.
func (e *testEnv) deliverSized(user string, first, n, size int) []string {
	e.t.Helper()
	raws := make([]string, n)
	ds := make([]store.Delivery, n)
	for j := range n {
		i := first + j
		raws[j] = sizedMsg(i, size)
		ds[j] = store.Delivery{Account: "t", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: user, Folder: "INBOX", Raw: []byte(raws[j])}
	}
	if _, err := e.st.Deliver(context.Background(), ds); err != nil {
		e.t.Fatal(err)
	}
	return raws
}

// TestFetchArenasReused: FETCHes one after another reuse the arenas of the
// first (the server makes fetchArenas of them in all), every arena is back
// in the pool once a FETCH has answered, and a FETCH whose sections are
// shorter than what the arenas held before answers its own bytes only
// (whole bodies, texts, partials, binary parts), never a previous FETCH's.
func TestFetchArenasReused(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	big := env.deliverSized("alice", 0, 12, 1500<<10) // more than bodyChunkBytes: both arenas fill
	small := env.deliverSized("alice", 12, 3, 2000)
	raws := append(big, small...)
	pool := &env.srv.arenas
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	text := func(raw string) string { return raw[strings.Index(raw, "\r\n\r\n")+4:] }
	lit := func(b string) string { return "{" + itoa(len(b)) + "}" + b }
	tests := []struct {
		name, cmd string
		first     int // sequence number of the first message answered
		want      func(raw string) string
	}{
		{"all bodies", "FETCH 1:* (BODY.PEEK[])", 1, func(raw string) string { return "BODY[] " + lit(raw) + ")" }},
		{"small texts", "FETCH 13:15 (BODY.PEEK[TEXT])", 13, func(raw string) string { return "BODY[TEXT] " + lit(text(raw)) + ")" }},
		{"small partials", "FETCH 13:15 (BODY.PEEK[]<10.300>)", 13, func(raw string) string { return "BODY[]<10> " + lit(raw[10:310]) + ")" }},
		{"binary", "FETCH 13:15 (BINARY.PEEK[1])", 13, func(raw string) string { return "BINARY[1] ~" + lit(text(raw)) + ")" }},
		{"one big again", "FETCH 3 (BODY.PEEK[])", 3, func(raw string) string { return "BODY[] " + lit(raw) + ")" }},
		{"small again", "FETCH 14 (BODY.PEEK[])", 14, func(raw string) string { return "BODY[] " + lit(raw) + ")" }},
	}
	for _, tt := range tests {
		u := c.ok("%s", tt.cmd)
		want := raws[tt.first-1:]
		if strings.Contains(tt.cmd, "FETCH 3 ") || strings.Contains(tt.cmd, "FETCH 14 ") {
			want = want[:1]
		}
		if len(u) != len(want) {
			t.Fatalf("%s: %d responses, want %d", tt.name, len(u), len(want))
		}
		for i, raw := range want {
			seq := tt.first + i
			w := fmt.Sprintf("* %d FETCH (UID %d ", seq, seq) + tt.want(raw)
			if u[i] != w {
				t.Fatalf("%s: message %d: got %d bytes %.80q…, want %d bytes %.80q…", tt.name, seq, len(u[i]), u[i], len(w), w)
			}
		}
		if n := pool.lent.Load(); n != 0 {
			t.Errorf("%s: %d arenas not given back after the FETCH", tt.name, n)
		}
	}
	if n := pool.made.Load(); n != fetchArenas {
		t.Errorf("%d arenas made for %d FETCHes; want %d, reused", n, len(tests), fetchArenas)
	}
	if n := pool.kept(); n != fetchArenas {
		t.Errorf("pool keeps %d arenas; want %d", n, fetchArenas)
	}
}

// TestFetchArenasBackAfterAbort: a FETCH cut short gives its arenas back
// to the server: a client that disconnects in the middle of a large
// FETCH, a panic in the loader, a panic while a response is written. The
// idle memory release then drops them.
func TestFetchArenasBackAfterAbort(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	env.deliverSized("alice", 0, 24, 1500<<10) // 36 MB: more than the arenas hold
	pool := &env.srv.arenas
	released := make(chan struct{}, 8)
	fetchEnded := make(chan struct{}, 8)
	point := make(chan string, 1)
	h := hooksOf(t, env.srv)
	h.releaseAfter = time.Millisecond
	h.freeMemory = func() { released <- struct{}{} }
	h.fault = func(p string) {
		if p == "fetch-end" {
			fetchEnded <- struct{}{}
			return
		}
		select {
		case want := <-point:
			if want == p {
				panic("injected fault at " + p)
			}
			point <- want
		default:
		}
	}
	// ended waits until the FETCH has returned, then until the server
	// has no connection left (its idle release has run).
	ended := func(what string) {
		t.Helper()
		for _, ch := range []chan struct{}{fetchEnded, released} {
			select {
			case <-ch:
			case <-time.After(ioWait):
				t.Fatalf("%s: the FETCH or the connection did not end", what)
			}
			if n := pool.lent.Load(); n != 0 {
				t.Errorf("%s: %d arenas not given back", what, n)
			}
		}
		if n := pool.kept(); n != 0 {
			t.Errorf("%s: the idle release left %d arenas", what, n)
		}
	}

	c := env.rawSelected("alice", "INBOX")
	c.write("f FETCH 1:* (BODY.PEEK[])")
	if l := c.line(); !strings.HasPrefix(l, "* 1 FETCH (UID 1 BODY[] {") {
		t.Fatalf("first response %.60q", l)
	}
	c.conn.Close() // mid-FETCH: the loader is reading ahead, a chunk is being written
	ended("client gone mid-FETCH")

	for _, p := range []string{"fetch-load", "fetch-response"} {
		c := env.rawSelected("alice", "INBOX")
		point <- p
		c.write("f FETCH 1:3 (BODY.PEEK[])")
		for {
			l, err := c.readLine(ioWait)
			if err != nil || strings.HasPrefix(l, "f ") {
				break // NO [SERVERBUG], or the connection closed
			}
		}
		c.conn.Close()
		ended("panic at " + p)
	}
	// newEnv's cleanup fails on a logged panic; these were expected.
	env.logs.mu.Lock()
	env.logs.buf.Reset()
	env.logs.mu.Unlock()
}

// TestFetchArenasMadeFullSizeOnce: a FETCH of more than one chunk makes
// each of its arenas once, at full size, whatever its chunks' sizes (cut
// by size to just under bodyChunkBytes, each a little different), and
// answers every body whole; a FETCH of one chunk makes one arena of its
// size.
func TestFetchArenasMadeFullSizeOnce(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	var raws []string
	for i := range 24 {
		raws = append(raws, env.deliverSized("alice", i, 1, 600<<10+i*37<<10)...)
	}
	pool := &env.srv.arenas
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	u := c.ok("FETCH 1:* (BODY.PEEK[])")
	if len(u) != len(raws) {
		t.Fatalf("%d responses, want %d", len(u), len(raws))
	}
	for i, raw := range raws {
		if w := fmt.Sprintf("* %d FETCH (UID %d BODY[] {%d}%s)", i+1, i+1, len(raw), raw); u[i] != w {
			t.Fatalf("message %d: got %d bytes %.80q…, want %d bytes", i+1, len(u[i]), u[i], len(w))
		}
	}
	check := func(what string, want int, full bool) {
		t.Helper()
		pool.mu.Lock()
		defer pool.mu.Unlock()
		used := 0
		for i, a := range pool.free {
			if a.bufs == 0 && cap(a.buf) == 0 {
				continue // taken for the FETCH, not needed
			}
			used++
			if a.bufs != 1 || (cap(a.buf) == bodyChunkBytes) != full {
				t.Errorf("%s: arena %d made %d buffers, the last of %d bytes (full size %d: %v)", what, i, a.bufs, cap(a.buf), bodyChunkBytes, full)
			}
		}
		if used != want {
			t.Fatalf("%s: %d arenas used, want %d", what, used, want)
		}
	}
	check("a FETCH of several chunks", fetchArenas, true)
	pool.reset()
	u = c.ok("FETCH 2 (BODY.PEEK[])")
	if len(u) != 1 || !strings.HasSuffix(u[0], raws[1]+")") {
		t.Fatalf("FETCH 2: %d responses", len(u))
	}
	check("a FETCH of one message", 1, false)
}
