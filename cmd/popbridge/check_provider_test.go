package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestCheckProvider: with provider mode on, check also checks the
// provider's POP server (connect, TLS, CAPA) without logging in, and fails
// when it is unreachable.
func TestCheckProvider(t *testing.T) {
	up := newUpstream(t, "bob", "right", 0, 0)
	cfgPath := writeConfig(t, t.TempDir(), acct{name: "good", up: up, username: "bob", password: "right"})
	provider := func(port int) {
		t.Helper()
		src, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(string(src), "\n[provider]"); i >= 0 {
			src = src[:i+1]
		}
		src = fmt.Appendf(src, "\n[provider]\nhost = %q\nport = %d\ntls = \"none\"\n", up.Host(), port)
		if err := os.WriteFile(cfgPath, src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	provider(up.Port())
	out, errb := &syncBuffer{}, &syncBuffer{}
	a := &app{stdout: out, stderr: errb, stdin: strings.NewReader("")}
	if code := a.run(context.Background(), []string{"check", "-config", cfgPath}); code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "ok    [provider]") || !strings.Contains(out.String(), "server ok") {
		t.Fatalf("no ok line for the provider server:\n%s", out.String())
	}
	logins := up.Count("USER")
	if logins != 1 { // the account's login only
		t.Errorf("USER sent %d times, want 1 (the provider check logs in as nobody)", logins)
	}

	closed := newUpstream(t, "bob", "right", 0, 0)
	port := closed.Port()
	closed.Close()
	provider(port)
	out, errb = &syncBuffer{}, &syncBuffer{}
	a = &app{stdout: out, stderr: errb, stdin: strings.NewReader("")}
	if code := a.run(context.Background(), []string{"check", "-config", cfgPath}); code != 1 {
		t.Fatalf("check with the provider server down: exit %d, want 1\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "FAIL  [provider]") || !strings.Contains(out.String(), "1 of 2 checks failed") {
		t.Fatalf("want a FAIL line for the provider server:\n%s", out.String())
	}
}
