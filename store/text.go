package store

import (
	"bytes"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// Decoding for search: transfer encodings, charsets, RFC 2047 words, HTML.

// decoder returns a reader undoing the transfer encoding, or nil for an
// identity encoding.
func decoder(enc string, body []byte) io.Reader {
	switch enc {
	case "BASE64":
		return base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: bytes.NewReader(body)})
	case "QUOTED-PRINTABLE":
		return quotedprintable.NewReader(bytes.NewReader(body))
	}
	return nil
}

// decodedSize is the size of body after undoing enc; bytes after a decoding
// error are not counted.
func decodedSize(enc string, body []byte) int64 {
	r := decoder(enc, body)
	if r == nil {
		return int64(len(body))
	}
	n, _ := io.Copy(io.Discard, r)
	return n
}

// base64Cleaner drops everything that is not in the base64 alphabet, so
// line breaks and garbage do not stop decoding; it stops at padding.
type base64Cleaner struct {
	r    io.Reader
	done bool
}

func (c *base64Cleaner) Read(b []byte) (int, error) {
	for {
		if c.done {
			return 0, io.EOF
		}
		n, err := c.r.Read(b)
		j := 0
		for _, ch := range b[:n] {
			switch {
			case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '+', ch == '/', ch == '=':
				b[j] = ch
				j++
			}
		}
		if err != nil {
			c.done = true
			if j == 0 {
				return 0, err
			}
			return j, nil
		}
		if j > 0 {
			return j, nil
		}
	}
}

// addText appends the decoded, UTF-8 text of a text/* leaf to the body text.
func (p *parser) addText(pt *Part, body []byte) {
	var r io.Reader = bytes.NewReader(body)
	if d := decoder(pt.Encoding, body); d != nil {
		r = d
	}
	if cs := pt.Params["charset"]; cs != "" && !strings.EqualFold(cs, "us-ascii") && !strings.EqualFold(cs, "utf-8") {
		if cr, err := charset.Reader(cs, r); err == nil {
			r = cr
		}
	}
	b, _ := io.ReadAll(r)
	s := toUTF8(b)
	if pt.Subtype == "html" {
		s = stripHTML(s)
	}
	p.text.WriteString(s)
	p.text.WriteByte('\n')
}

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

// stripHTML removes tags, comments, scripts and styles and unescapes
// entities: good enough for substring search.
func stripHTML(s string) string {
	var sb strings.Builder
	lower := strings.ToLower(s)
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			sb.WriteString(html.UnescapeString(s[i : i+j]))
			i += j
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "<!--"):
			j := strings.Index(s[i:], "-->")
			if j < 0 {
				return sb.String()
			}
			i += j + 3
		case strings.HasPrefix(lower[i:], "<script"), strings.HasPrefix(lower[i:], "<style"):
			tag := "</script"
			if strings.HasPrefix(lower[i:], "<style") {
				tag = "</style"
			}
			j := strings.Index(lower[i:], tag)
			if j < 0 {
				return sb.String()
			}
			i += j + len(tag)
		default:
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return sb.String()
			}
			if blockTag(lower[i+1 : i+j]) {
				sb.WriteByte(' ')
			}
			i += j + 1
		}
	}
	return sb.String()
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
	v = toUTF8([]byte(v))
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return toUTF8([]byte(d))
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
