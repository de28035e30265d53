package imapfront

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/popbridge/popbridge/store"
)

// refValidMailboxName is an independent statement of the mailbox-name rules
// (store.ValidateMailboxName's documentation): non-empty, at most 1000
// bytes, valid UTF-8, no C0/DEL/C1 control characters, no LIST wildcards,
// at most 40 levels, none empty, "." or "..".
func refValidMailboxName(name string) bool {
	if name == "" || len(name) > 1000 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '*' || r == '%' {
			return false
		}
	}
	levels := strings.Split(name, "/")
	if len(levels) > 40 {
		return false
	}
	for _, l := range levels {
		if l == "" || l == "." || l == ".." {
			return false
		}
	}
	return true
}

// FuzzValidateMailboxName checks the invariants IMAP relies on for every
// name a client can send: store.ValidateMailboxName accepts exactly the
// names the rules allow; an accepted name's canonical form has no NUL or
// control characters and no empty, "." or ".." level; canonicalisation is
// idempotent, changes nothing but the case of a leading INBOX level, and
// always spells that level "INBOX"; refusals wrap store.ErrInvalidName.
func FuzzValidateMailboxName(f *testing.F) {
	for _, s := range []string{
		"INBOX", "inbox", "InBoX/Sub", "Archive/2024", "a/b/c", "", "/", "a/", "/a", "a//b",
		".", "..", "a/./b", "a/../b", "x\x00y", "x\ty", "x\u0085y", "a*", "%", "Entw&APw-rfe",
		"Entwürfe", "INBOXX", "INBOX.Sub", "ınbox", "\xff", strings.Repeat("a/", 40) + "a",
		strings.Repeat("x", 1001),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, err := store.ValidateMailboxName(name)
		if want := refValidMailboxName(name); (err == nil) != want {
			t.Fatalf("ValidateMailboxName(%q) err = %v, rules say valid = %v", name, err, want)
		}
		if err != nil {
			if !errors.Is(err, store.ErrInvalidName) {
				t.Fatalf("ValidateMailboxName(%q) error %v does not wrap ErrInvalidName", name, err)
			}
			if canon != "" {
				t.Fatalf("ValidateMailboxName(%q) refused but returned %q", name, canon)
			}
			return
		}
		if !refValidMailboxName(canon) {
			t.Fatalf("canonical form %q of %q breaks the rules", canon, name)
		}
		if strings.ContainsRune(canon, 0) {
			t.Fatalf("canonical form %q of %q holds NUL", canon, name)
		}
		again, err := store.ValidateMailboxName(canon)
		if err != nil || again != canon {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", name, canon, again, err)
		}
		inLevels, outLevels := strings.Split(name, "/"), strings.Split(canon, "/")
		if len(inLevels) != len(outLevels) {
			t.Fatalf("%q -> %q changed the number of levels", name, canon)
		}
		for i := range inLevels {
			switch {
			case i == 0 && strings.EqualFold(inLevels[0], "INBOX"):
				if outLevels[0] != "INBOX" {
					t.Fatalf("%q -> %q: INBOX not canonical", name, canon)
				}
			case inLevels[i] != outLevels[i]:
				t.Fatalf("%q -> %q changed level %d", name, canon, i)
			}
		}
		if strings.EqualFold(outLevels[0], "INBOX") && outLevels[0] != "INBOX" {
			t.Fatalf("%q -> %q: an INBOX spelling survives", name, canon)
		}
	})
}
