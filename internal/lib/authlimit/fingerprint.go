package authlimit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// Fingerprinter turns a password into the fingerprint [Limiter.Failure]
// expects: HMAC-SHA-256 under a random key made when the Fingerprinter is
// created, truncated to 128 bits and hex-encoded. The key never leaves
// memory, so fingerprints cannot be reversed or compared across processes.
// It is safe for concurrent use.
type Fingerprinter struct {
	key [32]byte
}

// NewFingerprinter returns a Fingerprinter with a fresh random key.
func NewFingerprinter() *Fingerprinter {
	f := &Fingerprinter{}
	rand.Read(f.key[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return f
}

// Fingerprint returns the keyed fingerprint of password (32 hex digits).
func (f *Fingerprinter) Fingerprint(password string) string {
	m := hmac.New(sha256.New, f.key[:])
	m.Write([]byte(password))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
