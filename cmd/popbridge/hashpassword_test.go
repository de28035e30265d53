package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// hashOf runs hash-password with input on stdin.
func hashOf(t *testing.T, input string, args ...string) (int, string, string) {
	t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	a := &app{stdin: strings.NewReader(input), stdout: out, stderr: errb}
	code := a.run(t.Context(), append([]string{"hash-password"}, args...))
	return code, strings.TrimSpace(out.String()), errb.String()
}

// TestHashPasswordLogins: the printed hashes log in through IMAP: argon2id
// (the default) with a password longer than bcrypt's 72 bytes, where the
// first 72 bytes alone are refused; bcrypt on request.
func TestHashPasswordLogins(t *testing.T) {
	long := strings.Repeat("correct horse battery staple ", 4) // 116 bytes
	code, argonHash, errs := hashOf(t, long+"\n", "-stdin")
	if code != 0 || !strings.HasPrefix(argonHash, "$argon2id$") {
		t.Fatalf("argon2id: exit %d, %q %s", code, argonHash, errs)
	}
	code, bcryptHash, errs := hashOf(t, "short one\n", "-bcrypt")
	if code != 0 || !strings.HasPrefix(bcryptHash, "$2a$") {
		t.Fatalf("-bcrypt: exit %d, %q %s", code, bcryptHash, errs)
	}
	if code, h, _ := hashOf(t, "short one\n", "-algo", "bcrypt"); code != 0 || !strings.HasPrefix(h, "$2a$") {
		t.Fatalf("-algo bcrypt: exit %d, %q", code, h)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "popbridge.toml")
	conf := fmt.Sprintf("data_dir = %q\n[imap]\nlisten = \"127.0.0.1:0\"\ntrusted_networks = [\"127.0.0.0/8\"]\n[http]\nlisten = \"\"\n"+
		"[[user]]\nname = \"long\"\npassword_hash = %q\n[[user]]\nname = \"classic\"\npassword_hash = %q\n",
		filepath.Join(dir, "data"), argonHash, bcryptHash)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// trusted_networks: no login penalty after the refused attempt.
	r := start(t, "serve", "-config", cfg)
	defer r.stop(t)
	login := func(user, pw string) error {
		c, err := imapclient.DialInsecure(r.b.Addrs().IMAP.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(user, pw).Wait()
	}
	if err := login("long", long); err != nil {
		t.Errorf("login with the %d-byte password: %v", len(long), err)
	}
	if err := login("long", long[:72]); err == nil {
		t.Error("login with only the first 72 bytes accepted")
	}
	if err := login("classic", "short one"); err != nil {
		t.Errorf("login with the bcrypt hash: %v", err)
	}
}

func TestHashPasswordRefusals(t *testing.T) {
	long := strings.Repeat("x", 73)
	if code, h, errs := hashOf(t, long+"\n", "-bcrypt"); code != 1 || h != "" ||
		!strings.Contains(errs, "the password is 73 bytes; bcrypt uses only the first 72, so it is refused: use argon2id (the default)") {
		t.Errorf("-bcrypt with 73 bytes: exit %d, out %q, err %q", code, h, errs)
	}
	if code, _, errs := hashOf(t, "\n", "-stdin"); code != 1 || !strings.Contains(errs, "empty password") {
		t.Errorf("empty: exit %d, %q", code, errs)
	}
	if code, _, errs := hashOf(t, "pw\n", "-algo", "md5"); code != 2 || !strings.Contains(errs, `-algo "md5" is not one of argon2id, bcrypt`) {
		t.Errorf("-algo md5: exit %d, %q", code, errs)
	}
}
