package imapfront

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// deliverMany delivers n small messages to user's INBOX in one store call.
func deliverMany(t *testing.T, env *testEnv, user string, n int) {
	t.Helper()
	env.user(user)
	ds := make([]store.Delivery, n)
	for i := range ds {
		ds[i] = store.Delivery{Account: "many", UIDL: fmt.Sprint(i), Digest: fmt.Sprint(i), User: user, Folder: "INBOX",
			Raw: []byte(msg(fmt.Sprintf("many %d", i)))}
	}
	if _, err := env.st.Deliver(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

var sizeItem = regexp.MustCompile(` RFC822\.SIZE \d+`)

// TestFetchFlagsStreamed: `FETCH 1:* (FLAGS)`, answered from the mailbox
// state chunk by chunk, gives exactly the responses of the store path (the
// same FETCH with RFC822.SIZE, which reads the store), over more than two
// chunks, with flags and keywords set and messages expunged by another
// session at chunk boundaries but not yet announced to this one.
func TestFetchFlagsStreamed(t *testing.T) {
	env := newEnv(t)
	n := 2*flagsChunk + 100
	deliverMany(t, env, "alice", n)
	c := env.rawSelected("alice", "INBOX")
	c.ok(`STORE 1:%d +FLAGS.SILENT (\Seen)`, n/2)
	c.ok(`STORE %d:%d +FLAGS.SILENT ($Work \Flagged)`, flagsChunk-3, flagsChunk+3)
	c.ok(`STORE %d +FLAGS.SILENT (\Answered)`, n)
	other := env.rawSelected("alice", "INBOX")
	gone := []int{1, flagsChunk, flagsChunk + 1, 2 * flagsChunk, n}
	for _, seq := range gone {
		other.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, seq)
	}
	c.ok("NOOP") // the flag changes announced; the expunges will not be
	other.ok("EXPUNGE")

	// FETCH (not UID FETCH) must not announce the expunges: the client
	// view keeps its sequence numbers.
	for _, cmd := range []string{"FETCH", "UID FETCH"} {
		t.Run(cmd, func(t *testing.T) {
			fast := grep(c.ok("%s 1:* (FLAGS)", cmd), " FETCH ")
			if cmd == "UID FETCH" {
				// Its poll announced the expunges: compare with
				// the store path in the same client view.
				c.ok("NOOP")
				fast = grep(c.ok("%s 1:* (FLAGS)", cmd), " FETCH ")
			}
			slow := grep(c.ok("%s 1:* (FLAGS RFC822.SIZE)", cmd), " FETCH ")
			if len(fast) != n-len(gone) {
				t.Fatalf("%d responses, want %d (the expunged ones skipped)", len(fast), n-len(gone))
			}
			if len(slow) != len(fast) {
				t.Fatalf("store path: %d responses, flags path %d", len(slow), len(fast))
			}
			for i := range fast {
				if want := sizeItem.ReplaceAllString(slow[i], ""); fast[i] != want {
					t.Fatalf("response %d: %q, store path %q", i, fast[i], want)
				}
			}
			for _, seq := range gone {
				if l := grep(fast, fmt.Sprintf("(UID %d ", seq)); len(l) != 0 {
					t.Errorf("expunged UID %d answered: %q", seq, l)
				}
			}
			if l := grep(fast, fmt.Sprintf("(UID %d FLAGS", flagsChunk+2)); len(l) != 1 || !strings.Contains(l[0], `$Work`) {
				t.Errorf("UID %d: %q, want $Work", flagsChunk+2, l)
			}
		})
	}
	if u := c.ok("FETCH 3 (UID)"); len(u) != 1 || u[0] != "* 3 FETCH (UID 4)" {
		t.Errorf("FETCH (UID) after the expunges: %q", u)
	}
}

// TestStoreStreamed: a STORE over more than one batch answers every
// message once with its new flags, in order, skipping messages another
// session expunged, and .SILENT answers nothing.
func TestStoreStreamed(t *testing.T) {
	env := newEnv(t)
	n := 2*storeBatch + 10
	deliverMany(t, env, "alice", n)
	c := env.rawSelected("alice", "INBOX")
	other := env.rawSelected("alice", "INBOX")
	gone := []int{storeBatch, storeBatch + 1, n}
	for _, uid := range gone {
		other.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)
	}
	c.ok("NOOP")
	other.ok("EXPUNGE")

	if u := c.ok(`UID STORE 1:* +FLAGS.SILENT (\Seen)`); len(grep(u, "FETCH")) != 0 {
		t.Fatalf(".SILENT STORE answered %d FETCHes", len(grep(u, "FETCH")))
	}
	u := c.ok(`UID STORE 1:* +FLAGS (\Flagged)`)
	fetches := grep(u, "FETCH")
	if len(fetches) != n-len(gone) {
		t.Fatalf("%d FETCH responses, want %d", len(fetches), n-len(gone))
	}
	uid := 0
	for _, l := range fetches {
		var seq, got int
		if _, err := fmt.Sscanf(l, "* %d FETCH (UID %d ", &seq, &got); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if got <= uid {
			t.Fatalf("UID %d after %d", got, uid)
		}
		uid = got
		want := got // the expunges were announced by the .SILENT STORE
		for _, g := range gone {
			if g < got {
				want--
			}
		}
		if seq != want || !strings.Contains(l, `\Seen`) || !strings.Contains(l, `\Flagged`) {
			t.Fatalf("response %q: want sequence %d and \\Seen \\Flagged", l, want)
		}
		for _, g := range gone {
			if got == g {
				t.Fatalf("expunged UID %d answered", g)
			}
		}
	}
}
