// Package passhash is popbridge's one home for local password hashes: the
// formats `password_hash` may hold, how `popbridge hash-password` makes
// them, how the configuration check recognises them and how imapfront
// verifies a login against them.
//
// Two formats: bcrypt ($2a$, $2b$, $2y$; 60 characters) and argon2id in
// the PHC string form ($argon2id$v=19$m=…,t=…,p=…$salt$key, unpadded
// standard base64). New hashes are argon2id with OWASP's recommended
// parameters unless bcrypt is asked for.
package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Algorithms Hash can use.
const (
	Argon2id = "argon2id"
	Bcrypt   = "bcrypt"
)

// argon2id parameters of new hashes: OWASP's recommended configuration
// (19 MiB, 2 passes, 1 lane), a 16-byte salt and a 32-byte key. A
// verification costs some 40 ms of CPU and 19 MiB of memory, which a
// server taking many logins can afford (imapfront also remembers
// successful verifications).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// BcryptCost is the cost of new bcrypt hashes.
const BcryptCost = 10

// BcryptMaxPassword is the longest password bcrypt hashes: it ignores what
// follows, so Hash refuses longer ones for bcrypt.
const BcryptMaxPassword = 72

// Bounds on argon2id parameters read from a hash, so that a typo in the
// configuration cannot make every login allocate gigabytes.
const (
	argonMaxMemoryKiB = 1 << 21 // 2 GiB
	argonMaxTime      = 100
	argonMaxThreads   = 255
)

// ErrBadHash reports a password hash in a format popbridge cannot verify.
var ErrBadHash = errors.New("unsupported password hash")

// Hash returns a new hash of password with algo (Argon2id or Bcrypt; ""
// means Argon2id).
func Hash(password, algo string) (string, error) {
	switch algo {
	case "", Argon2id:
		salt := make([]byte, argonSaltLen)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("make salt: %w", err)
		}
		key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
		return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
	case Bcrypt:
		if len(password) > BcryptMaxPassword {
			return "", fmt.Errorf("the password is %d bytes; bcrypt uses only the first %d, so it is refused: use argon2id", len(password), BcryptMaxPassword)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), BcryptCost)
		if err != nil {
			return "", fmt.Errorf("hash password: %w", err)
		}
		return string(h), nil
	}
	return "", fmt.Errorf("unknown hash algorithm %q (valid: %s, %s)", algo, Argon2id, Bcrypt)
}

// Check reports whether hash is in a format Verify accepts, with its
// parameters in bounds: nil, or an error wrapping ErrBadHash that says
// what is wrong.
func Check(hash string) error {
	switch {
	case isBcrypt(hash):
		if len(hash) != 60 {
			return fmt.Errorf("bcrypt hash of %d characters, not 60: %w", len(hash), ErrBadHash)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("bcrypt hash: %v: %w", err, ErrBadHash)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	}
	return ErrBadHash
}

// Verify reports whether password matches hash. A malformed hash is an
// error, never a match.
func Verify(hash, password string) (bool, error) {
	switch {
	case isBcrypt(hash):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("verify bcrypt hash: %v: %w", err, ErrBadHash)
		}
		return true, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		a, err := parseArgon2id(hash)
		if err != nil {
			return false, err
		}
		got := argon2.IDKey([]byte(password), a.salt, a.t, a.m, a.p, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(got, a.key) == 1, nil
	}
	return false, ErrBadHash
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// argon2idHash is a parsed PHC argon2id string.
type argon2idHash struct {
	m, t      uint32
	p         uint8
	salt, key []byte
}

// parseArgon2id parses "$argon2id$v=19$m=..,t=..,p=..$salt$key".
func parseArgon2id(hash string) (argon2idHash, error) {
	var a argon2idHash
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[1] != "argon2id" {
		return a, fmt.Errorf("parse argon2id hash: %w", ErrBadHash)
	}
	if f[2] != "v=19" {
		return a, fmt.Errorf("parse argon2id hash: version %q: %w", f[2], ErrBadHash)
	}
	var m, t, p uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return a, fmt.Errorf("parse argon2id parameters: %w", ErrBadHash)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return a, fmt.Errorf("parse argon2id parameter %s: %w", k, ErrBadHash)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return a, fmt.Errorf("parse argon2id parameter %s: %w", k, ErrBadHash)
		}
	}
	if m == 0 || t == 0 || p == 0 || m > argonMaxMemoryKiB || t > argonMaxTime || p > argonMaxThreads {
		return a, fmt.Errorf("argon2id parameters out of range: %w", ErrBadHash)
	}
	salt, err := decodePHCBase64(f[4])
	if err != nil {
		return a, fmt.Errorf("decode argon2id salt: %w", ErrBadHash)
	}
	key, err := decodePHCBase64(f[5])
	if err != nil || len(key) < 4 {
		return a, fmt.Errorf("decode argon2id hash: %w", ErrBadHash)
	}
	return argon2idHash{m: uint32(m), t: uint32(t), p: uint8(p), salt: salt, key: key}, nil
}

// decodePHCBase64 decodes the unpadded standard base64 of PHC strings,
// accepting padding too.
func decodePHCBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
