package store

import (
	"fmt"
	"testing"
)

// TestAddressList: ENVELOPE addresses follow RFC 3501 section 7.4.2 (the
// cases of ImapTest's fetch-envelope group).
func TestAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"From Real <fromuser@fromdomain.org>", `[{From Real fromuser fromdomain.org}]`},
		{"user@domain", `[{ user domain}]`},
		{"user@domain (Real Name)", `[{Real Name user domain}]`},
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
			`[{ group } { g1 d1.org} { g2 d2.org} {  } { group2 } { g3 d3.org} {  }]`},
		{"group:;, group2: (foo) ;", `[{ group } {  } { group2 } {  }]`},
		{"<@route:user@domain>", `[{ user domain}]`},
		{"<user-from (comment)@ (comment) domain.org>", `[{ user-from domain.org}]`},
		{`"Last, First" <a@b.c>, d@e.f`, `[{Last, First a b.c} { d e.f}]`},
		{"=?utf-8?q?J=C3=B6rg?= <j@x.de>", `[{Jörg j x.de}]`},
		{"undisclosed-recipients:;", `[{ undisclosed-recipients } {  }]`},
		{"not an address", `[]`},
		{"", `[]`},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(addressList(tt.in)); got != tt.want {
			t.Errorf("addressList(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
