package bridge

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"golang.org/x/crypto/chacha20poly1305"
)

// ProviderKeySize is the size of the key in [provider] key_file: a raw
// XChaCha20-Poly1305 key.
const ProviderKeySize = chacha20poly1305.KeySize

// sealVersion starts every sealed credential, so that the format can
// change without guessing.
const sealVersion = 1

// loadProviderKey reads the key in path, creating it (32 random bytes, mode
// 0600) when the file does not exist, and returns the AEAD sealing provider
// users' passwords. A key readable by others is used, with a warning.
func loadProviderKey(path string, log *slog.Logger) (cipher.AEAD, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, ProviderKeySize)
		rand.Read(key) // never fails (crypto/rand, Go 1.24+)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("provider key_file: create %s: %w", path, err)
		}
		_, werr := f.Write(key)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("provider key_file: write %s: %w", path, err)
		}
		log.Info("provider key_file created: back it up with the data directory; without it the kept passwords cannot be read",
			"file", path)
	} else if err != nil {
		return nil, fmt.Errorf("provider key_file: %w", err)
	} else if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("provider key_file is readable by group or others; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	if len(key) != ProviderKeySize {
		return nil, fmt.Errorf("provider key_file: %s holds %d bytes, want %d (delete it to make a new one; the kept passwords are then lost and users log in again)",
			path, len(key), ProviderKeySize)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("provider key_file: %w", err)
	}
	return aead, nil
}

// sealCredential seals password for user name: version, nonce, ciphertext,
// with the name as additional data, so a blob moved to another user does
// not open.
func sealCredential(aead cipher.AEAD, name, password string) []byte {
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(password)+aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // never fails (crypto/rand, Go 1.24+)
	return aead.Seal(out, out[1:], []byte(password), []byte(name))
}

// errSealed reports a sealed credential that does not open: another key,
// another user's blob, or damage.
var errSealed = errors.New("bridge: kept provider password does not open with key_file")

// openCredential opens a credential sealed by sealCredential for name.
func openCredential(aead cipher.AEAD, name string, blob []byte) (string, error) {
	n := aead.NonceSize()
	if len(blob) < 1+n+aead.Overhead() || blob[0] != sealVersion {
		return "", errSealed
	}
	pt, err := aead.Open(nil, blob[1:1+n], blob[1+n:], []byte(name))
	if err != nil {
		return "", errSealed
	}
	return string(pt), nil
}
