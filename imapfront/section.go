package imapfront

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// findPart resolves a section part path (RFC 3501 section 6.4.5) in the
// stored structure. The part of a non-multipart message is "1", also when
// that message is itself a message/rfc822; the parts of an enclosed
// message/rfc822 are numbered from its body, so for a message whose whole
// body is message/rfc822, "1.1" is the body of the enclosed message.
func findPart(root *store.Part, path []int) (*store.Part, bool) {
	p := root
	for i, n := range path {
		if n < 1 || p == nil {
			return nil, false
		}
		switch {
		case len(p.Children) > 0:
			if n > len(p.Children) {
				return nil, false
			}
			p = p.Children[n-1]
		case p.Body != nil && i > 0:
			enc := p.Body
			if len(enc.Children) > 0 {
				if n > len(enc.Children) {
					return nil, false
				}
				p = enc.Children[n-1]
			} else {
				if n != 1 {
					return nil, false
				}
				p = enc
			}
		default:
			// Part 1 of a single-part message (or of a leaf) is itself.
			if n != 1 {
				return nil, false
			}
		}
	}
	return p, p != nil
}

// validRange reports whether [a, b) is a usable range of raw.
func validRange(raw []byte, a, b int64) bool {
	return a >= 0 && a <= b && b <= int64(len(raw))
}

// bodySection returns the bytes of a BODY[...] section, served from the
// stored part offsets; odd cases fall back to imapserver.ExtractBodySection.
// The partial range is applied by the caller.
//
// A part the message does not have (BODY[99.99.99]) is the empty string,
// and the FETCH succeeds. RFC 3501 and RFC 9051 define no answer for it;
// this is Dovecot's ("BODY[99.99.99] {0}", OK), and it keeps one odd
// message from failing a FETCH over many: a NO would give the client
// nothing for any message of the set.
func bodySection(raw []byte, root *store.Part, sec *imap.FetchItemBodySection) []byte {
	if root == nil {
		return extractFallback(raw, sec)
	}
	p, ok := findPart(root, sec.Part)
	if !ok {
		return nil
	}
	// HEADER, HEADER.FIELDS and TEXT of a part address its enclosed message.
	msg := p
	if len(sec.Part) > 0 && p.Body != nil && sec.Specifier != imap.PartSpecifierMIME && sec.Specifier != imap.PartSpecifierNone {
		msg = p.Body
	}
	var a, b int64
	switch sec.Specifier {
	case imap.PartSpecifierNone:
		if len(sec.Part) == 0 {
			a, b = 0, int64(len(raw))
		} else {
			a, b = p.BodyStart, p.End
		}
	case imap.PartSpecifierMIME:
		if len(sec.Part) == 0 {
			return extractFallback(raw, sec)
		}
		a, b = p.HeaderStart, p.BodyStart
	case imap.PartSpecifierHeader:
		a, b = msg.HeaderStart, msg.BodyStart
	case imap.PartSpecifierText:
		a, b = msg.BodyStart, msg.End
	default:
		return extractFallback(raw, sec)
	}
	if !validRange(raw, a, b) {
		return extractFallback(raw, sec)
	}
	data := raw[a:b]
	if sec.Specifier == imap.PartSpecifierHeader && (len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0) {
		return filterHeader(data, sec.HeaderFields, sec.HeaderFieldsNot)
	}
	return data
}

// extractFallback parses the message with imapserver.ExtractBodySection.
func extractFallback(raw []byte, sec *imap.FetchItemBodySection) []byte {
	s := *sec
	s.Partial = nil
	return imapserver.ExtractBodySection(bytes.NewReader(raw), &s)
}

// filterHeader keeps (fields) or drops (not) the header fields named, in
// their original order and folding, and ends with the blank line.
func filterHeader(header []byte, fields, not []string) []byte {
	return newHeaderFilter(fields, not).appendTo(nil, header)
}

// headerFilter is a HEADER.FIELDS or HEADER.FIELDS.NOT selection, prepared
// once for every message a FETCH answers.
type headerFilter struct {
	want      map[string]bool // the lower-cased names
	keepNamed bool            // HEADER.FIELDS: keep the named, else drop them
	lower     []byte          // scratch for a lower-cased field name
}

func newHeaderFilter(fields, not []string) *headerFilter {
	want := make(map[string]bool, len(fields)+len(not))
	for _, f := range fields {
		want[strings.ToLower(f)] = true
	}
	for _, f := range not {
		want[strings.ToLower(f)] = true
	}
	return &headerFilter{want: want, keepNamed: len(fields) > 0}
}

// named reports whether a field name (as written, before trimming) is one
// of the filter's, compared as strings.ToLower(strings.TrimSpace(name)).
func (h *headerFilter) named(name []byte) bool {
	name = bytes.TrimSpace(name)
	h.lower = h.lower[:0]
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return h.want[strings.ToLower(string(name))]
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h.lower = append(h.lower, c)
	}
	return h.want[string(h.lower)]
}

// appendTo appends the selected fields of header (and the blank line ending
// them) to dst.
func (h *headerFilter) appendTo(dst, header []byte) []byte {
	keep := false
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line = header[:i+1]
		}
		header = header[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break // the blank line ending the header
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, found := bytes.Cut(trimmed, []byte(":"))
			named := found && h.named(name)
			keep = named == h.keepNamed
		}
		if keep {
			dst = append(dst, trimmed...)
			dst = append(dst, '\r', '\n')
		}
	}
	return append(dst, '\r', '\n')
}

// headerOnly reports whether every section a FETCH asks for is the
// top-level HEADER, HEADER.FIELDS or HEADER.FIELDS.NOT, and nothing needs
// the decoded structure or envelope: then the bytes alone answer it
// (headerSections).
func headerOnly(o *imap.FetchOptions) bool {
	if o.Envelope || o.BodyStructure != nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 || len(o.BodySection) == 0 {
		return false
	}
	for _, sec := range o.BodySection {
		if len(sec.Part) > 0 || sec.Specifier != imap.PartSpecifierHeader {
			return false
		}
	}
	return true
}

// bytesOnly reports whether every section a FETCH asks for is the whole
// message or its top-level HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT or
// TEXT, and nothing needs the decoded structure or envelope: then the bytes
// alone answer it (headerSections), and the metadata it needs is brief
// (BriefLister). A headerOnly FETCH is bytesOnly.
func bytesOnly(o *imap.FetchOptions) bool {
	if o.Envelope || o.BodyStructure != nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 || len(o.BodySection) == 0 {
		return false
	}
	for _, sec := range o.BodySection {
		switch {
		case len(sec.Part) > 0:
			return false
		case sec.Specifier == imap.PartSpecifierNone, sec.Specifier == imap.PartSpecifierHeader, sec.Specifier == imap.PartSpecifierText:
		default:
			return false
		}
	}
	return true
}

// headerSections answers the sections of a bytesOnly FETCH: the same
// bytes as bodySection with the parsed structure, the header's end being
// found by store.HeaderLen, the parser's own rule.
type headerSections struct {
	specs   []imap.PartSpecifier // per section: None, Header or Text
	filters []*headerFilter      // per section; nil for HEADER
	scratch []byte
}

func newHeaderSections(secs []*imap.FetchItemBodySection) *headerSections {
	h := &headerSections{specs: make([]imap.PartSpecifier, len(secs)), filters: make([]*headerFilter, len(secs))}
	for i, sec := range secs {
		h.specs[i] = sec.Specifier
		if len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0 {
			h.filters[i] = newHeaderFilter(sec.HeaderFields, sec.HeaderFieldsNot)
		}
	}
	return h
}

// section returns section i of raw, a message's bytes or (isHeader) only
// its header (store.BriefHeader, for a headerOnly FETCH); the result is
// valid until the next call.
func (h *headerSections) section(raw []byte, i int, isHeader bool) []byte {
	switch h.specs[i] {
	case imap.PartSpecifierNone:
		return raw
	case imap.PartSpecifierText:
		return raw[store.HeaderLen(raw):]
	}
	header := raw
	if !isHeader {
		header = raw[:store.HeaderLen(raw)]
	}
	if h.filters[i] == nil {
		return header
	}
	h.scratch = h.filters[i].appendTo(h.scratch[:0], header)
	return h.scratch
}

// partial cuts the <offset.size> range of a section (RFC 3501 section
// 6.4.5): an offset beyond the end gives the empty string.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return []byte{}
	}
	end := p.Offset + p.Size
	if end > int64(len(b)) || end < p.Offset {
		end = int64(len(b))
	}
	return b[p.Offset:end]
}

// errUnknownCTE answers BINARY on a part whose transfer encoding cannot be
// decoded (RFC 3516 section 4.3).
var errUnknownCTE = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeUnknownCTE,
	Text: "Cannot decode the content transfer encoding of this part",
}

// binaryPart resolves the part of a BINARY[...] or BINARY.SIZE[...]
// section: nil (and no error) for a part the message does not have,
// composite for a multipart or message/rfc822 part, whose content is
// returned as is (composite parts are 7bit/8bit/binary by definition).
func binaryPart(raw []byte, root *store.Part, part []int) (p *store.Part, composite bool, err error) {
	if root == nil {
		return nil, false, errUnknownCTE
	}
	p, ok := findPart(root, part)
	if !ok {
		// Like BODY[n] of a part that does not exist (see bodySection).
		return nil, false, nil
	}
	if !validRange(raw, p.HeaderStart, p.BodyStart) || !validRange(raw, p.BodyStart, p.End) {
		return nil, false, errUnknownCTE
	}
	return p, len(p.Children) > 0 || p.Body != nil, nil
}

// binarySection returns the decoded content of a BINARY[...] section (RFC
// 3516): the part's body with its transfer encoding undone
// (store.DecodeStrict); for the empty part the whole message (header and
// decoded body of a single-part message); for a part the message does not
// have, the empty string.
func binarySection(raw []byte, root *store.Part, part []int) ([]byte, error) {
	p, composite, err := binaryPart(raw, root, part)
	switch {
	case err != nil || p == nil:
		return nil, err
	case composite && len(part) == 0:
		return raw, nil
	case composite:
		return raw[p.BodyStart:p.End], nil
	}
	body, err := store.DecodeTransferEncoding(p.Encoding, raw[p.BodyStart:p.End], store.DecodeStrict)
	if err != nil {
		return nil, errUnknownCTE
	}
	if len(part) == 0 {
		out := make([]byte, 0, int(p.BodyStart)+len(body))
		out = append(out, raw[p.HeaderStart:p.BodyStart]...)
		return append(out, body...), nil
	}
	return body, nil
}

// binarySize returns the size of BINARY[part] (BINARY.SIZE, RFC 3516)
// from the stored structure: a leaf's Part.DecodedSize, which the store
// measures by the rules binarySection decodes by. Only a part whose size
// the structure does not know (DecodedSize -1: it cannot be decoded, or was
// stored before sizes were measured strictly) is decoded here.
func binarySize(raw []byte, root *store.Part, part []int) (int64, error) {
	p, composite, err := binaryPart(raw, root, part)
	switch {
	case err != nil || p == nil:
		return 0, err
	case composite && len(part) == 0:
		return int64(len(raw)), nil
	case composite:
		return p.End - p.BodyStart, nil
	}
	n := p.DecodedSize
	if n < 0 {
		body, err := store.DecodeTransferEncoding(p.Encoding, raw[p.BodyStart:p.End], store.DecodeStrict)
		if err != nil {
			return 0, errUnknownCTE
		}
		n = int64(len(body))
	}
	if len(part) == 0 {
		n += p.BodyStart - p.HeaderStart
	}
	return n, nil
}

// toBodyStructure converts the stored MIME structure to go-imap's, always
// with the extension data (BODYSTRUCTURE; imapserver drops it for BODY). A
// multipart without children, which imapserver cannot write (docs/imapserver-workarounds.md, "BODYSTRUCTURE of a multipart without parts"), is
// described as text/plain.
func toBodyStructure(p *store.Part) imap.BodyStructure {
	if p == nil {
		return &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Encoding: "7bit",
			Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{}}
	}
	if len(p.Children) > 0 {
		mp := &imap.BodyStructureMultiPart{
			Subtype: p.Subtype,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      p.Params,
				Disposition: toDisposition(p),
				Language:    p.Language,
				Location:    p.Location,
			},
		}
		for _, c := range p.Children {
			mp.Children = append(mp.Children, toBodyStructure(c))
		}
		return mp
	}
	typ, sub := p.Type, p.Subtype
	if strings.EqualFold(typ, "multipart") || typ == "" || sub == "" {
		typ, sub = "text", "plain"
	}
	sp := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      p.Params,
		ID:          p.ID,
		Description: p.Description,
		Encoding:    p.Encoding,
		Size:        clampUint32(p.Size),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: toDisposition(p),
			Language:    p.Language,
			Location:    p.Location,
		},
	}
	switch {
	case p.Body != nil:
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      toEnvelope(p.Envelope),
			BodyStructure: toBodyStructure(p.Body),
			NumLines:      p.Lines,
		}
	case strings.EqualFold(typ, "text"):
		sp.Text = &imap.BodyStructureText{NumLines: p.Lines}
	}
	return sp
}

func toDisposition(p *store.Part) *imap.BodyStructureDisposition {
	if p.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: p.Disposition, Params: p.DispositionParams}
}

func clampUint32(n int64) uint32 {
	if n < 0 {
		return 0
	}
	if n > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

// toEnvelope converts a stored (decoded) envelope; imapserver encodes it.
func toEnvelope(e *store.Envelope) *imap.Envelope {
	if e == nil {
		return &imap.Envelope{}
	}
	return &imap.Envelope{
		Date:      e.Date,
		Subject:   e.Subject,
		From:      toAddresses(e.From),
		Sender:    toAddresses(e.Sender),
		ReplyTo:   toAddresses(e.ReplyTo),
		To:        toAddresses(e.To),
		Cc:        toAddresses(e.Cc),
		Bcc:       toAddresses(e.Bcc),
		InReplyTo: e.InReplyTo,
		MessageID: e.MessageID,
	}
}

func toAddresses(as []store.Address) []imap.Address {
	if len(as) == 0 {
		return nil
	}
	out := make([]imap.Address, len(as))
	for i, a := range as {
		out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
	}
	return out
}
