package imapfront

import "github.com/popbridge/popbridge/store"

// listMatch reports whether the full mailbox name matches the LIST pattern
// (RFC 3501 section 6.3.8; the caller has already joined the reference name
// and the mailbox argument). "*" matches any run of characters, the hierarchy
// delimiter included; "%" matches any run of characters except the
// delimiter. The first level "INBOX" is matched case-insensitively (RFC 3501
// section 5.1), so "inbox" and "Inbox/%" find INBOX and its children; every
// other name is matched case-sensitively.
//
// The cost is O(len(name) * len(pattern)) at worst with no backtracking, so a
// pattern full of wildcards cannot pin a CPU the way imapserver.MatchList
// does (docs/imapserver-workarounds.md, "LIST pattern matching"). Runs of wildcards are collapsed first, and a pattern with
// more literal bytes than the name is refused before any matching.
func listMatch(name, pattern string) bool {
	// INBOX is stored canonically upper-case; a name whose first level is
	// INBOX compares its first five bytes case-insensitively.
	fold := len(name) >= len(store.Inbox) && name[:len(store.Inbox)] == store.Inbox &&
		(len(name) == len(store.Inbox) || name[len(store.Inbox)] == store.Delimiter)

	// Fast path: no wildcard at all.
	hasWild := false
	literals := 0
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '*' || pattern[i] == '%' {
			hasWild = true
		} else {
			literals++
		}
	}
	if !hasWild {
		if len(name) != len(pattern) {
			return false
		}
		for i := 0; i < len(name); i++ {
			if !listByteEqual(name, i, pattern[i], fold) {
				return false
			}
		}
		return true
	}
	if literals > len(name) {
		return false
	}

	// cur[i] is true when the pattern consumed so far can match name[:i].
	// Each pattern token rewrites cur in place in O(len(name)).
	var buf [256]bool
	var cur []bool
	if len(name)+1 <= len(buf) {
		cur = buf[:len(name)+1]
	} else {
		cur = make([]bool, len(name)+1)
	}
	cur[0] = true
	delim := byte(store.Delimiter)
	for p := 0; p < len(pattern); {
		c := pattern[p]
		if c == '*' || c == '%' {
			// Collapse a run of wildcards: any "*" in it makes the whole run
			// a "*"; a run of "%" alone is one "%".
			star := false
			for p < len(pattern) && (pattern[p] == '*' || pattern[p] == '%') {
				star = star || pattern[p] == '*'
				p++
			}
			// A wildcard only extends matches, so some cur[i] stays true.
			for i := 1; i <= len(name); i++ {
				if !cur[i] && cur[i-1] && (star || name[i-1] != delim) {
					cur[i] = true
				}
			}
			continue
		}
		p++
		alive := false
		for i := len(name); i >= 1; i-- {
			cur[i] = cur[i-1] && listByteEqual(name, i-1, c, fold)
			alive = alive || cur[i]
		}
		cur[0] = false
		if !alive {
			return false
		}
	}
	return cur[len(name)]
}

// listByteEqual compares name[i] with the pattern byte c, ASCII
// case-insensitively within a leading "INBOX" when fold is set.
func listByteEqual(name string, i int, c byte, fold bool) bool {
	b := name[i]
	if b == c {
		return true
	}
	if !fold || i >= len(store.Inbox) {
		return false
	}
	return listLower(b) == listLower(c)
}

func listLower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}
