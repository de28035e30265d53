package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// briefHeaderMessages are messages whose headers end in odd places, or
// near and past the first 8,000-byte row.
func briefHeaderMessages() []string {
	long := func(n int) string { // header fields of about n bytes
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "X-Filler-%d: %s\r\n", i, strings.Repeat("f", 60))
		}
		return b.String()
	}
	out := []string{
		"",
		"Subject: no blank line\r\nFrom: a@b\r\n",
		"Subject: body without blank\r\nthis is not a field\r\nbody\r\n",
		"not a header at all\r\n\r\nbody\r\n",
		"Subject: folded\r\n continued\r\n\tagain\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\n",
		"Subject: huge header\r\n" + long(20_000) + "\r\nbody\r\n",
		"Subject: no blank, long\r\n" + long(9_000),
	}
	// Blank lines around the end of the first row.
	for n := messageChunkSize - 80; n <= messageChunkSize+10; n++ {
		h := "Subject: near\r\n" + long(n-200)
		h += "X-Pad: " + strings.Repeat("p", max(0, n-len(h)-9)) + "\r\n"
		out = append(out, h+"\r\n"+strings.Repeat("b", 300)+"\r\n")
	}
	return out
}

// TestHeaderIn: for every prefix of every message, a header decided by the
// prefix is the whole message's (store.HeaderLen), and a whole message
// always decides it.
func TestHeaderIn(t *testing.T) {
	msgs := briefHeaderMessages()
	msgs = append(msgs, "Subject: bare\nFrom: lf\n\nbody\n", "Subject: cr\r\n\r")
	decided := 0
	for _, m := range msgs {
		raw := []byte(m)
		want := store.HeaderLen(raw)
		for c := 0; c <= len(raw); c++ {
			h, ok := headerIn(raw[:c], c == len(raw))
			if c == len(raw) && !ok {
				t.Errorf("%.30q: the whole message does not decide its header", m)
			}
			if ok {
				decided++
				if h != want {
					t.Fatalf("%.30q cut at %d: header %d bytes, the whole message's %d", m, c, h, want)
				}
			}
		}
	}
	if decided == 0 {
		t.Fatal("no prefix decided anything")
	}
}

// TestBodiesBrief: over real PostgreSQL, BodiesBrief hands every message of
// a selection once, ascending, with MetaBrief's metadata; with BriefHeader
// exactly the header store.HeaderLen finds in its whole bytes (headers
// ending in, at and past the first 8,000-byte row, none, 0-byte messages),
// else the whole bytes Body reads.
func TestBodiesBrief(t *testing.T) {
	s, u, mb := aliceInbox(t, Options{PollInterval: time.Hour})
	ctx := context.Background()
	bodies := map[store.UID][]byte{}
	var uids []store.UID
	for _, m := range briefHeaderMessages() {
		ent := mustAppend(t, s, u.ID, mb.ID, []byte(m), store.FlagSeen)
		b, err := s.Body(ctx, u.ID, mb.ID, ent.UID)
		if err != nil {
			t.Fatal(err)
		}
		bodies[ent.UID], uids = b, append(uids, ent.UID)
	}
	for i := range 2*bodiesBatch*8 + 3 { // more than one group of header reads
		ent := mustAppend(t, s, u.ID, mb.ID, msg(fmt.Sprint("bulk ", i), "body"))
		b, err := s.Body(ctx, u.ID, mb.ID, ent.UID)
		if err != nil {
			t.Fatal(err)
		}
		bodies[ent.UID], uids = b, append(uids, ent.UID)
	}
	last := uids[len(uids)-1]
	// Newest first, twice each, and UIDs that do not exist.
	var req []store.UID
	for i := len(uids) - 1; i >= 0; i-- {
		req = append(req, uids[i], uids[i])
	}
	req = append(req, last+1, last+100)
	metas, err := s.MetaBrief(ctx, u.ID, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []store.BriefFields{store.BriefHeader, store.BriefHeader | store.BriefInternalDate, 0} {
		var got []store.UID
		err := s.BodiesBrief(ctx, u.ID, mb.ID, req, want, func(m *store.MessageMeta, raw []byte, damaged error) error {
			i := len(got)
			got = append(got, m.UID)
			if i >= len(metas) {
				return nil
			}
			ref := metas[i]
			if m.UID != ref.UID || m.Message != ref.Message || !slices.Equal(m.Flags, ref.Flags) || m.ModSeq != ref.ModSeq ||
				m.Size != ref.Size || !m.InternalDate.Equal(ref.InternalDate) || damaged != nil {
				t.Errorf("want %b, uid %d: %+v, MetaBrief %+v", want, m.UID, m, ref)
			}
			full := bodies[m.UID]
			exp := full
			if want&store.BriefHeader != 0 {
				exp = full[:store.HeaderLen(full)]
			}
			if !bytes.Equal(raw, exp) || int64(len(full)) != m.Size {
				t.Errorf("want %b, uid %d: %d bytes %.40q, want %d", want, m.UID, len(raw), raw, len(exp))
			}
			return nil
		})
		if err != nil || !slices.Equal(got, uids) {
			t.Fatalf("want %b: visited %d UIDs (%v), want %d once each, ascending", want, len(got), err, len(uids))
		}
	}
	if err := s.BodiesBrief(ctx, u.ID, mb.ID, []store.UID{}, store.BriefHeader, func(*store.MessageMeta, []byte, error) error {
		t.Error("called for an empty selection")
		return nil
	}); err != nil {
		t.Error(err)
	}
}
