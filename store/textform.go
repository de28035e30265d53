package store

import "bytes"

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
