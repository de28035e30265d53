package imapfront

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// headerSyncSections are the sections a header sync asks for, and the
// other forms headerSections answers.
func headerSyncSections() []*imap.FetchItemBodySection {
	return []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader, Peek: true, HeaderFields: []string{"FROM", "TO", "CC", "SUBJECT", "DATE", "MESSAGE-ID"}},
		{Specifier: imap.PartSpecifierHeader, Peek: true},
		{Specifier: imap.PartSpecifierHeader, Peek: true, HeaderFieldsNot: []string{"Received", "subject", "Content-Type"}},
		{Specifier: imap.PartSpecifierHeader, Peek: true, HeaderFields: []string{"content-TYPE", "x-ünïcode", "Subject"}},
		{Specifier: imap.PartSpecifierHeader, Peek: true, HeaderFields: []string{"Subject"}, Partial: &imap.SectionPartial{Offset: 3, Size: 10}},
	}
}

// headerEdgeMessages are headers the parser ends in odd places.
var headerEdgeMessages = []string{
	"Subject: no blank line\r\nFrom: a@b\r\n",
	"Subject: body without blank\r\nthis is not a field\r\nbody\r\n",
	"not a header at all\r\n\r\nbody\r\n",
	" folded: first\r\nSubject: x\r\n\r\nbody\r\n",
	"SUBJECT : spaced\r\nsubject: lower\r\n folded\r\nX-Ünïcode: 8bit name\r\n\r\nbody\r\n",
	"Subject: bare lf\nFrom: a@b\n\nbody\n",
}

// deliverSectionCorpus delivers headerEdgeMessages and the parser's
// corpus (binaryCorpus, by name) to alice's INBOX and returns their
// metadata (Meta: with structures), by UID, their UIDs, and the corpus's
// size.
func deliverSectionCorpus(t *testing.T, env *testEnv) (metas []store.MessageMeta, byUID map[store.UID]*store.MessageMeta, uids []store.UID, ncorpus int) {
	t.Helper()
	corpus := binaryCorpus(t)
	for _, raw := range headerEdgeMessages {
		env.deliver("alice", "INBOX", raw)
	}
	for _, n := range slices.Sorted(maps.Keys(corpus)) {
		env.deliver("alice", "INBOX", corpus[n])
	}
	u, mb := env.user("alice"), env.mailbox("alice", "INBOX")
	metas, err := env.st.Meta(context.Background(), u.ID, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	byUID = map[store.UID]*store.MessageMeta{}
	for i := range metas {
		byUID[metas[i].UID] = &metas[i]
		uids = append(uids, metas[i].UID)
	}
	return metas, byUID, uids, len(corpus)
}

// TestHeaderSectionsMatchBodySection: the header sync's sections, found in
// the bytes (store.HeaderLen, no structure), are byte for byte those
// bodySection gives from the parsed structure, over the parser's corpus
// (damaged messages included) and headers ending without a blank line,
// whether found in the whole bytes or read alone (store.BriefHeader).
func TestHeaderSectionsMatchBodySection(t *testing.T) {
	env := newEnv(t)
	metas, byUID, uids, ncorpus := deliverSectionCorpus(t, env)
	ctx := context.Background()
	u, mb := env.user("alice"), env.mailbox("alice", "INBOX")
	var err error
	// What the header sync reads: only each message's header, checked
	// by its own checksum (store.BriefHeader).
	headers := map[store.UID][]byte{}
	err = env.st.BodiesBrief(ctx, u.ID, mb.ID, uids, store.BriefHeader, func(m *store.MessageMeta, header []byte, damaged error) error {
		if damaged != nil {
			t.Fatalf("uid %d: %v", m.UID, damaged)
		}
		headers[m.UID] = bytes.Clone(header)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	secs := headerSyncSections()
	hs := newHeaderSections(secs)
	n := 0
	err = env.st.Bodies(ctx, u.ID, mb.ID, uids, func(uid store.UID, raw []byte, damaged error) error {
		if damaged != nil {
			t.Fatalf("uid %d: %v", uid, damaged)
		}
		n++
		header, ok := headers[uid]
		if !ok {
			t.Errorf("uid %d: no header from BodiesBrief", uid)
		}
		for i, sec := range secs {
			want := partial(bodySection(raw, byUID[uid].Structure, sec), sec.Partial)
			got := partial(hs.section(raw, i, false), sec.Partial)
			if !bytes.Equal(got, want) {
				t.Errorf("uid %d, section %d: %q, want %q", uid, i, got, want)
			}
			got = partial(hs.section(header, i, true), sec.Partial)
			if !bytes.Equal(got, want) {
				t.Errorf("uid %d, section %d from the header alone: %q, want %q", uid, i, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(metas) || n < ncorpus {
		t.Fatalf("%d messages read, %d listed, corpus %d", n, len(metas), ncorpus)
	}
}

// filterHeaderBefore is filterHeader as it was before headerFilter: the
// reference the prepared filter must equal.
func filterHeaderBefore(header []byte, fields, not []string) []byte {
	want := make(map[string]bool, len(fields)+len(not))
	for _, f := range fields {
		want[strings.ToLower(f)] = true
	}
	for _, f := range not {
		want[strings.ToLower(f)] = true
	}
	keepNamed := len(fields) > 0
	var out bytes.Buffer
	keep := false
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line = header[:i+1]
		}
		header = header[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, found := bytes.Cut(trimmed, []byte(":"))
			named := found && want[strings.ToLower(strings.TrimSpace(string(name)))]
			keep = named == keepNamed
		}
		if keep {
			out.Write(trimmed)
			out.WriteString("\r\n")
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// TestFilterHeaderSameAsBefore: the prepared filter (ASCII names lowered
// without allocating) selects exactly what the string-lowering one did,
// non-ASCII and odd names included.
func TestFilterHeaderSameAsBefore(t *testing.T) {
	header := "Subject: a\r\n folded\r\nSUBJECT : b\r\n  subject\t: c\r\nX-Ünïcode: d\r\nx-ünïcode: e\r\n" +
		"\u017Fubject: long s\r\nKELVIN-\u212A: k\r\nkelvin-k: k2\r\nno colon line\r\n\tcont\r\nFrom: f\r\n\r\nBody: not header\r\n"
	for _, sel := range [][2][]string{
		{{"subject"}, nil}, {{"SUBJECT", "from"}, nil}, {nil, {"Subject"}}, {{"x-ÜNÏCODE"}, nil},
		{{"x-ünïcode"}, nil}, {{"subject", "kelvin-k"}, nil}, {{"KELVIN-\u212A"}, nil}, {nil, {"x-ünïcode", "from", "no colon line"}},
	} {
		for cut := 0; cut <= len(header); cut += 7 {
			h := []byte(header[:cut])
			want := filterHeaderBefore(h, sel[0], sel[1])
			got := filterHeader(h, sel[0], sel[1])
			again := newHeaderFilter(sel[0], sel[1]).appendTo([]byte("prefix"), h)
			if !bytes.Equal(got, want) || string(again) != "prefix"+string(want) {
				t.Errorf("%v, header[:%d]: %q / %q, want %q", sel, cut, got, again, want)
			}
		}
	}
}

// TestHeaderOnly: only FETCHes whose sections are all top-level headers,
// with nothing needing the structure, take the header path.
func TestHeaderOnly(t *testing.T) {
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	for _, tt := range []struct {
		o    imap.FetchOptions
		want bool
	}{
		{imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{hdr}}, true},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr, {Specifier: imap.PartSpecifierHeader}}}, true},
		{imap.FetchOptions{Flags: true}, false},
		{imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{hdr}}, false},
		{imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{hdr}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr, {}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}, Specifier: imap.PartSpecifierHeader}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr}, BinarySection: []*imap.FetchItemBinarySection{{}}}, false},
		{imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{hdr}, BinarySectionSize: []*imap.FetchItemBinarySectionSize{{}}}, false},
	} {
		if got := headerOnly(&tt.o); got != tt.want {
			t.Errorf("headerOnly(%+v) = %v, want %v", tt.o, got, tt.want)
		}
	}
}

// TestHeaderSyncFetch: over IMAP, the header sync (answered from the bytes)
// gives the same sections as the same FETCH with ENVELOPE (answered from
// the structure), sizes and flags included; a non-peek header FETCH sets
// \Seen; a damaged message costs only itself (NO [CORRUPTION] naming it),
// and with PEEK only damage in its header counts (only the header is read).
func TestHeaderSyncFetch(t *testing.T) {
	e := newEnv(t)
	for _, raw := range headerEdgeMessages {
		e.deliver("alice", "INBOX", raw)
	}
	e.appendAll("alice", "alpha", "beta", "gamma")
	c := e.client("alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	secs := headerSyncSections()
	all := imap.UIDSetNum()
	all.AddRange(1, 0)
	brief, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, BodySection: secs}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	full, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true, BodySection: secs}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(brief) != len(headerEdgeMessages)+3 || len(full) != len(brief) {
		t.Fatalf("%d and %d messages, want %d", len(brief), len(full), len(headerEdgeMessages)+3)
	}
	for i, b := range brief {
		f := full[i]
		if b.UID != f.UID || b.RFC822Size != f.RFC822Size || b.RFC822Size == 0 || !slices.Equal(b.Flags, f.Flags) {
			t.Errorf("message %d: uid %d size %d flags %v, with ENVELOPE uid %d size %d flags %v", i, b.UID, b.RFC822Size, b.Flags, f.UID, f.RFC822Size, f.Flags)
		}
		for _, sec := range secs {
			gb, gf := b.FindBodySection(sec), f.FindBodySection(sec)
			if gb == nil || !bytes.Equal(gb, gf) {
				t.Errorf("uid %d, %v: %q, with ENVELOPE %q", b.UID, sec, gb, gf)
			}
		}
	}
	if got := string(brief[len(brief)-1].FindBodySection(secs[0])); !strings.Contains(got, "Subject: gamma") {
		t.Errorf("last message's fields %q lack its subject", got)
	}

	last := strconv.Itoa(len(brief))
	damagePacks(t, e.dir, "Hello, this is beta")
	r := e.rawSelected("alice", "INBOX")
	untagged, status := r.cmd("UID FETCH 1:* (UID RFC822.SIZE BODY[HEADER.FIELDS (SUBJECT)])")
	beta := strconv.Itoa(len(brief) - 1)
	if !strings.HasPrefix(status, "NO [CORRUPTION]") || !strings.Contains(status, "UID "+beta+" ") {
		t.Errorf("tagged answer %q, want NO [CORRUPTION] naming UID %s", status, beta)
	}
	if got := grep(untagged, " FETCH ("); len(got) != len(brief)-1 {
		t.Errorf("%d FETCH responses, want %d: %q", len(got), len(brief)-1, untagged)
	}
	// With PEEK the metadata comes with the bytes (BodiesBrief), and only
	// each header is read, checked by its own checksum: damage past
	// beta's header does not touch the answer.
	peek := "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
	untagged, status = r.cmd(peek)
	if !strings.HasPrefix(status, "OK") {
		t.Errorf("PEEK, beta's body damaged: tagged answer %q, want OK", status)
	}
	if got := grep(untagged, " FETCH ("); len(got) != len(brief) || !strings.Contains(got[len(got)-2], "Subject: beta") {
		t.Errorf("PEEK, beta's body damaged: %d FETCH responses, want %d with beta's: %q", len(got), len(brief), untagged)
	}
	// Damage in beta's header is found and costs only beta.
	damagePacks(t, e.dir, "Subject: beta")
	untagged, status = r.cmd(peek)
	if !strings.HasPrefix(status, "NO [CORRUPTION]") || !strings.Contains(status, "UID "+beta+" ") {
		t.Errorf("PEEK: tagged answer %q, want NO [CORRUPTION] naming UID %s", status, beta)
	}
	if got := grep(untagged, " FETCH ("); len(got) != len(brief)-1 || !strings.Contains(got[len(got)-1], "Subject: gamma") {
		t.Errorf("PEEK: %d FETCH responses, want %d ending with gamma's: %q", len(got), len(brief)-1, untagged)
	}
	for _, l := range grep(r.ok("UID FETCH 1:* FLAGS"), " FETCH (") {
		if seen := strings.Contains(l, `\Seen`); seen == strings.Contains(l, "UID "+beta+" ") {
			t.Errorf("after BODY[HEADER.FIELDS] over 1:%s: %q", last, l)
		}
	}
}
