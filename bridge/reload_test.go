package bridge

import (
	"os"
	"strings"
	"testing"
)

// TestRestartOnlyDocumented: the settings a reload cannot change
// (restartOnly, the one list of them) are named as such in
// docs/OPERATIONS.md's SIGHUP row, and config.toml.example mentions a
// restart in each one's section before it.
func TestRestartOnlyDocumented(t *testing.T) {
	ops, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var sighup string
	for _, l := range strings.Split(string(ops), "\n") {
		if strings.HasPrefix(l, "| `SIGHUP` |") {
			sighup = l
		}
	}
	if sighup == "" {
		t.Fatal("docs/OPERATIONS.md has no SIGHUP row")
	}
	example, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(example), "\n")
	for _, r := range restartOnly {
		section, name, ok := strings.Cut(r.key, ".")
		if !ok {
			section, name = "", r.key
		}
		if name == "listen" || name == "listen_tls" {
			if !strings.Contains(sighup, "listen addresses") {
				t.Errorf("SIGHUP row does not say listen addresses need a restart (%s)", r.key)
			}
		} else if !strings.Contains(sighup, "`"+name+"`") {
			t.Errorf("SIGHUP row does not name %s as needing a restart", r.key)
		}
		// Find the key's line in its section of the example, and a
		// comment mentioning a restart between the section start and it.
		cur, seenRestart, found := "", false, false
		for _, l := range lines {
			if strings.HasPrefix(l, "[") {
				cur, seenRestart = strings.Trim(l, "[]"), false
				continue
			}
			if strings.HasPrefix(l, "#") && strings.Contains(l, "restart") {
				seenRestart = true
			}
			if cur == section && strings.HasPrefix(l, name+" =") {
				found = true
				if !seenRestart {
					t.Errorf("config.toml.example: %s is not described as needing a restart", r.key)
				}
				break
			}
		}
		if !found {
			t.Errorf("config.toml.example has no %s", r.key)
		}
	}
}
