package bridge

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProviderSeal: the key file is created 0600 with 32 bytes and reused;
// a sealed password opens only for its user and with its key, and holds
// no clear text; a key file of the wrong size is refused with its path.
func TestProviderSeal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "provider.key")
	log := slog.New(slog.DiscardHandler)
	aead, err := loadProviderKey(path, log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != ProviderKeySize {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	key1, _ := os.ReadFile(path)
	again, err := loadProviderKey(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if key2, _ := os.ReadFile(path); !bytes.Equal(key1, key2) {
		t.Fatal("key file rewritten at the second load")
	}
	blob := sealCredential(aead, "bob@example.net", "hunter2-secret")
	if bytes.Contains(blob, []byte("hunter2")) {
		t.Fatal("sealed blob holds the password")
	}
	if other := sealCredential(aead, "bob@example.net", "hunter2-secret"); bytes.Equal(blob, other) {
		t.Error("two seals of one password are equal (nonce reused)")
	}
	if pw, err := openCredential(again, "bob@example.net", blob); err != nil || pw != "hunter2-secret" {
		t.Fatalf("open = %q, %v", pw, err)
	}
	if _, err := openCredential(aead, "eve@example.net", blob); !errors.Is(err, errSealed) {
		t.Errorf("opened for another user: %v", err)
	}
	otherKey, err := loadProviderKey(filepath.Join(dir, "other.key"), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openCredential(otherKey, "bob@example.net", blob); !errors.Is(err, errSealed) {
		t.Errorf("opened with another key: %v", err)
	}
	if _, err := openCredential(aead, "bob@example.net", blob[:10]); !errors.Is(err, errSealed) {
		t.Errorf("opened a truncated blob: %v", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("too short"), 0o600)
	if _, err := loadProviderKey(short, log); err == nil || !strings.Contains(err.Error(), short) {
		t.Errorf("short key: %v", err)
	}
}
