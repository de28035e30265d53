package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func readCorpus(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "*.eml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no corpus in testdata/fuzz: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	out["deep-nesting (generated)"] = deepNesting(1000)
	return out
}

// deepNesting returns a message of n nested multiparts.
func deepNesting(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: deep\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

// checkPart verifies the invariants FETCH relies on, returning the depth.
func checkPart(t testing.TB, raw []byte, p *Part, lo, hi int64) int {
	t.Helper()
	if p == nil {
		t.Fatalf("nil part")
	}
	if !(lo <= p.HeaderStart && p.HeaderStart <= p.BodyStart && p.BodyStart <= p.End && p.End <= hi) {
		t.Fatalf("part %v offsets %d/%d/%d outside [%d,%d]", p, p.HeaderStart, p.BodyStart, p.End, lo, hi)
	}
	if p.Size != p.End-p.BodyStart {
		t.Fatalf("part %v size %d != %d", p, p.Size, p.End-p.BodyStart)
	}
	if p.Type == "" || p.Subtype == "" || p.Encoding == "" {
		t.Fatalf("part with empty type/subtype/encoding: %+v", p)
	}
	depth := 0
	switch {
	case p.Type == "multipart":
		if len(p.Children) == 0 {
			t.Fatalf("multipart without children: %+v", p)
		}
		for _, c := range p.Children {
			depth = max(depth, checkPart(t, raw, c, p.BodyStart, p.End))
		}
	case p.Type == "message" && (p.Subtype == "rfc822" || p.Subtype == "global"):
		if p.Envelope == nil || p.Body == nil {
			t.Fatalf("message/rfc822 without envelope or body: %+v", p)
		}
		depth = checkPart(t, raw, p.Body, p.BodyStart, p.End)
	default:
		if len(p.Children) > 0 || p.Body != nil {
			t.Fatalf("leaf %v with children", p)
		}
	}
	return depth + 1
}

func TestParseMalformedCorpus(t *testing.T) {
	for name, raw := range readCorpus(t) {
		t.Run(name, func(t *testing.T) {
			norm := normalizeCRLF(raw)
			pm := parseMessageUnsafe(norm)
			if pm.envelope == nil {
				t.Fatal("nil envelope")
			}
			if d := checkPart(t, norm, pm.structure, 0, int64(len(norm))); d > maxPartDepth+1 {
				t.Errorf("depth %d over cap %d", d, maxPartDepth)
			}
			if pm.structure.HeaderStart != 0 || pm.structure.End != int64(len(norm)) {
				t.Errorf("root spans %d..%d of %d", pm.structure.HeaderStart, pm.structure.End, len(norm))
			}
		})
	}
}

func TestParseFallbacks(t *testing.T) {
	corpus := readCorpus(t)
	parse := func(name string) parsedMessage { return parseMessageUnsafe(normalizeCRLF(corpus[name])) }
	tests := []struct {
		name  string
		check func(pm parsedMessage) error
	}{
		{"zero-part-multipart.eml", func(pm parsedMessage) error {
			if pm.structure.Type != "text" || pm.structure.Subtype != "plain" {
				return fmt.Errorf("structure %v, want text/plain", pm.structure)
			}
			return nil
		}},
		{"missing-boundary.eml", func(pm parsedMessage) error {
			if pm.structure.Type != "text" || pm.envelope.Subject != "no boundary param" {
				return fmt.Errorf("structure %v subject %q", pm.structure, pm.envelope.Subject)
			}
			return nil
		}},
		{"unterminated-multipart.eml", func(pm parsedMessage) error {
			if n := len(pm.structure.Children); n != 2 {
				return fmt.Errorf("%d children, want 2", n)
			}
			return nil
		}},
		{"eight-bit-headers.eml", func(pm parsedMessage) error {
			e := pm.envelope
			if e.Subject != "Grüße €" && e.Subject != "Gr\u00fc\u00dfe \u00e2\u0082\u00ac" {
				return fmt.Errorf("subject %q", e.Subject)
			}
			if len(e.From) != 1 || e.From[0].Name != "Jörg" || e.From[0].Host != "example.org" {
				return fmt.Errorf("from %+v", e.From)
			}
			return nil
		}},
		{"bad-charset.eml", func(pm parsedMessage) error {
			if pm.envelope.Subject == "" || len(pm.envelope.From) != 1 {
				return fmt.Errorf("envelope %+v", pm.envelope)
			}
			return nil
		}},
		{"groups.eml", func(pm parsedMessage) error {
			e := pm.envelope
			// Groups are start and end markers around their members
			// (RFC 3501 section 7.4.2).
			if len(e.Cc) != 4 || e.Cc[0].Mailbox != "friends" || e.Cc[0].Host != "" || e.Cc[3] != (Address{}) ||
				len(e.To) != 2 || e.To[0].Mailbox != "undisclosed-recipients" || e.To[1] != (Address{}) ||
				len(e.Bcc) != 1 || e.Bcc[0].Mailbox != "d" {
				return fmt.Errorf("to %+v cc %+v bcc %+v", e.To, e.Cc, e.Bcc)
			}
			if len(e.InReplyTo) != 2 || e.InReplyTo[0] != "x@y" {
				return fmt.Errorf("in-reply-to %q", e.InReplyTo)
			}
			return nil
		}},
		{"digest.eml", func(pm parsedMessage) error {
			c := pm.structure.Children
			if len(c) != 2 || c[0].Type != "message" || c[0].Envelope.Subject != "digest one" {
				return fmt.Errorf("digest children %v", c)
			}
			return nil
		}},
		{"deep-nesting (generated)", func(pm parsedMessage) error {
			d := 0
			for p := pm.structure; len(p.Children) > 0; p = p.Children[0] {
				d++
			}
			if d != maxPartDepth {
				return fmt.Errorf("nesting depth %d, want cap %d", d, maxPartDepth)
			}
			return nil
		}},
		{"garbage.eml", func(pm parsedMessage) error {
			if pm.structure.Type != "text" || pm.structure.BodyStart != 0 {
				return fmt.Errorf("structure %+v", pm.structure)
			}
			return nil
		}},
		{"no-header-separator.eml", func(pm parsedMessage) error {
			if pm.envelope.Subject != "header only" || pm.structure.Size != 0 {
				return fmt.Errorf("subject %q size %d", pm.envelope.Subject, pm.structure.Size)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := corpus[tt.name]; !ok {
				t.Fatalf("no corpus file %s", tt.name)
			}
			if err := tt.check(parse(tt.name)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParseStructureOffsets(t *testing.T) {
	raw := normalizeCRLF(readCorpus(t)["multipart-mixed.eml"])
	pm := parseMessageUnsafe(raw)
	st := pm.structure
	section := func(p *Part) string { return string(raw[p.BodyStart:p.End]) }
	mime := func(p *Part) string { return string(raw[p.HeaderStart:p.BodyStart]) }
	if st.Type != "multipart" || st.Subtype != "mixed" || len(st.Children) != 4 || st.Params["boundary"] != "outer" {
		t.Fatalf("root = %+v", st)
	}
	c := st.Children
	if got := section(c[0]); got != "first part" {
		t.Errorf("BODY[1] = %q", got)
	}
	if got := mime(c[0]); got != "Content-Type: text/plain; charset=utf-8\r\n\r\n" {
		t.Errorf("BODY[1.MIME] = %q", got)
	}
	alt := c[1]
	if len(alt.Children) != 2 || section(alt.Children[1]) != "<p>caf=E9</p>" || alt.Children[1].DecodedSize != len64("<p>café</p>")-1 {
		t.Errorf("alternative = %+v / %q", alt.Children, section(alt.Children[1]))
	}
	att := c[2]
	if att.Disposition != "attachment" || att.DispositionParams["filename"] != "a.pdf" || att.Encoding != "BASE64" ||
		att.DecodedSize != 9 || att.MD5 != "Q2hlY2sgSW50ZWdyaXR5IQ==" || att.ID != "<att1@example.org>" ||
		att.Description != "a document" || strings.Join(att.Language, ",") != "en,de" || att.Location != "http://example.org/a.pdf" {
		t.Errorf("attachment = %+v", att)
	}
	msg := c[3]
	if msg.Envelope == nil || msg.Envelope.Subject != "inner message" || msg.Body == nil || section(msg.Body) != "inner body" {
		t.Errorf("message/rfc822 = %+v", msg)
	}
	if !strings.Contains(pm.bodyText, "first part") || !strings.Contains(pm.bodyText, "café") || strings.Contains(pm.bodyText, "<p>") ||
		!strings.Contains(pm.bodyText, "subject: inner message") || strings.Contains(pm.bodyText, "jvber") {
		t.Errorf("body text = %q", pm.bodyText)
	}
	if !strings.Contains(pm.headerText, "subject: mixed\n") {
		t.Errorf("header text = %q", pm.headerText)
	}
}

func len64(s string) int64 { return int64(len(s)) }

func countParts(p *Part) int {
	n := 1
	for _, c := range p.Children {
		n += countParts(c)
	}
	if p.Body != nil {
		n += countParts(p.Body)
	}
	return n
}

func TestParsePartCap(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=x\r\n\r\n")
	for range 3 * maxParts {
		b.WriteString("--x\r\n\r\nab\r\n")
	}
	b.WriteString("--x--\r\n")
	raw := b.Bytes()
	pm := parseMessageUnsafe(raw)
	checkPart(t, raw, pm.structure, 0, int64(len(raw)))
	if n := countParts(pm.structure); n > maxParts+1 {
		t.Errorf("%d parts described, cap %d", n, maxParts)
	}
	last := pm.structure.Children[len(pm.structure.Children)-1]
	if last.End != int64(len(raw)) || last.Type != "text" {
		t.Errorf("last part %+v does not take the rest (%d bytes)", last, len(raw))
	}
}

// TestParseMatchesGoIMAP compares the structure of well-formed messages with
// what go-imap's own (re-parsing) implementation computes.
func TestParseMatchesGoIMAP(t *testing.T) {
	corpus := readCorpus(t)
	// Not digest.eml: go-imap ignores the multipart/digest default type
	// (RFC 2046 section 5.1.5), which the store honours.
	for _, name := range []string{"simple.eml", "multipart-mixed.eml", "lf-only.eml", "nul-bytes.eml"} {
		t.Run(name, func(t *testing.T) {
			raw := normalizeCRLF(corpus[name])
			ours := parseMessageUnsafe(raw).structure
			theirs := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
			compareStructure(t, "", ours, theirs)
		})
	}
}

func compareStructure(t *testing.T, path string, ours *Part, theirs imap.BodyStructure) {
	t.Helper()
	switch bs := theirs.(type) {
	case *imap.BodyStructureMultiPart:
		if ours.Type != "multipart" || ours.Subtype != strings.ToLower(bs.Subtype) || len(ours.Children) != len(bs.Children) {
			t.Fatalf("%s: ours %v (%d children), go-imap multipart/%s (%d)", path, ours, len(ours.Children), bs.Subtype, len(bs.Children))
		}
		for i := range bs.Children {
			compareStructure(t, fmt.Sprintf("%s.%d", path, i+1), ours.Children[i], bs.Children[i])
		}
	case *imap.BodyStructureSinglePart:
		if ours.Type+"/"+ours.Subtype != bs.MediaType() && bs.Type != "" {
			t.Errorf("%s: type %s/%s, go-imap %s", path, ours.Type, ours.Subtype, bs.MediaType())
		}
		if ours.Size != int64(bs.Size) {
			t.Errorf("%s: size %d, go-imap %d", path, ours.Size, bs.Size)
		}
		if bs.Text != nil && ours.Lines != bs.Text.NumLines {
			t.Errorf("%s: lines %d, go-imap %d", path, ours.Lines, bs.Text.NumLines)
		}
		if bs.MessageRFC822 != nil {
			if ours.Lines != bs.MessageRFC822.NumLines || ours.Envelope.Subject != bs.MessageRFC822.Envelope.Subject {
				t.Errorf("%s: message lines %d subject %q, go-imap %d %q", path, ours.Lines, ours.Envelope.Subject,
					bs.MessageRFC822.NumLines, bs.MessageRFC822.Envelope.Subject)
			}
			compareStructure(t, path+".msg", ours.Body, bs.MessageRFC822.BodyStructure)
		}
	}
}

// FuzzParse checks that no input makes the parser panic or break the
// invariants FETCH relies on. Seeds: testdata/fuzz/*.eml.
func FuzzParse(f *testing.F) {
	for _, raw := range readCorpus(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		norm := normalizeCRLF(raw)
		if bytes.Count(norm, []byte("\r\n")) < bytes.Count(raw, []byte("\n")) {
			t.Fatal("normalisation lost line ends")
		}
		pm := parseMessageUnsafe(norm)
		checkPart(t, norm, pm.structure, 0, int64(len(norm)))
	})
}

// TestStoreMalformedCorpus stores every corpus message and checks that what
// FETCH reads back is consistent: bytes as stored, RFC822.SIZE, and part
// offsets within the stored bytes.
func TestStoreMalformedCorpus(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, "INBOX")
	for name, raw := range readCorpus(t) {
		t.Run(name, func(t *testing.T) {
			e, _, err := s.Append(ctx, u.ID, inbox.ID, raw, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			body, err := s.Body(ctx, u.ID, inbox.ID, e.UID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, normalizeCRLF(raw)) {
				t.Errorf("stored bytes differ from the CRLF-normalised input")
			}
			if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("bare LF left in stored message")
			}
			meta, err := s.Meta(ctx, u.ID, inbox.ID, []UID{e.UID})
			if err != nil || len(meta) != 1 {
				t.Fatalf("Meta = %v, %v", meta, err)
			}
			if meta[0].Size != int64(len(body)) {
				t.Errorf("size %d, body %d bytes", meta[0].Size, len(body))
			}
			checkPart(t, body, meta[0].Structure, 0, int64(len(body)))
		})
	}
}
