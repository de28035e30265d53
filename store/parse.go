package store

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
)

// Parsing happens once, when a message enters the store (Deliver, Append).
// The parser works on the raw bytes directly so that every part's offsets
// are exact; it never fails and never panics: anything it cannot make sense
// of becomes text/plain with a best-effort envelope.

// maxPartDepth caps MIME nesting; deeper multiparts and enclosed messages
// are described as text/plain leaves.
const maxPartDepth = 100

// maxParts caps the number of parts described per message, so that a
// message of millions of empty parts cannot blow up memory: once reached,
// the rest of a multipart's body becomes its last, text/plain, part.
const maxParts = 10000

// parsedMessage is what the store keeps about a message besides its bytes.
type parsedMessage struct {
	raw        []byte
	envelope   *Envelope
	structure  *Part
	headerText string // decoded top-level header, "name: value\n" per field, lower-case
	bodyText   string // decoded text of the text/* parts and enclosed headers, lower-case
	// panicked is set when the parser panicked and the message was
	// described as a single text/plain part instead.
	panicked any
	// textDerived is set when the body text can be derived from raw,
	// from textFrom on, so the text record does not hold it (textform.go).
	textDerived bool
	textFrom    int64
}

// normalizeCRLF turns every bare LF into CRLF. NUL and bare CR are kept; a
// message that already uses CRLF throughout is returned unchanged.
// It jumps from LF to LF (bytes.IndexByte) and copies the message at most
// once, in runs between bare LFs.
func normalizeCRLF(raw []byte) []byte {
	bare := 0
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || raw[i-1] != '\r' {
			bare++
		}
		i++
	}
	if bare == 0 {
		return raw
	}
	out := make([]byte, 0, len(raw)+bare)
	start := 0
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || raw[i-1] != '\r' {
			out = append(out, raw[start:i]...)
			out = append(out, '\r')
			start = i
		}
		i++
	}
	return append(out, raw[start:]...)
}

// parseMessage parses raw, which must already be CRLF-normalised. A panic in
// the parser (a bug: FuzzParse hunts for them) is contained here so a
// message is never refused for it: the message is then described as one
// text/plain part with an empty envelope.
func parseMessage(raw []byte) (pm parsedMessage) {
	defer func() {
		if r := recover(); r != nil {
			pm = parsedMessage{
				panicked: r,
				raw:      raw,
				envelope: &Envelope{},
				structure: &Part{Type: "text", Subtype: "plain", Encoding: "7BIT",
					Size: int64(len(raw)), Lines: countLines(raw), End: int64(len(raw)), DecodedSize: int64(len(raw))},
			}
		}
	}()
	return parseMessageUnsafe(raw)
}

// parseMessageUnsafe is parseMessage without the panic guard.
func parseMessageUnsafe(raw []byte) parsedMessage {
	p := &parser{raw: raw}
	bp := getBuf()
	p.text.b = *bp
	defer func() {
		*bp = p.text.b
		putBuf(bp)
	}()
	root, fields := p.part(0, len(raw), 0, "text", "plain")
	pm := parsedMessage{
		raw:        raw,
		envelope:   envelopeOf(fields),
		structure:  root,
		headerText: headerText(fields),
		bodyText:   p.text.String(),
	}
	return pm
}

type parser struct {
	raw   []byte
	text  textSink // the body text, lower-cased and collapsed
	parts int      // parts described so far
}

// field is one header field: the name as written and the unfolded value.
type field struct {
	name, value string
}

type header []field

func (h header) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// lineEnd returns the index just past the line starting at pos (past its
// LF), or end.
func lineEnd(b []byte, pos, end int) int {
	if i := bytes.IndexByte(b[pos:end], '\n'); i >= 0 {
		return pos + i + 1
	}
	return end
}

func isBlankLine(l []byte) bool {
	return len(l) == 0 || string(l) == "\r\n" || string(l) == "\n"
}

// fieldName returns the field name of a header line, or ok=false if the
// line is not a "name: value" line.
func fieldName(l []byte) (name string, rest []byte, ok bool) {
	n, rest, ok := headerFieldName(l)
	if !ok {
		return "", nil, false
	}
	return string(n), rest, true
}

// headerFieldName is fieldName without the string conversion.
func headerFieldName(l []byte) (name, rest []byte, ok bool) {
	i := bytes.IndexByte(l, ':')
	if i <= 0 {
		return nil, nil, false
	}
	n := bytes.TrimRight(l[:i], " \t")
	if len(n) == 0 {
		return nil, nil, false
	}
	for _, c := range n {
		if c < 33 || c > 126 {
			return nil, nil, false
		}
	}
	return n, l[i+1:], true
}

// splitHeader reads the header of the entity in raw[start:end]. It returns
// the fields and where the body begins. The header ends at the first blank
// line (the body begins after it). Without a blank line, a line that is not
// a header field ends the header and begins the body; an entity whose first
// line is not a header field has an empty header.
func (p *parser) splitHeader(start, end int) (header, int) {
	var h header
	pos := start
	for pos < end {
		le := lineEnd(p.raw, pos, end)
		line := p.raw[pos:le]
		if isBlankLine(line) {
			return h, le
		}
		if (line[0] == ' ' || line[0] == '\t') && len(h) > 0 {
			h[len(h)-1].value += " " + string(trimCRLF(line))
			pos = le
			continue
		}
		name, rest, ok := fieldName(line)
		if !ok {
			return h, pos
		}
		h = append(h, field{name: name, value: string(trimCRLF(rest))})
		pos = le
	}
	return h, end
}

func trimCRLF(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n")
}

func (h header) cleanValues() {
	for i := range h {
		h[i].value = strings.TrimSpace(strings.Join(strings.Fields(h[i].value), " "))
	}
}

// countLines counts the lines of a body as IMAP servers do (Dovecot,
// go-imap): the number of LFs.
func countLines(b []byte) int64 {
	return int64(bytes.Count(b, []byte{'\n'}))
}

// part describes the entity in raw[start:end] and returns it with its
// header fields.
func (p *parser) part(start, end, depth int, defType, defSub string) (*Part, header) {
	p.parts++
	h, bodyStart := p.splitHeader(start, end)
	h.cleanValues()
	typ, sub, params := contentType(h.get("Content-Type"), defType, defSub)
	pt := &Part{
		Type:        typ,
		Subtype:     sub,
		Params:      params,
		ID:          h.get("Content-Id"),
		Description: decodeHeaderValue(h.get("Content-Description")),
		Encoding:    transferEncoding(h.get("Content-Transfer-Encoding")),
		MD5:         h.get("Content-Md5"),
		Location:    h.get("Content-Location"),
		HeaderStart: int64(start),
		BodyStart:   int64(bodyStart),
		End:         int64(end),
		Size:        int64(end - bodyStart),
	}
	if cd := h.get("Content-Disposition"); cd != "" {
		disp, dparams, err := mime.ParseMediaType(cd)
		if err != nil {
			disp, _, _ = strings.Cut(cd, ";")
			disp = strings.ToLower(strings.TrimSpace(disp))
			dparams = lenientParams(cd)
		}
		pt.Disposition, pt.DispositionParams = disp, nonEmpty(dparams)
	}
	for _, l := range strings.Split(h.get("Content-Language"), ",") {
		if l = strings.TrimSpace(l); l != "" {
			pt.Language = append(pt.Language, l)
		}
	}
	body := p.raw[bodyStart:end]
	isMultipart := pt.Type == "multipart"
	isMessage := pt.Type == "message" && (pt.Subtype == "rfc822" || pt.Subtype == "global")
	if depth >= maxPartDepth && (isMultipart || isMessage) {
		pt.Type, pt.Subtype, pt.Params = "text", "plain", nil
		isMultipart, isMessage = false, false
	}
	switch {
	case isMultipart:
		pt.Children = p.multipart(bodyStart, end, params["boundary"], depth, pt.Subtype == "digest")
		if len(pt.Children) > 0 {
			return pt, h
		}
		// A multipart without parts would have no children, which
		// BODYSTRUCTURE cannot express: describe it as text.
		pt.Type, pt.Subtype, pt.Params, pt.Children = "text", "plain", nil, nil
	case isMessage:
		inner, ih := p.part(bodyStart, end, depth+1, "text", "plain")
		pt.Envelope = envelopeOf(ih)
		pt.Body = inner
		pt.Lines = countLines(body)
		pt.DecodedSize = pt.Size
		p.text.writeString(headerText(ih))
		return pt, h
	}
	pt.Lines = countLines(body)
	if pt.Type == "text" {
		pt.DecodedSize = p.addText(pt, body)
	} else {
		pt.DecodedSize = strictDecodedSize(pt.Encoding, body)
	}
	return pt, h
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// multipart splits raw[bodyStart:end] at the delimiter lines of boundary
// (RFC 2046 section 5.1.1: the CRLF before a delimiter belongs to it).
func (p *parser) multipart(bodyStart, end int, boundary string, depth int, digest bool) []*Part {
	if boundary == "" {
		return nil
	}
	defType, defSub := "text", "plain"
	if digest {
		defType, defSub = "message", "rfc822"
	}
	delim := []byte("--" + boundary)
	nlDelim := append([]byte{'\n'}, delim...)
	var parts []*Part
	partStart := -1
	pos := bodyStart
	for pos < end {
		// Jump to the next line that starts with the delimiter.
		if !(pos == bodyStart && bytes.HasPrefix(p.raw[pos:end], delim)) {
			i := bytes.Index(p.raw[pos:end], nlDelim)
			if i < 0 {
				break
			}
			pos += i + 1
		}
		le := lineEnd(p.raw, pos, end)
		closing, ok := delimiterLine(p.raw[pos+len(delim) : le])
		if !ok {
			pos = le
			continue
		}
		if partStart >= 0 {
			partEnd := pos
			if partEnd-2 >= partStart && p.raw[partEnd-2] == '\r' && p.raw[partEnd-1] == '\n' {
				partEnd -= 2
			} else if partEnd-1 >= partStart && p.raw[partEnd-1] == '\n' {
				partEnd--
			}
			child, _ := p.part(partStart, partEnd, depth+1, defType, defSub)
			parts = append(parts, child)
		}
		if closing {
			return parts
		}
		partStart = le
		pos = le
		if p.parts >= maxParts {
			// Too many parts: the rest is one last leaf.
			child, _ := p.part(partStart, end, maxPartDepth, "text", "plain")
			return append(parts, child)
		}
	}
	if partStart >= 0 {
		// No closing delimiter: the last part runs to the end.
		child, _ := p.part(partStart, end, depth+1, defType, defSub)
		parts = append(parts, child)
	}
	return parts
}

// delimiterLine checks what follows "--boundary" on a line: optional "--"
// (closing delimiter) and linear white space only.
func delimiterLine(rest []byte) (closing, ok bool) {
	if bytes.HasPrefix(rest, []byte("--")) {
		closing = true
		rest = rest[2:]
	}
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return false, false
	}
	return closing, true
}

// contentType parses a Content-Type value leniently; an unusable value
// yields the default type.
func contentType(v, defType, defSub string) (typ, sub string, params map[string]string) {
	if v == "" {
		if defType == "text" {
			return defType, defSub, map[string]string{"charset": "us-ascii"}
		}
		return defType, defSub, nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		if mt == "" {
			mt, _, _ = strings.Cut(v, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
		}
		params = lenientParams(v)
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return "text", "plain", map[string]string{"charset": "us-ascii"}
	}
	return typ, sub, nonEmpty(params)
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// lenientParams reads "; key=value" pairs from a header value the strict
// parser refused, unquoting values.
func lenientParams(v string) map[string]string {
	segs := strings.Split(v, ";")
	m := map[string]string{}
	for _, s := range segs[1:] {
		k, val, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		} else {
			val = strings.Trim(val, `"`)
		}
		if k != "" && isToken(k) {
			if _, dup := m[k]; !dup {
				m[k] = val
			}
		}
	}
	return m
}

func transferEncoding(v string) string {
	v = strings.ToUpper(strings.TrimSpace(v))
	if v == "" || !isToken(v) {
		return "7BIT"
	}
	return v
}

// String describes a part for debugging: "text/plain 12B".
func (p *Part) String() string {
	return fmt.Sprintf("%s/%s %dB", p.Type, p.Subtype, p.Size)
}

// HeaderLen returns the length of the top-level header of a stored
// message (blank line included): where the parser puts the root part's
// BodyStart, by splitHeader's rules, without building the fields. It lets
// BODY[HEADER...] be answered from the bytes alone, without the decoded
// structure.
func HeaderLen(raw []byte) int {
	pos, end := 0, len(raw)
	fields := false
	for pos < end {
		le := lineEnd(raw, pos, end)
		line := raw[pos:le]
		if isBlankLine(line) {
			return le
		}
		if (line[0] == ' ' || line[0] == '\t') && fields {
			pos = le
			continue
		}
		if _, _, ok := headerFieldName(line); !ok {
			return pos
		}
		fields = true
		pos = le
	}
	return end
}
