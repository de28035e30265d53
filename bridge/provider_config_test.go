package bridge

import (
	"slices"
	"strings"
	"testing"
)

func TestExpandUsername(t *testing.T) {
	for _, tt := range []struct{ tmpl, login, want string }{
		{"%u", "bob@example.net", "bob@example.net"},
		{"%n", "bob@example.net", "bob"},
		{"%d", "bob@example.net", "example.net"},
		{"%n+%d", "a@b@example.net", "a@b+example.net"},
		{"%n", "bob", "bob"},
		{"pop-%n%%", "bob@x", "pop-bob%"},
	} {
		if got := expandUsername(tt.tmpl, tt.login); got != tt.want {
			t.Errorf("expandUsername(%q, %q) = %q, want %q", tt.tmpl, tt.login, got, tt.want)
		}
	}
	for _, bad := range []string{"", "%", "%x", "a%"} {
		if checkUsernameTemplate(bad) == "" {
			t.Errorf("template %q accepted", bad)
		}
	}
}

func TestProviderServes(t *testing.T) {
	p := &provider{cfg: ProviderConfig{Domains: []string{"example.net"}}}
	for login, want := range map[string]bool{
		"bob@example.net": true, "bob@EXAMPLE.net": true, "bob@example.org": false,
		"bob": false, "bob@sub.example.net": false, "": false, "bob\r\n@example.net": false,
		"bob\t@example.net": false, "b ob@example.net": false, "\xff@example.net": false,
		strings.Repeat("b", 300) + "@example.net": false,
	} {
		if got := p.serves(login); got != want {
			t.Errorf("serves(%q) = %v, want %v", login, got, want)
		}
	}
	p.cfg.Domains = nil
	if !p.serves("bob") {
		t.Error("without domains every login is a provider login")
	}
}

// TestProviderRestartOnly: a changed [provider] key is reported as needing
// a restart and its running value kept.
func TestProviderRestartOnly(t *testing.T) {
	old, cfg := DefaultConfig(), DefaultConfig()
	old.Provider.Host, cfg.Provider.Host = "pop.example.net", "pop2.example.net"
	cfg.Provider.Domains = []string{"example.net"}
	next := *cfg
	var changed []string
	for _, r := range restartOnly {
		if r.changed(old, cfg) {
			changed = append(changed, r.key)
		}
		r.keep(&next, old)
	}
	if !slices.Equal(changed, []string{"provider.host", "provider.domains"}) {
		t.Errorf("changed = %v", changed)
	}
	if next.Provider.Host != "pop.example.net" || next.Provider.Domains != nil {
		t.Errorf("running values not kept: %+v", next.Provider)
	}
}
