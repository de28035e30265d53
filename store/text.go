package store

import (
	"bytes"
	"html"
	"io"
	"mime"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/emersion/go-message/charset"
)

// Decoding for search: transfer encodings, charsets, RFC 2047 words, HTML.

// addText appends the decoded, UTF-8 text of a text/* leaf to the body text
// (the transfer encoding undone by DecodeLenient) and returns the part's
// DecodedSize (by DecodeStrict, before charset conversion; -1 when strict
// decoding fails). Quoted-printable is decoded once, into a pooled buffer,
// for both; a charset conversion takes the streaming path.
func (p *parser) addText(pt *Part, body []byte) int64 {
	var (
		data []byte
		size int64
	)
	enc := strings.ToUpper(pt.Encoding)
	cs := pt.Params["charset"]
	switch {
	case cs != "" && !strings.EqualFold(cs, "us-ascii") && !strings.EqualFold(cs, "utf-8"):
		size = strictDecodedSize(enc, body)
		var r io.Reader = bytes.NewReader(body)
		if d := lenientDecoder(enc, body); d != nil {
			r = d
		}
		if cr, err := charset.Reader(cs, r); err == nil {
			r = cr
		}
		data, _ = io.ReadAll(r)
	case enc == "QUOTED-PRINTABLE":
		// The quoted-printable reader's output does not depend on how it
		// is read, so one decode serves the text (what came before an
		// error) and the size (none after an error).
		bp := getBuf()
		defer putBuf(bp)
		var err error
		*bp, err = readAllInto((*bp)[:0], lenientDecoder(enc, body))
		data = *bp
		size = int64(len(data))
		if err != nil {
			size = -1
		}
	default:
		size = strictDecodedSize(enc, body)
		data, _ = DecodeTransferEncoding(enc, body, DecodeLenient)
	}
	if pt.Subtype == "html" {
		stripHTML(&p.text, viewUTF8(data))
	} else {
		p.text.writeUTF8(data)
	}
	p.text.space = true // the line break between parts
	return size
}

// readAllInto appends everything r yields to buf until an error or EOF,
// like io.ReadAll, and returns the error (nil at EOF).
func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bufPool recycles the buffers text parts are decoded into.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// maxPooledBuf is the largest buffer returned to bufPool.
const maxPooledBuf = 1 << 20

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// textSink accumulates search text the way collapseSpace(strings.ToLower(s))
// would render everything written to it, in one pass and without
// intermediate copies: lower-cased rune by rune, every run of white space
// (unicode.IsSpace) one space, none leading or trailing. Input must be valid
// UTF-8 (invalid bytes become U+FFFD, as strings.ToLower makes them).
type textSink struct {
	b []byte
	// space is set when white space was written after the last word.
	space bool
}

// asciiSpace marks the ASCII bytes unicode.IsSpace reports.
var asciiSpace = [utf8.RuneSelf]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

func (t *textSink) writeString(s string) { writeText(t, s) }
func (t *textSink) writeBytes(b []byte)  { writeText(t, b) }

// writeUTF8 writes b, read as ISO-8859-1 if it is not valid UTF-8 (as
// toUTF8 does).
func (t *textSink) writeUTF8(b []byte) {
	if utf8.Valid(b) {
		t.writeBytes(b)
		return
	}
	for _, c := range b {
		t.rune(rune(c))
	}
}

// Byte classes for writeText.
const (
	classWord  = iota // ASCII written as is (after lower-casing A-Z)
	classSpace        // ASCII white space
	classMulti        // first or later byte of a multi-byte UTF-8 sequence
)

// textClass maps every byte to its class.
var textClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= utf8.RuneSelf:
			t[c] = classMulti
		case asciiSpace[c]:
			t[c] = classSpace
		}
	}
	return t
}()

func writeText[S string | []byte](t *textSink, s S) {
	for i := 0; i < len(s); {
		switch textClass[s[i]] {
		case classSpace:
			t.space = true
			i++
		case classWord:
			// A run of ASCII word bytes, single spaces between them
			// included (they stay single spaces), is appended at once
			// and lower-cased in place.
			t.word()
			j := i + 1
			for j < len(s) {
				if textClass[s[j]] == classWord {
					j++
				} else if s[j] == ' ' && j+1 < len(s) && textClass[s[j+1]] == classWord {
					j += 2
				} else {
					break
				}
			}
			start := len(t.b)
			t.b = append(t.b, s[i:j]...)
			for k, c := range t.b[start:] {
				if c-'A' < 26 {
					t.b[start+k] = c + 'a' - 'A'
				}
			}
			i = j
		default:
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			i += size
			t.rune(r)
		}
	}
}

// rune writes r lower-cased, or notes white space.
func (t *textSink) rune(r rune) {
	r = unicode.ToLower(r)
	if unicode.IsSpace(r) {
		t.space = true
		return
	}
	t.word()
	t.b = utf8.AppendRune(t.b, r)
}

// word writes the space pending before a word, if any.
func (t *textSink) word() {
	if t.space {
		if len(t.b) > 0 {
			t.b = append(t.b, ' ')
		}
		t.space = false
	}
}

func (t *textSink) String() string { return string(t.b) }

// toUTF8 returns b as a string, reading it as ISO-8859-1 if it is not valid
// UTF-8 (the most common undeclared 8-bit charset).
func toUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) * 2)
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// viewUTF8 is toUTF8 without a copy when b is valid UTF-8: the result
// shares b's bytes and is only valid while b is neither modified nor
// reused.
func viewUTF8(b []byte) string {
	if utf8.Valid(b) {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return toUTF8(b)
}

// toUTF8String is toUTF8 for a string: valid UTF-8 is returned as is,
// without a copy.
func toUTF8String(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return toUTF8([]byte(s))
}

// stripHTML writes the text of the HTML s to t: tags, comments, scripts and
// styles removed, entities unescaped, block tags breaking words. Good
// enough for substring search. Tag names are matched
// ASCII-case-insensitively in s itself (an earlier version matched them in
// strings.ToLower(s) at s's offsets, which went wrong, and panicked, when
// lower-casing changed the text's length, as with U+0130 or U+212A).
func stripHTML(t *textSink, s string) {
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			t.writeString(html.UnescapeString(s[i : i+j]))
			i += j
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "<!--"):
			j := strings.Index(s[i:], "-->")
			if j < 0 {
				return
			}
			i += j + 3
		case hasPrefixFold(s[i:], "<script"), hasPrefixFold(s[i:], "<style"):
			tag := "</script"
			if hasPrefixFold(s[i:], "<style") {
				tag = "</style"
			}
			j := indexFold(s[i:], tag)
			if j < 0 {
				return
			}
			i += j + len(tag)
		default:
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return
			}
			if blockTag(strings.ToLower(s[i+1 : i+j])) {
				t.space = true
			}
			i += j + 1
		}
	}
}

// hasPrefixFold reports whether s begins with prefix, which must be
// lower-case ASCII, ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for k := 0; k < len(prefix); k++ {
		c := s[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[k] {
			return false
		}
	}
	return true
}

// indexFold is strings.Index for a lower-case ASCII needle beginning with
// '<', ignoring ASCII case.
func indexFold(s, needle string) int {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return -1
		}
		i += j
		if hasPrefixFold(s[i:], needle) {
			return i
		}
		i++
	}
}

// blockTag reports whether the tag (the text between '<' and '>') breaks
// words: inline tags such as <b> do not.
func blockTag(tag string) bool {
	tag = strings.TrimPrefix(tag, "/")
	if i := strings.IndexAny(tag, " \t\r\n/"); i >= 0 {
		tag = tag[:i]
	}
	switch tag {
	case "b", "i", "u", "em", "strong", "span", "a", "font", "small", "big", "sub", "sup", "code", "s", "strike", "mark", "abbr":
		return false
	}
	return true
}

// collapseSpace turns every run of white space into one space.
func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeaderValue decodes RFC 2047 encoded words; undecodable input is
// returned as is, 8-bit bytes read as UTF-8 or else ISO-8859-1.
func decodeHeaderValue(v string) string {
	v = toUTF8String(v)
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return toUTF8String(d)
}

// headerText renders the decoded fields for header search.
func headerText(h header) string {
	var sb strings.Builder
	for _, f := range h {
		sb.WriteString(strings.ToLower(f.name))
		sb.WriteString(": ")
		sb.WriteString(strings.ToLower(strings.ReplaceAll(decodeHeaderValue(f.value), "\n", " ")))
		sb.WriteByte('\n')
	}
	return sb.String()
}
