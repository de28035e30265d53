package store

import (
	"slices"
	"strings"
)

// System flags are stored as a bitmask; keywords as a space-separated list.
const (
	bitSeen int64 = 1 << iota
	bitAnswered
	bitFlagged
	bitDeleted
	bitDraft
)

var systemFlags = []struct {
	name string
	bit  int64
}{
	{FlagAnswered, bitAnswered},
	{FlagDeleted, bitDeleted},
	{FlagDraft, bitDraft},
	{FlagFlagged, bitFlagged},
	{FlagSeen, bitSeen},
}

// flagSet is the stored form of an entry's flags.
type flagSet struct {
	bits     int64
	keywords []string // sorted, deduplicated case-insensitively
}

// validKeyword reports whether kw can be stored as an IMAP keyword (an atom
// without '\').
func validKeyword(kw string) bool {
	if kw == "" || len(kw) > 200 {
		return false
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseFlags turns API flags into a flagSet. System flags are matched
// case-insensitively; \Recent, unknown system flags and keywords that are
// not IMAP atoms are dropped silently.
func parseFlags(flags []string) flagSet {
	var fs flagSet
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			for _, sf := range systemFlags {
				if strings.EqualFold(f, sf.name) {
					fs.bits |= sf.bit
				}
			}
			continue
		}
		if validKeyword(f) {
			fs.addKeyword(f)
		}
	}
	return fs
}

func (fs *flagSet) hasKeyword(kw string) int {
	for i, k := range fs.keywords {
		if strings.EqualFold(k, kw) {
			return i
		}
	}
	return -1
}

func (fs *flagSet) addKeyword(kw string) {
	if fs.hasKeyword(kw) >= 0 {
		return
	}
	fs.keywords = append(fs.keywords, kw)
	slices.Sort(fs.keywords)
}

// apply returns the result of op with arg applied to fs.
func (fs flagSet) apply(op FlagOp, arg flagSet) flagSet {
	switch op {
	case FlagsReplace:
		return flagSet{bits: arg.bits, keywords: slices.Clone(arg.keywords)}
	case FlagsAdd:
		out := flagSet{bits: fs.bits | arg.bits, keywords: slices.Clone(fs.keywords)}
		for _, k := range arg.keywords {
			out.addKeyword(k)
		}
		return out
	case FlagsRemove:
		out := flagSet{bits: fs.bits &^ arg.bits}
		for _, k := range fs.keywords {
			if arg.hasKeyword(k) < 0 {
				out.keywords = append(out.keywords, k)
			}
		}
		return out
	}
	return fs
}

func (fs flagSet) equal(o flagSet) bool {
	return fs.bits == o.bits && slices.Equal(fs.keywords, o.keywords)
}

// keywordText is the stored form of the keywords.
func (fs flagSet) keywordText() string { return strings.Join(fs.keywords, " ") }

func decodeFlagSet(bits int64, keywords string) flagSet {
	return flagSet{bits: bits, keywords: strings.Fields(keywords)}
}

// list returns the flags as the API spells them, sorted.
func (fs flagSet) list() []string {
	out := make([]string, 0, len(fs.keywords)+2)
	for _, sf := range systemFlags {
		if fs.bits&sf.bit != 0 {
			out = append(out, sf.name)
		}
	}
	out = append(out, fs.keywords...)
	slices.Sort(out)
	return out
}

// flagInterner shares the []string of identical flag sets within one large
// result (a Snapshot of 100,000 entries has only a handful of distinct sets).
// Callers must treat Entry.Flags as read-only.
type flagInterner map[flagKey][]string

type flagKey struct {
	bits     int64
	keywords string
}

func (fi flagInterner) get(bits int64, keywords string) []string {
	k := flagKey{bits, keywords}
	if l, ok := fi[k]; ok {
		return l
	}
	l := decodeFlagSet(bits, keywords).list()
	fi[k] = l
	return l
}
