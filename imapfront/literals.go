package imapfront

import (
	"bytes"
	"strings"
)

// isLiteralRejection reports whether p is exactly one tagged response line
// by which imapserver refuses a literal: "tag NO [TOOBIG] ..." (APPEND over
// the limit, or a buffered literal over 4096 bytes) or "tag BAD
// Non-synchronizing literals are limited ...".
func isLiteralRejection(p []byte) bool {
	if len(p) > 1024 || !bytes.HasSuffix(p, []byte("\r\n")) || bytes.Count(p, []byte("\r\n")) != 1 {
		return false
	}
	tag, rest, ok := bytes.Cut(p, []byte(" "))
	if !ok || len(tag) == 0 || bytes.Equal(tag, []byte("*")) || bytes.Equal(tag, []byte("+")) {
		return false
	}
	return bytes.HasPrefix(rest, []byte("NO [TOOBIG]")) || bytes.HasPrefix(rest, []byte("BAD Non-synchronizing literal"))
}

// literalScanner follows the client's command stream, skipping literal
// data, and reports, at the end of a line, a literal announcement
// imapserver will refuse: a non-synchronising one over maxNonSyncLiteral,
// or a synchronising one over maxNonSyncLiteral in a command other than
// APPEND (imapserver buffers the literals of every other command, up to
// 4096 bytes).
type literalScanner struct {
	tail []byte // end of the current partial line
	skip int64  // literal bytes still to skip
	// head is the start of the current command's first line (tag and
	// name); cont is set while a command continues after a literal.
	head []byte
	cont bool
	// names maps the tags of the last few commands to their names, for
	// fixServerBug; filled as each command's first line ends.
	names namesRing
}

// namesRing remembers the names of the last len(namesRing) commands by tag.
type namesRing [8]struct{ tag, name string }

// put records the tag and name at the start of a command line.
func (r *namesRing) put(head []byte) {
	f := bytes.Fields(head)
	if len(f) < 2 {
		return
	}
	name := strings.ToUpper(string(f[1]))
	if name == "UID" && len(f) >= 3 {
		name += " " + strings.ToUpper(string(f[2]))
	}
	copy(r[1:], r[:len(r)-1])
	r[0].tag, r[0].name = string(f[0]), name
}

// name returns the name of the command tagged tag, "" if unknown.
func (r *namesRing) name(tag []byte) string {
	for _, e := range r {
		if e.tag == string(tag) {
			return e.name
		}
	}
	return ""
}

// feed consumes p and returns a verdict; for a refused announcement it
// also returns how many bytes of p follow the announcement's line.
func (s *literalScanner) feed(p []byte) (verdict, rest int) {
	for len(p) > 0 {
		if s.skip > 0 {
			k := min(int64(len(p)), s.skip)
			p = p[k:]
			s.skip -= k
			continue
		}
		j := bytes.IndexByte(p, '\n')
		line := p
		if j >= 0 {
			line = p[:j]
		}
		if !s.cont && len(s.head) < headKeep {
			s.head = append(s.head, line[:min(len(line), headKeep-len(s.head))]...)
		}
		if j < 0 {
			s.keepTail(p)
			return litOK, 0
		}
		s.keepTail(p[:j])
		p = p[j+1:]
		if !s.cont {
			s.names.put(s.head)
		}
		n, nonSync, ok := literalAtEnd(s.tail)
		s.tail = s.tail[:0]
		if !ok {
			s.cont = false
			s.head = s.head[:0]
			continue
		}
		if n > maxNonSyncLiteral {
			if nonSync {
				return litNonSyncTooBig, len(p)
			}
			if !isAppendHead(s.head) {
				return litSyncTooBig, len(p)
			}
		}
		s.cont = true
		s.skip = n
	}
	return litOK, 0
}

// isAppendHead reports whether a command's first line is an APPEND.
func isAppendHead(head []byte) bool {
	f := bytes.Fields(head)
	return len(f) >= 2 && bytes.EqualFold(f[1], []byte("APPEND"))
}

// keepTail appends b to the partial line, keeping only its last 48 bytes:
// enough for a literal announcement.
func (s *literalScanner) keepTail(b []byte) {
	const keep = 48
	if len(b) >= keep {
		s.tail = append(s.tail[:0], b[len(b)-keep:]...)
		return
	}
	s.tail = append(s.tail, b...)
	if len(s.tail) > keep {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-keep:]...)
	}
}

// literalAtEnd parses a literal announcement "{n}" or "{n+}" ending line.
func literalAtEnd(line []byte) (n int64, nonSync, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := line[i+1 : len(line)-1]
	if bytes.HasSuffix(num, []byte("+")) {
		nonSync = true
		num = num[:len(num)-1]
	}
	if len(num) == 0 || len(num) > 19 {
		return 0, false, false
	}
	for _, ch := range num {
		if ch < '0' || ch > '9' {
			return 0, false, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, nonSync, true
}
