package store

import (
	"bytes"
	"unicode/utf8"
)

// Most mail is a single text/plain part without transfer encoding: its
// decoded body text is its body, lower-cased and white-space-collapsed. A
// stored copy of that text nearly doubled the store. Such a message's text
// record holds only its header text; the messages row's text_from names
// where the body begins in its bytes, and a search derives the body text
// from them (one pass of textSink, over bytes read anyway). Whether a
// message qualifies is decided by comparison, not by rules: at indexing,
// the derived text must equal the parser's body text byte for byte, so a
// search answers exactly as it would from a stored copy. Rows without
// text_from (and every row written before it existed) keep their stored
// body text.

// derivableFrom returns the offset in pm.raw from which pm's body text can
// be derived (deriveBodyText), and false when it must be stored instead.
func derivableFrom(pm *parsedMessage) (int64, bool) {
	p := pm.structure
	if p == nil || p.Type != "text" || len(p.Children) > 0 || p.Body != nil || pm.panicked != nil ||
		p.BodyStart < 0 || p.BodyStart > int64(len(pm.raw)) || p.End != int64(len(pm.raw)) {
		return 0, false
	}
	var t textSink
	bp := getBuf()
	defer putBuf(bp)
	t.b = (*bp)[:0]
	deriveBodyText(&t, pm.raw[p.BodyStart:])
	*bp = t.b
	if !bytes.Equal(t.b, stringBytes(pm.bodyText)) {
		return 0, false
	}
	return p.BodyStart, true
}

// deriveBodyText writes the body text of a message whose body (from
// text_from on) qualified at indexing: as the parser writes a text/plain
// part's body without transfer or charset decoding.
func deriveBodyText(t *textSink, body []byte) {
	t.writeUTF8(body)
}

// derivedContains reports whether the body text derived from body contains
// needle (lower-cased and white-space-collapsed), exactly as
// bytes.Contains of the derived text would. When body and the needle's
// first word are ASCII it first looks for that word in body lower-cased
// (one cheap pass, no rune decoding, no collapsing): for ASCII bytes,
// lower-casing is all the derivation does to a run without white space,
// so a word missing there is missing from the text, and a needle of one
// word found there is found in it. Otherwise (a needle of several words
// whose first is there, non-ASCII bytes, which may lower-case to ASCII:
// the Kelvin sign) the text is derived into t and searched.
func derivedContains(t *textSink, body, needle []byte) bool {
	word := needle
	if i := bytes.IndexByte(needle, ' '); i >= 0 {
		word = needle[:i]
	}
	if len(word) > 0 && isASCII(word) {
		lowered, ascii := lowerASCII(t.b[:0], body)
		t.b = lowered[:0]
		if ascii {
			if !bytes.Contains(lowered, word) {
				return false
			}
			if len(word) == len(needle) {
				return true
			}
		}
	}
	t.b, t.space = t.b[:0], false
	deriveBodyText(t, body)
	return bytes.Contains(t.b, needle)
}

// lowerASCII returns b with A-Z lower-cased, in dst's memory when it fits,
// and whether b is all ASCII.
func lowerASCII(dst, b []byte) ([]byte, bool) {
	if cap(dst) < len(b) {
		dst = make([]byte, len(b))
	}
	dst = dst[:len(b)]
	var or byte
	for i, c := range b {
		or |= c
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst, or < utf8.RuneSelf
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// storedBodyText is the body text pm's text record holds: none when it is
// derived from the message's bytes.
func (pm *parsedMessage) storedBodyText() string {
	if pm.textDerived {
		return ""
	}
	return pm.bodyText
}

// textFromArg is pm.textFrom as the text_from column stores it.
func (pm *parsedMessage) textFromArg() any {
	if !pm.textDerived {
		return nil
	}
	return pm.textFrom
}
