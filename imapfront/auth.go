package imapfront

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// bcryptCost is the cost HashPassword uses.
const bcryptCost = 10

// Bounds on argon2id parameters read from the configuration, so that a typo
// cannot make every login allocate gigabytes.
const (
	argonMaxMemoryKiB = 1 << 21 // 2 GiB
	argonMaxTime      = 100
	argonMaxThreads   = 255
)

// errBadHash reports a password hash in a format popbridge cannot verify.
var errBadHash = errors.New("imapfront: unsupported password hash")

// HashPassword returns a bcrypt hash (cost 10) of password, the format of
// User.PasswordHash and of `popbridge hash-password`.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// verifyPassword reports whether password matches hash, a bcrypt
// ($2a$/$2b$/$2y$) or argon2id ($argon2id$v=19$m=..,t=..,p=..$salt$hash) PHC
// string. A malformed hash is an error, never a match.
func verifyPassword(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("verify bcrypt hash: %w", err)
		}
		return true, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	}
	return false, errBadHash
}

// verifyArgon2id checks password against a PHC argon2id string.
func verifyArgon2id(hash, password string) (bool, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[1] != "argon2id" {
		return false, fmt.Errorf("parse argon2id hash: %w", errBadHash)
	}
	if f[2] != "v=19" {
		return false, fmt.Errorf("parse argon2id hash: version %q: %w", f[2], errBadHash)
	}
	var m, t, p uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return false, fmt.Errorf("parse argon2id parameters: %w", errBadHash)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, fmt.Errorf("parse argon2id parameter %s: %w", k, errBadHash)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return false, fmt.Errorf("parse argon2id parameter %s: %w", k, errBadHash)
		}
	}
	if m == 0 || t == 0 || p == 0 || m > argonMaxMemoryKiB || t > argonMaxTime || p > argonMaxThreads {
		return false, fmt.Errorf("argon2id parameters out of range: %w", errBadHash)
	}
	salt, err := decodePHCBase64(f[4])
	if err != nil {
		return false, fmt.Errorf("decode argon2id salt: %w", errBadHash)
	}
	want, err := decodePHCBase64(f[5])
	if err != nil || len(want) < 4 {
		return false, fmt.Errorf("decode argon2id hash: %w", errBadHash)
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// decodePHCBase64 decodes the unpadded standard base64 of PHC strings,
// accepting padding too.
func decodePHCBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// dummyHash is verified against for unknown user names, so that a failed
// login costs the same whether the user exists or not.
var dummyHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("popbridge-dummy-password"), bcryptCost)
	if err != nil {
		// bcrypt only fails for passwords over 72 bytes or a bad cost.
		panic(fmt.Sprintf("imapfront: dummy hash: %v", err))
	}
	return string(h)
})
