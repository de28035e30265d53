package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// TestUpstreamHintEverywhere: implicit TLS configured against a plain
// POP3 port that offers STLS. check, poll's log and status all carry the
// setting to use.
func TestUpstreamHintEverywhere(t *testing.T) {
	p := testpki.New(t)
	up := pop3mem.NewUnstartedServer(pop3mem.WithTLS(p.ServerConfig()))
	up.Start()
	defer up.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "popbridge.toml")
	conf := fmt.Sprintf("data_dir = %q\n[imap]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"\"\n[[user]]\nname = \"alice\"\npassword_hash = %q\n"+
		"[[account]]\nname = \"work\"\nuser = \"alice\"\nhost = %q\nport = %d\ntls = \"implicit\"\ntls_ca_file = %q\nusername = %q\npassword = %q\n",
		filepath.Join(dir, "data"), aliceHash(t), up.Host(), up.Port(), p.CAFile, pop3mem.DefaultUser, pop3mem.DefaultPassword)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	hint := up.Addr() + ` sent a plain POP3 greeting, not TLS, and offers STLS: set tls = "starttls" (or port = 995 with tls = "implicit")`

	code, out, _ := runCmd("check", "-config", cfg)
	if code != 1 {
		t.Errorf("check: exit %d, want 1", code)
	}
	if l := lineWith(out, "FAIL  work", ""); !strings.HasSuffix(l, "; "+hint) {
		t.Errorf("check's FAIL line does not end with the hint %q:\n%s", hint, out)
	}

	code, _, logs := runCmd("poll", "-config", cfg)
	if code != 1 {
		t.Errorf("poll: exit %d, want 1", code)
	}
	if !strings.Contains(logs, hint) {
		t.Errorf("poll's log lacks the hint:\n%s", logs)
	}

	code, out, _ = runCmd("status", "-config", cfg)
	if code != 0 {
		t.Fatalf("status: exit %d", code)
	}
	if !strings.Contains(out, "work: last poll failed ") || !strings.Contains(out, hint) {
		t.Errorf("status lacks the failure and its hint:\n%s", out)
	}
}
