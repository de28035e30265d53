package bridge

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi/toml v1.6.0 keeps key positions private (and, for arrays of
// tables, only the last table's), so popbridge finds the lines itself with
// a small scanner run over a file that has already parsed. The scanner
// records table headers and key/value lines, skipping values (strings,
// multi-line strings, arrays and inline tables spanning lines); keys inside
// inline tables are attributed to the key holding the table. It never
// fails: a construct it does not follow only loses line numbers.

// keyPos is where one key or table header was written.
type keyPos struct {
	key   toml.Key // as toml reports it: no array indices
	path  string   // with array indices: "account[1].tls"
	line  int      // 1-based
	top   string   // first key element: "account", "imap", "data_dir"
	index int      // index in the top-level array of tables; -1 otherwise
}

// positions indexes the keys of one file.
type positions struct {
	keys   []keyPos
	byPath map[string]int // path -> line
}

// line returns the line of path, or of the closest written ancestor of it
// (so a missing account field points at its [[account]] header); 0 when
// unknown.
func (p *positions) line(path string) int {
	if p == nil {
		return 0
	}
	for path != "" {
		if l, ok := p.byPath[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// has reports whether path was written in the file (false when the config
// was built in code).
func (p *positions) has(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.byPath[path]
	return ok
}

// locate returns the keyPos of each key of keys (toml's MetaData.Keys, in
// document order) by walking both lists in order. Keys the scanner did not
// see (inside inline tables) get the previous key's position.
func (p *positions) locate(keys []toml.Key) []keyPos {
	out := make([]keyPos, len(keys))
	cur := 0
	prev := keyPos{index: -1}
	for i, k := range keys {
		ks := k.String()
		found := -1
		for j := cur; j < len(p.keys); j++ {
			if p.keys[j].key.String() == ks {
				found = j
				break
			}
		}
		if found >= 0 {
			cur = found + 1
			prev = p.keys[found]
			out[i] = prev
			continue
		}
		out[i] = keyPos{key: k, path: prev.path, line: prev.line, top: k[0], index: prev.index}
		if prev.top != k[0] {
			out[i].index, out[i].line = -1, 0
		}
	}
	return out
}

// scanPositions scans data (valid TOML) for keys and table headers.
func scanPositions(data string) *positions {
	s := &scanner{data: data, line: 1, arrays: map[string]int{}}
	s.run()
	p := &positions{keys: s.out, byPath: make(map[string]int, len(s.out))}
	for _, k := range s.out {
		if _, dup := p.byPath[k.path]; !dup {
			p.byPath[k.path] = k.line
		}
	}
	return p
}

type scanner struct {
	data string
	i    int
	line int

	table    []string // current table key, without indices
	tablePth string   // current table path, with indices
	topIndex int      // index of the current top-level array table, or -1
	arrays   map[string]int
	out      []keyPos
}

func (s *scanner) eof() bool { return s.i >= len(s.data) }

func (s *scanner) run() {
	s.topIndex = -1
	for !s.eof() {
		c := s.data[s.i]
		switch {
		case c == '\n':
			s.line++
			s.i++
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '#':
			s.skipComment()
		case c == '[':
			s.header()
		default:
			s.keyValue()
		}
	}
}

func (s *scanner) skipComment() {
	for !s.eof() && s.data[s.i] != '\n' {
		s.i++
	}
}

func (s *scanner) skipBlanks() {
	for !s.eof() && (s.data[s.i] == ' ' || s.data[s.i] == '\t') {
		s.i++
	}
}

// key reads a dotted key, stopping before '=' or ']' (or end of line).
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipBlanks()
		if s.eof() {
			return parts
		}
		c := s.data[s.i]
		switch {
		case c == '"':
			parts = append(parts, s.basicString())
		case c == '\'':
			parts = append(parts, s.literalString())
		case isBare(c):
			st := s.i
			for !s.eof() && isBare(s.data[s.i]) {
				s.i++
			}
			parts = append(parts, s.data[st:s.i])
		default:
			return parts
		}
		s.skipBlanks()
		if s.eof() || s.data[s.i] != '.' {
			return parts
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// basicString reads a "..." string (one line) and returns its value.
func (s *scanner) basicString() string {
	st := s.i
	s.i++
	for !s.eof() && s.data[s.i] != '"' && s.data[s.i] != '\n' {
		if s.data[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	if !s.eof() && s.data[s.i] == '"' {
		s.i++
	}
	raw := s.data[st:min(s.i, len(s.data))]
	if v, err := strconv.Unquote(raw); err == nil {
		return v
	}
	return strings.Trim(raw, `"`)
}

// literalString reads a '...' string (one line) and returns its value.
func (s *scanner) literalString() string {
	s.i++
	st := s.i
	for !s.eof() && s.data[s.i] != '\'' && s.data[s.i] != '\n' {
		s.i++
	}
	v := s.data[st:s.i]
	if !s.eof() && s.data[s.i] == '\'' {
		s.i++
	}
	return v
}

// header reads [table] or [[array]].
func (s *scanner) header() {
	line := s.line
	s.i++
	array := !s.eof() && s.data[s.i] == '['
	if array {
		s.i++
	}
	parts := s.key()
	s.skipComment() // the rest of the line: closing brackets and a comment
	if len(parts) == 0 {
		return
	}
	// Build the indexed path: each prefix that is an array of tables
	// takes its current index.
	var path strings.Builder
	for n := 1; n <= len(parts); n++ {
		if n > 1 {
			path.WriteByte('.')
		}
		path.WriteString(parts[n-1])
		plain := toml.Key(parts[:n]).String()
		if n == len(parts) && array {
			idx := s.arrays[plain]
			s.arrays[plain] = idx + 1
			path.WriteString("[" + strconv.Itoa(idx) + "]")
			if n == 1 {
				s.topIndex = idx
			}
			continue
		}
		if cnt, ok := s.arrays[plain]; ok && cnt > 0 {
			path.WriteString("[" + strconv.Itoa(cnt-1) + "]")
		}
	}
	if !array || len(parts) > 1 {
		if _, ok := s.arrays[parts[0]]; !ok {
			s.topIndex = -1
		}
	}
	s.table = parts
	s.tablePth = path.String()
	s.out = append(s.out, keyPos{
		key: toml.Key(append([]string(nil), parts...)), path: s.tablePth,
		line: line, top: parts[0], index: s.topIndex,
	})
}

// keyValue reads key = value.
func (s *scanner) keyValue() {
	line := s.line
	start := s.i
	parts := s.key()
	if len(parts) == 0 || s.eof() || s.data[s.i] != '=' {
		// Not something we understand; skip the line.
		if s.i == start {
			s.i++
		}
		s.skipComment()
		return
	}
	s.i++
	full := append(append([]string(nil), s.table...), parts...)
	path := strings.Join(parts, ".")
	if s.tablePth != "" {
		path = s.tablePth + "." + path
	}
	s.out = append(s.out, keyPos{key: toml.Key(full), path: path, line: line, top: full[0], index: s.topIndex})
	s.skipValue()
}

// skipValue skips one value up to the end of its (last) line.
func (s *scanner) skipValue() {
	depth := 0
	for !s.eof() {
		c := s.data[s.i]
		switch c {
		case '\n':
			if depth == 0 {
				return
			}
			s.line++
			s.i++
		case '#':
			s.skipComment()
		case '"', '\'':
			if strings.HasPrefix(s.data[s.i:], strings.Repeat(string(c), 3)) {
				s.multiline(c)
			} else if c == '"' {
				s.basicString()
			} else {
				s.literalString()
			}
		case '[', '{':
			depth++
			s.i++
		case ']', '}':
			depth--
			s.i++
		default:
			s.i++
		}
	}
}

// multiline skips a multi-line string delimited by three q characters.
func (s *scanner) multiline(q byte) {
	delim := strings.Repeat(string(q), 3)
	s.i += 3
	for !s.eof() {
		if q == '"' && s.data[s.i] == '\\' {
			if s.i+1 < len(s.data) && s.data[s.i+1] == '\n' {
				s.line++
			}
			s.i += 2
			continue
		}
		if strings.HasPrefix(s.data[s.i:], delim) {
			s.i += 3
			// Up to two more quotes may belong to the content.
			for k := 0; k < 2 && !s.eof() && s.data[s.i] == q; k++ {
				s.i++
			}
			return
		}
		if s.data[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}
