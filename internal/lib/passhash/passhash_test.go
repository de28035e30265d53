package passhash

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerifyCheck(t *testing.T) {
	long := strings.Repeat("p", 100)
	for _, algo := range []string{"", Argon2id, Bcrypt} {
		pw := "correct horse"
		h, err := Hash(pw, algo)
		if err != nil {
			t.Fatalf("Hash(%q): %v", algo, err)
		}
		if err := Check(h); err != nil {
			t.Errorf("Check(%s hash) = %v", algo, err)
		}
		if ok, err := Verify(h, pw); !ok || err != nil {
			t.Errorf("Verify(%s hash, right password) = %v, %v", algo, ok, err)
		}
		if ok, err := Verify(h, pw+"!"); ok || err != nil {
			t.Errorf("Verify(%s hash, wrong password) = %v, %v", algo, ok, err)
		}
		if h2, _ := Hash(pw, algo); h2 == h {
			t.Errorf("%s: two hashes of one password are equal (no salt?)", algo)
		}
	}
	// argon2id covers every byte of a long password; bcrypt refuses one.
	h, err := Hash(long, Argon2id)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := Verify(h, long[:72]); ok {
		t.Error("argon2id hash of a 100-byte password accepts its first 72 bytes")
	}
	if _, err := Hash(long, Bcrypt); err == nil || !strings.Contains(err.Error(), "72") {
		t.Errorf("bcrypt of 100 bytes: %v, want a refusal naming 72", err)
	}
	if _, err := Hash("x", "md5"); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

func TestBadHashes(t *testing.T) {
	good, _ := Hash("pw", Argon2id)
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"",
		"plaintext",
		"$1$md5crypt$xxxxxxxx",
		"$2a$10$short",
		"$argon2id$v=19$m=19456,t=2,p=1$onlysalt",
		"$argon2id$v=16$" + strings.Join(parts[3:], "$"),
		"$argon2id$v=19$m=99999999,t=2,p=1$" + strings.Join(parts[4:], "$"), // 95 GiB: out of bounds
		"$argon2id$v=19$m=19456,t=0,p=1$" + strings.Join(parts[4:], "$"),
		"$argon2id$v=19$m=19456,t=2,x=1$" + strings.Join(parts[4:], "$"),
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$" + parts[5],
	} {
		if err := Check(h); !errors.Is(err, ErrBadHash) {
			t.Errorf("Check(%q) = %v, want ErrBadHash", h, err)
		}
		if ok, err := Verify(h, "pw"); ok || !errors.Is(err, ErrBadHash) {
			t.Errorf("Verify(%q) = %v, %v, want no match and ErrBadHash", h, ok, err)
		}
	}
}
