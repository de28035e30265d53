package imapfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/store"
)

// sizedMsg is a message with a body of about size bytes whose every line
// names it, so that a body served for the wrong message shows.
func sizedMsg(i, size int) string {
	line := fmt.Sprintf("message %05d line ....................................................\r\n", i)
	return msg(fmt.Sprintf("sized %d", i)) + strings.Repeat(line, max(1, size/len(line)))
}

// TestFetchBodiesAcrossChunks: one FETCH of many bodies, over several
// store reads (more than bodyChunk messages, and more than bodyChunkBytes
// of data so chunks end by size, chunkLen, and each reuses an arena),
// returns every message's own bytes for every section.
func TestFetchBodiesAcrossChunks(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	var raws []string
	deliver := func(sizes []int) {
		ds := make([]store.Delivery, len(sizes))
		for j, size := range sizes {
			i := len(raws)
			raws = append(raws, sizedMsg(i, size))
			ds[j] = store.Delivery{Account: "t", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: "alice", Folder: "INBOX", Raw: []byte(raws[i])}
		}
		if _, err := env.st.Deliver(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
	}
	small := make([]int, 150)
	for i := range small {
		small[i] = 100 + (i*7919)%20000
	}
	deliver(small)
	big := make([]int, 12)
	for i := range big {
		big[i] = 1500 << 10
	}
	deliver(big)
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	tests := []struct {
		name, cmd string
		want      func(raw string) string
	}{
		{"whole", "FETCH 1:* (BODY.PEEK[])", func(raw string) string { return "BODY[] {" + itoa(len(raw)) + "}" + raw + ")" }},
		{"whole and text", "FETCH 1:* (BODY.PEEK[] BODY.PEEK[TEXT])", func(raw string) string {
			text := raw[strings.Index(raw, "\r\n\r\n")+4:]
			return "BODY[] {" + itoa(len(raw)) + "}" + raw + " BODY[TEXT] {" + itoa(len(text)) + "}" + text + ")"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			if len(u) != len(raws) {
				t.Fatalf("%d responses for %d messages", len(u), len(raws))
			}
			for i, raw := range raws {
				prefix := fmt.Sprintf("* %d FETCH (UID %d ", i+1, i+1)
				if want := prefix + tt.want(raw); u[i] != want {
					t.Fatalf("message %d: got %d bytes %.80q…, want %d bytes", i+1, len(u[i]), u[i], len(want))
				}
			}
		})
	}
}

// TestCorkKeepsOrder: writes to a corked connection, small ones buffered
// and large ones sent with what is buffered, reach the peer complete and in
// order, over several cork/uncork cycles; uncork reports a failed write.
func TestCorkKeepsOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	cs := newConnState(&Server{log: slog.New(slog.DiscardHandler)}, server)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()

	var want bytes.Buffer
	write := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(want.Len() + i)
		}
		want.Write(p)
		if k, err := cs.Write(p); k != n || err != nil {
			t.Fatalf("write %d bytes: %d, %v", n, k, err)
		}
	}
	sizes := []int{1, 700, 4096, corkSize/2 - 1, corkSize / 2, 3, corkSize, corkSize + 1, 10, 200 << 10, 5, 4096, 4096}
	for cycle := range 3 {
		cs.cork()
		for _, n := range sizes {
			write(n + cycle)
		}
		if err := cs.uncork(); err != nil {
			t.Fatalf("uncork: %v", err)
		}
		write(100) // direct
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (equal prefix: %d)", len(b), want.Len(), commonPrefix(b, want.Bytes()))
	}
	cs.cork()
	if _, err := cs.Write([]byte("lost")); err != nil {
		t.Fatalf("buffered write: %v", err)
	}
	if err := cs.uncork(); err == nil {
		t.Fatal("uncork on a closed connection reported no error")
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestFetchClientHangsUp: a client that hangs up in the middle of a large
// FETCH ends it cleanly: the loader goroutine stops (Shutdown, which waits
// for every connection, completes), nothing is logged as a failure, and
// other clients are served.
func TestFetchClientHangsUp(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	ds := make([]store.Delivery, 400)
	for i := range ds {
		ds[i] = store.Delivery{Account: "t", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: "alice", Folder: "INBOX", Raw: []byte(sizedMsg(i, 40<<10))}
	}
	if _, err := env.st.Deliver(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"FETCH 1:* (BODY.PEEK[])", "FETCH 1:* (BODY[])", "FETCH 1:* (ENVELOPE BODYSTRUCTURE)"} {
		c := env.rawLogin("alice")
		c.ok("SELECT INBOX")
		c.write("h %s", cmd)
		if l := c.line(); !strings.HasPrefix(l, "* 1 FETCH") {
			t.Fatalf("%s: first line %.80q", cmd, l)
		}
		c.conn.Close()
	}
	other := env.rawLogin("alice")
	other.ok("SELECT INBOX")
	if u := other.ok("FETCH 400 (BODY.PEEK[])"); len(u) != 1 || !strings.Contains(u[0], "message 00399 line") {
		t.Fatalf("other client: %.80q", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if logs := env.logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Fatalf("errors logged:\n%s", logs)
	}
}

// deadlineCounter counts the write deadlines set on its conn.
type deadlineCounter struct {
	net.Conn
	n atomic.Int64
}

func (d *deadlineCounter) SetWriteDeadline(t time.Time) error {
	d.n.Add(1)
	return d.Conn.SetWriteDeadline(t)
}

// TestCorkedWriteDeadline: while corked, the write deadlines imapserver sets
// around every response do not reach the socket one by one (a thousand
// responses cost a few deadline updates, not four thousand), yet a write
// to the socket is still bounded by the last one set: a peer that stops
// reading makes the corked writes fail instead of blocking.
func TestCorkedWriteDeadline(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	dc := &deadlineCounter{Conn: server}
	defer server.Close()
	cs := newConnState(&Server{log: slog.New(slog.DiscardHandler)}, dc)

	// A thousand responses read by the peer: few deadline updates.
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, io.LimitReader(client, 1000*200))
		read <- n
	}()
	resp := bytes.Repeat([]byte("x"), 200)
	cs.cork()
	for range 1000 {
		cs.SetWriteDeadline(time.Now().Add(30 * time.Second))
		cs.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		if _, err := cs.Write(resp); err != nil {
			t.Fatalf("write: %v", err)
		}
		cs.SetWriteDeadline(time.Now().Add(30 * time.Second))
		cs.SetWriteDeadline(time.Time{})
	}
	if err := cs.uncork(); err != nil {
		t.Fatalf("uncork: %v", err)
	}
	if n := <-read; n != 1000*200 {
		t.Fatalf("peer read %d bytes, want %d", n, 1000*200)
	}
	if n := dc.n.Load(); n > 10 {
		t.Errorf("%d write deadlines reached the socket for 1,000 corked responses, want a few", n)
	}

	// The peer stops reading: the deadline set while corked ends the
	// write that cannot drain.
	cs.cork()
	cs.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 64 && err == nil; i++ {
			_, err = cs.Write(make([]byte, corkSize))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("corked write to a peer that does not read: %v, want a deadline error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("corked write blocked past its deadline")
	}
}

// TestChunkIndex: the UIDs the store hands back, ascending and some
// missing, are found at their place in the chunk, whether the chunk is
// ascending by UID (cursor) or not (a saved search result in any order).
func TestChunkIndex(t *testing.T) {
	for _, uids := range [][]store.UID{{3, 5, 9, 10, 12}, {10, 3, 12, 5, 9}} {
		chunk := make([]target, len(uids))
		for i, u := range uids {
			chunk[i] = target{seq: uint32(i + 1), uid: u}
		}
		x := newChunkIndex(chunk)
		for _, u := range []store.UID{1, 3, 4, 9, 10, 11, 12, 13} { // ascending, as the store answers
			i, ok := x.find(u)
			want := slices.Index(uids, u)
			if ok != (want >= 0) || (ok && i != want) {
				t.Errorf("chunk %v: find(%d) = %d, %v; want %d", uids, u, i, ok, want)
			}
		}
	}
}

// TestChunkLen: a chunk of messages of known sizes ends before the message
// that would take it over bodyChunkBytes (counting each section asked for),
// holds at least one message however large, and at most bodyChunk; without
// known sizes it is bodyChunk messages.
func TestChunkLen(t *testing.T) {
	const mib, half = 1 << 20, bodyChunkBytes / 2
	whole := &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}
	twice := &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}, {Specifier: imap.PartSpecifierText}}}
	tests := []struct {
		name    string
		sizes   []int64
		options *imap.FetchOptions
		want    int
	}{
		{"fits", []int64{mib, mib, mib}, whole, 3},
		{"exactly full", []int64{half, half, 1}, whole, 2},
		{"over by one byte", []int64{half, half + 1, 1}, whole, 1},
		{"one larger message alone", []int64{3 * half, 1}, whole, 1},
		{"two sections each", []int64{half / 2, half / 2, 1}, twice, 2},
		{"two sections, over", []int64{half / 2, half/2 + 1, 1}, twice, 1},
		{"many small", slices.Repeat([]int64{100}, bodyChunk+10), whole, bodyChunk},
	}
	for _, tt := range tests {
		present := make([]target, len(tt.sizes))
		byUID := map[store.UID]*store.MessageMeta{}
		for i, size := range tt.sizes {
			uid := store.UID(i + 1)
			present[i] = target{seq: uint32(i + 1), uid: uid}
			byUID[uid] = &store.MessageMeta{Size: size}
		}
		if got := chunkLen(present, byUID, tt.options); got != tt.want {
			t.Errorf("%s: chunkLen = %d, want %d", tt.name, got, tt.want)
		}
		if got, want := chunkLen(present, nil, tt.options), min(len(present), bodyChunk); got != want {
			t.Errorf("%s: without sizes, chunkLen = %d, want %d", tt.name, got, want)
		}
	}
}
