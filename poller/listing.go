package poller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// List returns the maildrop listing: LIST sizes merged with UIDL ids by
// message number (UIDL is skipped when CAPA said the server lacks it, and
// tolerated to fail when CAPA was not available). Both commands go out
// together when the server pipelines. Malformed lines, duplicate numbers and
// invalid UIDLs break the session with ErrProtocol.
func (s *session) List(ctx context.Context) ([]listItem, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	wantUIDL := s.caps.UIDL || !s.capaOK
	pipelined := wantUIDL && s.caps.Pipelining
	if pipelined {
		if err := s.pc.Send("LIST"); err != nil {
			return nil, s.fail(ctx, "list", err)
		}
		if err := s.pc.Send("UIDL"); err != nil {
			return nil, s.fail(ctx, "uidl", err)
		}
	}
	listing := func(op string) ([][2]string, error) {
		s.expect(ctx, maxListingBytes, maxListingLine, ErrProtocol)
		if !pipelined {
			if err := s.pc.Send(strings.ToUpper(op)); err != nil {
				return nil, s.fail(ctx, op, err)
			}
		}
		if _, err := s.pc.ReadOne(); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		buf, err := s.pc.ReadAll()
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		text := strings.TrimSuffix(buf.String(), "\r\n")
		out := make([][2]string, 0, strings.Count(text, "\r\n")+1)
		for l := range strings.SplitSeq(text, "\r\n") {
			if l == "" && buf.Len() == 0 {
				break
			}
			f0, f1, ok := twoFields(l)
			if !ok {
				return nil, s.fail(ctx, op, fmt.Errorf("%s line %q: %w", op, l, ErrProtocol))
			}
			out = append(out, [2]string{f0, f1})
		}
		return out, nil
	}
	lines, err := listing("list")
	if err != nil {
		if pipelined && serverReplied(err) {
			// Keep the stream in step: the UIDL reply is still coming.
			s.breakWith(err)
		}
		return nil, err
	}
	items := make([]listItem, 0, len(lines))
	index := make(map[int]int, len(lines))
	for _, l := range lines {
		n, err1 := strconv.Atoi(l[0])
		size, err2 := strconv.ParseInt(l[1], 10, 64)
		if err1 != nil || err2 != nil || n < 1 || size < 0 {
			return nil, s.fail(ctx, "list", fmt.Errorf("LIST line %q: %w", l[0]+" "+l[1], ErrProtocol))
		}
		if _, dup := index[n]; dup {
			return nil, s.fail(ctx, "list", fmt.Errorf("LIST lists message %d twice: %w", n, ErrProtocol))
		}
		index[n] = len(items)
		items = append(items, listItem{Num: n, Size: size})
	}
	if !wantUIDL {
		return items, nil
	}
	ids, err := listing("uidl")
	if err != nil {
		if serverReplied(err) && !s.caps.UIDL {
			return items, nil // no CAPA, no UIDL: identify by digest
		}
		return nil, err
	}
	seen := make(map[int]bool, len(ids))
	for _, l := range ids {
		n, err := strconv.Atoi(l[0])
		if err != nil || seen[n] || !validUIDL(l[1]) {
			return nil, s.fail(ctx, "uidl", fmt.Errorf("UIDL line %q: %w", s.scrub(l[0]+" "+l[1]), ErrProtocol))
		}
		seen[n] = true
		if i, ok := index[n]; ok {
			items[i].UIDL = l[1]
		}
	}
	return items, nil
}

// twoFields returns the first two fields of l, split as strings.Fields
// splits them, and false when l has fewer than two. A listing has one line
// per message, so an ASCII line (all of them, in practice) is split
// without allocating.
func twoFields(l string) (string, string, bool) {
	for i := 0; i < len(l); i++ {
		if l[i] >= utf8.RuneSelf {
			f := strings.Fields(l)
			if len(f) < 2 {
				return "", "", false
			}
			return f[0], f[1], true
		}
	}
	field := func(from int) (start, end int) {
		start = from
		for start < len(l) && asciiSpace(l[start]) {
			start++
		}
		end = start
		for end < len(l) && !asciiSpace(l[end]) {
			end++
		}
		return start, end
	}
	s0, e0 := field(0)
	s1, e1 := field(e0)
	if s1 == e1 {
		return "", "", false
	}
	return l[s0:e0], l[s1:e1], true
}

// asciiSpace reports whether c is one of the ASCII bytes unicode.IsSpace
// accepts.
func asciiSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// validUIDL checks RFC 1939's unique-id syntax (0x21-0x7E), tolerating up
// to maxUIDLLen characters.
func validUIDL(u string) bool {
	if u == "" || len(u) > maxUIDLLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 0x21 || u[i] > 0x7e {
			return false
		}
	}
	return true
}
