package imapfront

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// intoStore is the SQLite store given a BodiesInto as pgstore's behaves:
// each message's bytes appended to the buffer alloc hands for it (sized as
// the mode says), or handed in the store's own buffer when it hands none.
type intoStore struct {
	*store.Store
	mode    string // "exact", "short" (alloc asked for half the size), "none" (alloc's buffers refused)
	calls   atomic.Int32
	scratch []byte
}

func (s *intoStore) BodiesInto(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, alloc func(uid store.UID, n int) []byte,
	fn func(uid store.UID, raw []byte, damaged error) error) error {
	s.calls.Add(1)
	return s.Store.Bodies(ctx, u, mb, uids, func(uid store.UID, raw []byte, damaged error) error {
		n := len(raw)
		if s.mode == "short" {
			n /= 2
		}
		var b []byte
		if s.mode != "none" {
			b = alloc(uid, n)
		}
		if b == nil {
			// The store's own buffer, reused once fn returns (as
			// pgstore's pool does): overwritten here.
			own := append(s.scratch[:0], raw...)
			err := fn(uid, own, damaged)
			for i := range own {
				own[i] = 'X'
			}
			s.scratch = own
			return err
		}
		return fn(uid, append(b, raw...), damaged)
	})
}

// TestFetchIntoArena: a FETCH whose sections are slices of the bytes reads
// them through BodiesInto where the store has it, and answers every
// message whole and in order, whether the bytes land in the arena, in
// buffers too small for them, or in the store's own (then a message
// starts the next chunk, and one larger than an arena is answered alone);
// a FETCH with HEADER.FIELDS (new bytes) does not take that path.
func TestFetchIntoArena(t *testing.T) {
	for _, mode := range []string{"exact", "short", "none"} {
		t.Run(mode, func(t *testing.T) {
			var st *intoStore
			env := newEnv(t, func(o *Options) {
				st = &intoStore{Store: o.Store.(*store.Store), mode: mode}
				o.Store = st
			})
			env.user("alice")
			var raws []string
			for i := range 16 {
				size := 600<<10 + i*29<<10 // more than an arena in all
				if i == 12 {
					size = bodyChunkBytes + 300<<10 // larger than an arena
				}
				raws = append(raws, env.deliverSized("alice", i, 1, size)...)
			}
			raws = append(raws, env.deliverSized("alice", 16, 3, 100)...)
			c := env.rawLogin("alice")
			c.ok("SELECT INBOX")
			text := func(raw string) string { return raw[strings.Index(raw, "\r\n\r\n")+4:] }
			header := func(raw string) string { return raw[:strings.Index(raw, "\r\n\r\n")+4] }
			lit := func(b string) string { return "{" + itoa(len(b)) + "}" + b }
			// (TEXT, most of the bytes again, is asked for below.)
			u := c.ok("FETCH 1:* (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[]<7.100>)")
			if len(u) != len(raws) {
				t.Fatalf("%d responses, want %d", len(u), len(raws))
			}
			for i, raw := range raws {
				w := fmt.Sprintf("* %d FETCH (UID %d BODY[] %s BODY[HEADER] %s BODY[]<7> %s)",
					i+1, i+1, lit(raw), lit(header(raw)), lit(raw[7:107]))
				if u[i] != w {
					t.Fatalf("message %d: got %d bytes %.100q…, want %d bytes", i+1, len(u[i]), u[i], len(w))
				}
			}
			if st.calls.Load() < 3 {
				t.Errorf("%d BodiesInto calls for a FETCH of more than two arenas", st.calls.Load())
			}
			if n := env.srv.arenas.lent.Load(); n != 0 {
				t.Errorf("%d arenas not given back", n)
			}
			u = c.ok("FETCH 12:14 (BODY.PEEK[TEXT])")
			for i, l := range u {
				if w := fmt.Sprintf("* %d FETCH (UID %d BODY[TEXT] %s)", 12+i, 12+i, lit(text(raws[11+i]))); l != w {
					t.Errorf("message %d: TEXT of %d bytes %.100q…, want %d", 12+i, len(l), l, len(w))
				}
			}
			before := st.calls.Load()
			u = c.ok("FETCH 17:19 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
			if len(u) != 3 || !strings.Contains(u[0], "Subject: sized 16\r\n\r\n") || !strings.HasSuffix(u[2], lit(text(raws[18]))+")") {
				t.Errorf("HEADER.FIELDS and TEXT: %q", u)
			}
			if st.calls.Load() != before {
				t.Errorf("a FETCH with HEADER.FIELDS read through BodiesInto")
			}
		})
	}
}

// TestRawSections: only sections that are slices of the bytes (whole,
// HEADER, TEXT, partial or not, top level) let responses point into them.
func TestRawSections(t *testing.T) {
	for _, tt := range []struct {
		o    imap.FetchOptions
		want bool
	}{
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}, {Specifier: imap.PartSpecifierText}, {Specifier: imap.PartSpecifierHeader}}}, true},
		{imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Partial: &imap.SectionPartial{Offset: 1, Size: 2}}}}, true},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}, {Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject"}}}}, false},
		{imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}}}}, false},
		{imap.FetchOptions{Flags: true}, false},
	} {
		if got := rawSections(&tt.o); got != tt.want {
			t.Errorf("rawSections(%+v) = %v, want %v", tt.o, got, tt.want)
		}
	}
}
