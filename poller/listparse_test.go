package poller

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTwoFieldsIsFields checks twoFields against strings.Fields, on
// chosen lines and on random ones built from spaces of every kind
// (ASCII and Unicode), ordinary bytes and invalid UTF-8.
func TestTwoFieldsIsFields(t *testing.T) {
	check := func(l string) {
		t.Helper()
		f := strings.Fields(l)
		a, b, ok := twoFields(l)
		if ok != (len(f) >= 2) || (ok && (a != f[0] || b != f[1])) {
			t.Errorf("twoFields(%q) = %q, %q, %v; strings.Fields = %q", l, a, b, ok, f)
		}
	}
	for _, l := range []string{
		"", " ", "1", "1 ", " 1", "1 2", "1 2 3", "  1   2  ", "1\t2", "1\v2\f", "1\r2", "12 abc-DEF.x",
		"1\u00a02", "1\u0085 2", "1 \u3000x", "\u00a01 2", "1 \xff", "\xff \xfe", "é 2", "1 é", "1\u2028",
	} {
		check(l)
	}
	parts := []string{" ", "\t", "\v", "\f", "\r", "\n", "\u00a0", "\u0085", "\u2003", "1", "42", "x", "é", "\xff", "."}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		check(b.String())
	}
}
