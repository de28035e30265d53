package imapfront

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestListMatch(t *testing.T) {
	long := strings.Repeat("a", 40)
	tests := []struct {
		name, mailbox, pattern string
		want                   bool
	}{
		{"exact", "INBOX", "INBOX", true},
		{"other name", "INBOX", "Asuka", false},
		{"star matches inbox", "INBOX", "*", true},
		{"percent matches inbox", "INBOX", "%", true},
		{"star crosses delimiter", "Neon Genesis Evangelion/Misato", "*", true},
		{"percent stops at delimiter", "Neon Genesis Evangelion/Misato", "%", false},
		{"child star", "Neon Genesis Evangelion/Misato", "Neon Genesis Evangelion/*", true},
		{"child percent", "Neon Genesis Evangelion/Misato", "Neon Genesis Evangelion/%", true},
		{"star inside level", "Neon Genesis Evangelion/Misato", "Neo* Evangelion/Misato", true},
		{"percent inside level", "Neon Genesis Evangelion/Misato", "Neo% Evangelion/Misato", true},
		{"star both sides", "Neon Genesis Evangelion/Misato", "*Eva*/Misato", true},
		{"percent both sides", "Neon Genesis Evangelion/Misato", "%Eva%/Misato", true},
		{"star no literal", "Neon Genesis Evangelion/Misato", "*X*/Misato", false},
		{"percent no literal", "Neon Genesis Evangelion/Misato", "%X%/Misato", false},
		{"percent mid word", "Neon Genesis Evangelion/Misato", "Neon Genesis Evangelion/Mi%o", true},
		{"percent mid word mismatch", "Neon Genesis Evangelion/Misato", "Neon Genesis Evangelion/Mi%too", false},
		{"star then level", "Misato/Misato", "Mis*to/Misato", true},
		{"star spans levels", "Misato/Misato", "Mis*to", true},
		{"star and percent", "Misato/Misato/Misato", "Mis*to/Mis%to", true},
		{"double star", "Misato/Misato", "Mis**to/Misato", true},
		{"percent then level", "Misato/Misato", "Misat%/Misato", true},
		{"percent cannot cross", "Misato/Misato", "Misat%Misato", false},
		{"percent then star collapses to star", "a/b/c", "a%*", true},
		{"star then percent collapses to star", "a/b/c", "a*%", true},
		{"percent run", "ab/c", "%%%/c", true},
		{"percent run cannot cross", "a/b/c", "%%%/c", false},
		{"empty pattern", "INBOX", "", false},
		{"empty pattern empty name", "", "", true},
		{"star matches empty tail", "Archive", "Archive*", true},
		{"percent matches empty tail", "Archive", "Archive%", true},
		{"pattern longer than name", "Arc", "Archive*", false},
		{"trailing delimiter", "Archive", "Archive/", false},
		{"children only", "Archive", "Archive/%", false},
		{"child of archive", "Archive/2024", "Archive/%", true},
		{"case sensitive other", "Archive", "archive", false},
		{"case sensitive child", "Archive/x", "archive/%", false},
		{"inbox lower", "INBOX", "inbox", true},
		{"inbox mixed", "INBOX", "InBoX", true},
		{"inbox prefix wildcard", "INBOX", "inb*", true},
		{"inbox percent", "INBOX", "in%", true},
		{"inbox child lower", "INBOX/x", "inbox/x", true},
		{"inbox child percent", "INBOX/x", "inbox/%", true},
		{"inbox child case sensitive", "INBOX/x", "inbox/X", false},
		{"inbox fold limited to first level", "INBOX/Work", "INBOX/work", false},
		{"inboxes not inbox", "INBOXES", "inboxes", false},
		{"inbox suffix star", "INBOX/a/b", "inbox*", true},
		{"non inbox first level", "Other/INBOX", "other/inbox", false},
		{"nested inbox name case sensitive", "Other/INBOX", "Other/inbox", false},
		{"utf8 literal", "Entwürfe/Ä", "Entw%rfe/Ä", true},
		{"utf8 mismatch", "Entwürfe/Ä", "Entw%rfe/ä", false},
		{"exponential stars", long, strings.Repeat("*", 22) + "b", false},
		{"exponential stars match", long + "b", strings.Repeat("*", 22) + "b", true},
		{"exponential star-a", long, strings.Repeat("*a", 8) + "b", false},
		{"exponential percents", long, strings.Repeat("%", 30) + "b", false},
		{"exponential mixed", long + "/" + long, strings.Repeat("%a*", 10) + "b", false},
		{"many wildcards match", long + "/" + long, strings.Repeat("%a*", 10) + "a", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := listMatch(tc.mailbox, tc.pattern); got != tc.want {
				t.Errorf("listMatch(%q, %q) = %v, want %v", tc.mailbox, tc.pattern, got, tc.want)
			}
		})
	}
}

// TestListMatchPathological pins the regression of docs/imapserver-workarounds.md, "LIST pattern matching": patterns that
// made imapserver.MatchList run for minutes must answer at once.
func TestListMatchPathological(t *testing.T) {
	name := strings.Repeat("a", 1000)
	patterns := []string{
		strings.Repeat("*", 5000) + "b",
		strings.Repeat("*a", 500) + "b",
		strings.Repeat("%a", 500) + "b",
		strings.Repeat("a*", 999) + "b",
		strings.Repeat("%*", 5000) + "b",
	}
	start := time.Now()
	for _, p := range patterns {
		if listMatch(name, p) {
			t.Errorf("listMatch(1000 x a, %.20q...) = true, want false", p)
		}
	}
	// A generous bound that the exponential matcher misses by orders of
	// magnitude even on a loaded machine with -race.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("pathological patterns took %v", d)
	}
}

// TestListMatchAgainstReference compares listMatch with a naive recursive
// matcher on random short names and patterns.
func TestListMatchAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	nameAlphabet := []string{"a", "b", "/", "I", "N", "B", "O", "X", "n", "x"}
	patAlphabet := []string{"a", "b", "/", "*", "%", "i", "N", "b", "o", "x", "X"}
	gen := func(alpha []string, max int) string {
		var sb strings.Builder
		for range r.IntN(max + 1) {
			sb.WriteString(alpha[r.IntN(len(alpha))])
		}
		return sb.String()
	}
	for i := 0; i < 20000; i++ {
		name := gen(nameAlphabet, 8)
		if r.IntN(3) == 0 {
			name = "INBOX" + []string{"", "/", "/a", "/b/a", "x"}[r.IntN(5)]
		}
		pat := gen(patAlphabet, 7)
		if got, want := listMatch(name, pat), refListMatch(name, pat); got != want {
			t.Fatalf("listMatch(%q, %q) = %v, reference says %v", name, pat, got, want)
		}
	}
}

// refListMatch is the textbook exponential matcher, with the INBOX rule
// applied by upper-casing the pattern's bytes that face a leading INBOX.
func refListMatch(name, pattern string) bool {
	fold := name == "INBOX" || strings.HasPrefix(name, "INBOX/")
	var rec func(i, p int) bool
	rec = func(i, p int) bool {
		if p == len(pattern) {
			return i == len(name)
		}
		switch pattern[p] {
		case '*':
			for j := i; j <= len(name); j++ {
				if rec(j, p+1) {
					return true
				}
			}
			return false
		case '%':
			for j := i; j <= len(name); j++ {
				if rec(j, p+1) {
					return true
				}
				if j < len(name) && name[j] == '/' {
					return false
				}
			}
			return false
		}
		if i == len(name) {
			return false
		}
		a, b := name[i], pattern[p]
		if fold && i < 5 {
			a, b = byte(strings.ToLower(string(a))[0]), byte(strings.ToLower(string(b))[0])
		}
		return a == b && rec(i+1, p+1)
	}
	return rec(0, 0)
}

func BenchmarkListMatch(b *testing.B) {
	cases := []struct{ name, mailbox, pattern string }{
		{"stars40", strings.Repeat("a", 40), strings.Repeat("*", 22) + "b"},
		{"starA40", strings.Repeat("a", 40), strings.Repeat("*a", 8) + "b"},
		{"percentChild", "Archive/2024/Invoices", "Archive/%"},
		{"star", "Archive/2024/Invoices", "*"},
		{"inbox", "INBOX", "inbox"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				listMatch(c.mailbox, c.pattern)
			}
		})
	}
}

// FuzzListMatch compares listMatch with the reference matcher on short
// inputs (the reference is exponential).
func FuzzListMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"INBOX", "inbox"}, {"INBOX/x", "in%/*"}, {"a/b/c", "a%*c"}, {"Misato/Misato", "Mis*to/Misato"},
		{"aaaa", "**a*%b"}, {"x/INBOX", "%/inbox"}, {"", "%"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, pattern string) {
		if len(name) > 12 || len(pattern) > 8 {
			return
		}
		if got, want := listMatch(name, pattern), refListMatch(name, pattern); got != want {
			t.Fatalf("listMatch(%q, %q) = %v, reference says %v", name, pattern, got, want)
		}
	})
}
