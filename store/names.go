package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names.
const (
	maxMailboxNameBytes = 1000
	maxMailboxLevels    = 40
	maxUserNameBytes    = 255
)

// ValidateMailboxName checks a mailbox name and returns its canonical form:
// "INBOX" in any case, also as the first level ("inbox/x"), becomes "INBOX".
// It refuses (wrapping ErrInvalidName) empty names, NUL and other control
// characters, invalid UTF-8, the LIST wildcards '*' and '%', empty levels,
// "." and ".." levels, a leading or trailing "/", names over 1000 bytes and
// names of more than 40 levels.
func ValidateMailboxName(name string) (canonical string, err error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty mailbox name", ErrInvalidName)
	case len(name) > maxMailboxNameBytes:
		return "", fmt.Errorf("%w: mailbox name longer than %d bytes", ErrInvalidName, maxMailboxNameBytes)
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: mailbox name is not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return "", fmt.Errorf("%w: mailbox name contains control character %U", ErrInvalidName, r)
		}
		if r == '*' || r == '%' {
			return "", fmt.Errorf("%w: mailbox name contains wildcard %q", ErrInvalidName, r)
		}
	}
	levels := strings.Split(name, string(Delimiter))
	if len(levels) > maxMailboxLevels {
		return "", fmt.Errorf("%w: mailbox name has more than %d levels", ErrInvalidName, maxMailboxLevels)
	}
	for _, l := range levels {
		switch l {
		case "":
			return "", fmt.Errorf("%w: mailbox name %q has an empty level", ErrInvalidName, name)
		case ".", "..":
			return "", fmt.Errorf("%w: mailbox name %q has a %q level", ErrInvalidName, name, l)
		}
	}
	if strings.EqualFold(levels[0], Inbox) {
		levels[0] = Inbox
	}
	return strings.Join(levels, string(Delimiter)), nil
}

// validateUserName refuses empty or over-long user names, invalid UTF-8 and
// control characters.
func validateUserName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty user name", ErrInvalidName)
	case len(name) > maxUserNameBytes:
		return fmt.Errorf("%w: user name longer than %d bytes", ErrInvalidName, maxUserNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: user name is not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return fmt.Errorf("%w: user name contains control character %U", ErrInvalidName, r)
		}
	}
	return nil
}

// parentNames returns the proper ancestors of a canonical name, outermost
// first: "a/b/c" -> ["a", "a/b"].
func parentNames(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Delimiter {
			out = append(out, name[:i])
		}
	}
	return out
}

// childRange returns the half-open range [lo, hi) of names that are proper
// descendants of name under binary collation: every such name starts with
// name + "/", and '0' is the byte after '/'.
func childRange(name string) (lo, hi string) {
	return name + string(Delimiter), name + string(Delimiter+1)
}

// validSpecialUse reports whether su is "" or a known special-use attribute.
func validSpecialUse(su string) bool {
	switch su {
	case "", SpecialAll, SpecialArchive, SpecialDrafts, SpecialFlagged, SpecialJunk, SpecialSent, SpecialTrash:
		return true
	}
	return false
}
