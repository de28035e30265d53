package imapfront

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// TestFetchLargeHeadersAcrossArenas: a header-only FETCH sizes its arena
// by a guess (the sizes of the sections are not known before the bytes
// are read), so headers far larger than the guess fill an arena before
// the chunk's messages are done: the message that does not fit starts the
// next chunk. Every message's own header comes back, whole and in order,
// for the brief path (BODY.PEEK[HEADER]) and with the structure
// (BODY.PEEK[HEADER] with BODYSTRUCTURE, whose sections are cut from the
// stored structure instead).
func TestFetchLargeHeadersAcrossArenas(t *testing.T) {
	env := newEnv(t)
	env.user("alice")
	const n = 48
	headerOf := func(i int) string {
		// About 400 KB of folded header lines, every one naming the
		// message, so that a header served for the wrong one shows.
		line := fmt.Sprintf("X-Pad-%05d: ", i) + strings.Repeat("p", 60) + "\r\n" +
			fmt.Sprintf(" message %05d continued ", i) + strings.Repeat("q", 60) + "\r\n"
		return "From: a@example.org\r\nSubject: big header " + fmt.Sprint(i) + "\r\n" +
			strings.Repeat(line, 400<<10/len(line)) + "\r\n"
	}
	var headers []string
	ds := make([]store.Delivery, n)
	for i := range n {
		h := headerOf(i)
		headers = append(headers, h)
		ds[i] = store.Delivery{Account: "t", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: "alice", Folder: "INBOX",
			Raw: []byte(h + fmt.Sprintf("body of message %d\r\n", i))}
	}
	if _, err := env.st.Deliver(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	if total := n * len(headers[0]); total < 2*bodyChunkBytes {
		t.Fatalf("headers of %d bytes in all do not fill two arenas of %d", total, bodyChunkBytes)
	}
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	// The kept arenas grow by half from one FETCH to the next until they
	// are bodyChunkBytes at the start of a chunk; from then on a header
	// that does not fit what is left of one ends its chunk (the fifth
	// header-only FETCH here is past that point).
	cmds := slices.Repeat([]string{"FETCH 1:* (BODY.PEEK[HEADER])"}, 6)
	cmds = append(cmds, "FETCH 1:* (BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
	for _, cmd := range cmds {
		u := c.ok("%s", cmd)
		if len(u) != n {
			t.Fatalf("%s: %d responses for %d messages", cmd, len(u), n)
		}
		for i, h := range headers {
			want := fmt.Sprintf("* %d FETCH (UID %d BODY[HEADER] {%d}%s", i+1, i+1, len(h), h)
			if !strings.HasPrefix(u[i], want) {
				t.Fatalf("%s: message %d: got %d bytes %.80q…, want its own %d-byte header first", cmd, i+1, len(u[i]), u[i], len(h))
			}
		}
	}
}
