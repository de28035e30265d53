package imapfront

import (
	"bytes"
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// metaCounting is the store with its Meta and MetaBrief calls counted.
type metaCounting struct {
	*store.Store
	meta, brief atomic.Int32
}

func (m *metaCounting) Meta(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.MessageMeta, error) {
	m.meta.Add(1)
	return m.Store.Meta(ctx, u, mb, uids)
}

func (m *metaCounting) MetaBrief(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID) ([]store.MessageMeta, error) {
	m.brief.Add(1)
	return m.Store.MetaBrief(ctx, u, mb, uids)
}

// bytesSections are whole-message, top-level header and text sections,
// partial ones among them: all found in the bytes alone.
func bytesSections(peek bool) []*imap.FetchItemBodySection {
	return []*imap.FetchItemBodySection{
		{Peek: peek},
		{Specifier: imap.PartSpecifierText, Peek: peek},
		{Specifier: imap.PartSpecifierHeader, Peek: peek},
		{Specifier: imap.PartSpecifierHeader, Peek: peek, HeaderFields: []string{"Subject", "content-type"}},
		{Peek: peek, Partial: &imap.SectionPartial{Offset: 5, Size: 40}},
		{Specifier: imap.PartSpecifierText, Peek: peek, Partial: &imap.SectionPartial{Offset: 2, Size: 1 << 20}},
	}
}

// TestBytesOnlySectionsMatchBodySection: whole messages and top-level
// texts found in the bytes (headerSections) are byte for byte what
// bodySection gives from the parsed structure, over the parser's corpus
// and headers ending in odd places.
func TestBytesOnlySectionsMatchBodySection(t *testing.T) {
	env := newEnv(t)
	metas, byUID, uids, ncorpus := deliverSectionCorpus(t, env)
	ctx := context.Background()
	u, mb := env.user("alice"), env.mailbox("alice", "INBOX")
	secs := bytesSections(true)
	hs := newHeaderSections(secs)
	n := 0
	err := env.st.Bodies(ctx, u.ID, mb.ID, uids, func(uid store.UID, raw []byte, damaged error) error {
		if damaged != nil {
			t.Fatalf("uid %d: %v", uid, damaged)
		}
		n++
		for i, sec := range secs {
			want := partial(bodySection(raw, byUID[uid].Structure, sec), sec.Partial)
			got := partial(hs.section(raw, i, false), sec.Partial)
			if !bytes.Equal(got, want) {
				t.Errorf("uid %d, section %d: %q, want %q", uid, i, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(metas) || n < ncorpus+len(headerEdgeMessages) {
		t.Fatalf("%d messages read, %d listed, corpus %d", n, len(metas), ncorpus)
	}
}

// TestBytesOnly: only FETCHes whose sections are whole messages and
// top-level headers and texts, with nothing needing the structure, are
// answered from the bytes with brief metadata.
func TestBytesOnly(t *testing.T) {
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}
	for _, tt := range []struct {
		o    imap.FetchOptions
		want bool
	}{
		{imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{}}}, true},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr, text, {Peek: true}}}, true},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Partial: &imap.SectionPartial{Offset: 1, Size: 2}}}}, true},
		{imap.FetchOptions{Flags: true}, false},
		{imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{}}}, false},
		{imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{text}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierMIME}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{2}, Specifier: imap.PartSpecifierText}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}, BinarySection: []*imap.FetchItemBinarySection{{}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}, BinarySectionSize: []*imap.FetchItemBinarySectionSize{{}}}, false},
	} {
		if got := bytesOnly(&tt.o); got != tt.want {
			t.Errorf("bytesOnly(%+v) = %v, want %v", tt.o, got, tt.want)
		}
		if headerOnly(&tt.o) && !bytesOnly(&tt.o) {
			t.Errorf("%+v: headerOnly but not bytesOnly", tt.o)
		}
	}
}

// TestBytesOnlyFetch: over IMAP, a FETCH of whole messages and top-level
// headers and texts lists the messages without envelope or structure
// (MetaBrief; Meta is not called) and answers exactly what the same FETCH
// with ENVELOPE (answered from the structure) does: sections, sizes,
// dates, flags; without PEEK it sets \Seen on the messages it returned.
func TestBytesOnlyFetch(t *testing.T) {
	var st *metaCounting
	e := newEnv(t, func(o *Options) {
		st = &metaCounting{Store: o.Store.(*store.Store)}
		o.Store = st
	})
	for _, raw := range headerEdgeMessages {
		e.deliver("alice", "INBOX", raw)
	}
	e.appendAll("alice", "alpha", "beta", "gamma")
	e.deliverSized("alice", 0, 20, 300_000) // several chunks' worth
	c := e.client("alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	secs := bytesSections(true)
	all := imap.UIDSetNum()
	all.AddRange(1, 0)
	st.meta.Store(0)
	brief, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true, BodySection: secs}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if m, b := st.meta.Load(), st.brief.Load(); m != 0 || b == 0 {
		t.Errorf("bytes-only FETCH: %d Meta and %d MetaBrief calls, want none and some", m, b)
	}
	full, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true, Envelope: true, BodySection: secs}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if m := st.meta.Load(); m == 0 {
		t.Errorf("FETCH with ENVELOPE: no Meta call")
	}
	want := len(headerEdgeMessages) + 3 + 20
	if len(brief) != want || len(full) != want {
		t.Fatalf("%d and %d messages, want %d", len(brief), len(full), want)
	}
	for i, b := range brief {
		f := full[i]
		if b.UID != f.UID || b.RFC822Size != f.RFC822Size || b.RFC822Size == 0 || !b.InternalDate.Equal(f.InternalDate) || !slices.Equal(b.Flags, f.Flags) {
			t.Errorf("message %d: uid %d size %d date %v flags %v, with ENVELOPE uid %d size %d date %v flags %v",
				i, b.UID, b.RFC822Size, b.InternalDate, b.Flags, f.UID, f.RFC822Size, f.InternalDate, f.Flags)
		}
		for _, sec := range secs {
			gb, gf := b.FindBodySection(sec), f.FindBodySection(sec)
			if gb == nil || !bytes.Equal(gb, gf) {
				t.Errorf("uid %d, %v: %d bytes, with ENVELOPE %d", b.UID, sec, len(gb), len(gf))
			}
		}
		if whole := b.FindBodySection(secs[0]); int64(len(whole)) != b.RFC822Size {
			t.Errorf("uid %d: BODY[] of %d bytes, RFC822.SIZE %d", b.UID, len(whole), b.RFC822Size)
		}
	}

	// Without PEEK: \Seen set on exactly the messages fetched.
	some := imap.UIDSetNum(brief[1].UID, brief[len(brief)-1].UID)
	got, err := c.Fetch(some, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d messages for BODY[TEXT] of two", len(got))
	}
	flags, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range flags {
		seen := slices.Contains(m.Flags, imap.FlagSeen)
		if want := m.UID == brief[1].UID || m.UID == brief[len(brief)-1].UID; seen != want {
			t.Errorf("uid %d: \\Seen %v after BODY[TEXT] of uids %d and %d", m.UID, seen, brief[1].UID, brief[len(brief)-1].UID)
		}
	}
}
