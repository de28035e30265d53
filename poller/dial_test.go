package poller

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	pop3 "github.com/knadh/go-pop3"
)

// chunkConn is a net.Conn whose Read returns at most n bytes of data at a
// time, so that every parser state meets a buffer boundary.
type chunkConn struct {
	net.Conn // nil; only Read and SetReadDeadline are used
	data     []byte
	n        int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(p), len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

func TestReadBody(t *testing.T) {
	tests := []struct {
		name, wire, body, rest string
	}{
		{"stuffed dots", "a\r\n..b\r\n...\r\n.\r\n", "a\r\n.b\r\n..\r\n", ""},
		{"empty body", ".\r\n", "", ""},
		{"empty line", "\r\n.\r\n", "\r\n", ""},
		{"bare LF lines and terminator", "a\n\nb\n.\n", "a\r\n\r\nb\r\n", ""},
		{"single leading dot dropped", ".x\r\n.\r\n", "x\r\n", ""},
		{"dot CR without LF", ".\rx\r\n.\r\n", "\rx\r\n", ""},
		{"CR CR LF kept", "a\r\r\n.\r\n", "a\r\r\n", ""},
		{"bare CR and NUL kept", "a\rb\x00c\n.\r\n", "a\rb\x00c\r\n", ""},
		{"next reply stays", "x\r\n.\r\n+OK 1 5\r\n", "x\r\n", "+OK 1 5"},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 2, 3, 7, 1 << 16} {
			c := newMeteredConn(&chunkConn{data: []byte(tt.wire), n: n}, nil, &sessionConfig{IOTimeout: time.Second}, nil)
			c.expect(1<<20, 0, time.Time{}, ErrMessageTooLarge)
			got, err := c.readBody(0)
			if err != nil || string(got) != tt.body {
				t.Errorf("%s (reads of %d): got %q, %v; want %q", tt.name, n, got, err, tt.body)
				continue
			}
			if tt.rest != "" {
				line, err := bufio.NewReader(c).ReadString('\n')
				if strings.TrimSpace(line) != tt.rest || err != nil {
					t.Errorf("%s (reads of %d): next line %q, %v", tt.name, n, line, err)
				}
			}
		}
	}
}

func TestReadBodyLimits(t *testing.T) {
	endless := strings.Repeat("0123456789\r\n", 1<<16) // 768 KiB, no terminator
	c := newMeteredConn(&chunkConn{data: []byte(endless), n: 1 << 16}, nil, &sessionConfig{IOTimeout: time.Second}, nil)
	c.expect(100<<10, 0, time.Time{}, ErrMessageTooLarge)
	if _, err := c.readBody(0); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("endless body: %v", err)
	}
	// The connection is now unusable.
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("read after overrun: %v", err)
	}
	c = newMeteredConn(&chunkConn{data: []byte("abc\r\n"), n: 2}, nil, &sessionConfig{IOTimeout: time.Second}, nil)
	c.expect(1<<20, 0, time.Time{}, ErrMessageTooLarge)
	if _, err := c.readBody(0); !errors.Is(err, io.EOF) {
		t.Errorf("cut body: %v, want EOF", err)
	}
}

// TestReadOneLineAtATime: go-pop3's reader must never be handed more than
// one line, or readBody would miss bytes it buffered.
func TestReadOneLineAtATime(t *testing.T) {
	c := newMeteredConn(&chunkConn{data: []byte("+OK a\r\n+OK b\r\nbody\r\n"), n: 1 << 16}, nil, &sessionConfig{IOTimeout: time.Second}, []byte("+OK hello\r\n"))
	c.expect(1<<20, 100, time.Time{}, ErrProtocol)
	p := make([]byte, 4096)
	for _, want := range []string{"+OK hello\r\n", "+OK a\r\n", "+OK b\r\n", "body\r\n"} {
		n, err := c.Read(p)
		if err != nil || string(p[:n]) != want {
			t.Errorf("Read = %q, %v; want %q", p[:n], err, want)
		}
	}
	c = newMeteredConn(&chunkConn{data: []byte(strings.Repeat("x", 300) + "\r\n"), n: 1 << 16}, nil, &sessionConfig{IOTimeout: time.Second}, nil)
	c.expect(1<<20, 100, time.Time{}, ErrProtocol)
	if _, err := io.ReadAll(c); !errors.Is(err, ErrProtocol) {
		t.Errorf("long line: %v", err)
	}
}

// bytesConn serves fixed bytes to a go-pop3 Conn.
type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *bytesConn) Close() error                { return nil }

// FuzzReadBody checks readBody against go-pop3's ReadAll, the reference for
// unstuffing and line-end handling: on any input, both must agree on
// whether a complete body was read, on the body, and on what follows it.
func FuzzReadBody(f *testing.F) {
	for _, s := range []string{"a\r\n..b\r\n.\r\n", ".\r\n", "a\nb\n.\n", ".\rx\r\n.\r\n", "a\r\r\n.\r\nrest\r\n", "x", "\r\n.\r\n\r\n"} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, wire []byte, chunk int) {
		chunk = 1 + chunk&0xff
		pc, err := pop3.New(pop3.Opt{Host: "x", Port: 1, Dialer: &handoff{c: &bytesConn{
			r: io.MultiReader(strings.NewReader("+OK\r\n"), bytes.NewReader(wire))}}}).NewConn()
		if err != nil {
			t.Fatal(err)
		}
		want, werr := pc.ReadAll()
		c := newMeteredConn(&chunkConn{data: wire, n: chunk}, nil, &sessionConfig{IOTimeout: time.Second}, nil)
		c.expect(1<<20, 0, time.Time{}, ErrMessageTooLarge)
		got, gerr := c.readBody(int64(len(wire)))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("go-pop3 err %v, readBody err %v for %q", werr, gerr, wire)
		}
		if werr != nil {
			return
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("readBody %q, go-pop3 %q for %q", got, want.Bytes(), wire)
		}
		rest, _ := io.ReadAll(c)
		wantRest, _ := pc.ReadOne() // first line after the body, if any
		if len(rest) > 0 && !bytes.HasPrefix(rest, wantRest) && len(wantRest) > 0 {
			t.Fatalf("after body: readBody left %q, go-pop3 next line %q", rest, wantRest)
		}
	})
}
