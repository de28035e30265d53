package imapfront

import (
	"net"
	"strings"
	"testing"

	"encoding/base64"
	"golang.org/x/crypto/argon2"
)

func TestLogin(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"good", "alice", "alice-secret", true},
		{"wrong password", "alice", "nope", false},
		{"unknown user", "mallory", "x", false},
		{"empty password", "bob", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.raw()
			_, st := c.cmd("LOGIN %q %q", tt.user, tt.pass)
			if got := strings.HasPrefix(st, "OK"); got != tt.ok {
				t.Fatalf("LOGIN: %s", st)
			}
			if !tt.ok && !strings.Contains(st, "[AUTHENTICATIONFAILED]") {
				t.Errorf("failure code: %s", st)
			}
		})
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "user=mallory") || !strings.Contains(logs, "127.0.0.1") {
		t.Errorf("failed login not logged with user and address:\n%s", logs)
	}
	for _, secret := range []string{"nope", "alice-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a password %q", secret)
		}
	}
}

func TestLoginFailuresCloseConnection(t *testing.T) {
	env := newEnv(t)
	c := env.raw()
	for i := 1; i <= maxLoginFailures; i++ {
		if _, st := c.cmd("LOGIN alice wrong%d", i); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("attempt %d: %s", i, st)
		}
	}
	if l, err := c.readLine(ioWait); err == nil {
		t.Fatalf("connection open after %d failures: %q", maxLoginFailures, l)
	}
	env.rawLogin("alice") // other connections are unaffected
}

func TestAuthenticatePlainAndUnauthenticate(t *testing.T) {
	env := newEnv(t)
	c := env.raw()
	// AUTHENTICATE PLAIN with an initial response (SASL-IR).
	ir := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-secret"))
	c.ok("AUTHENTICATE PLAIN %s", ir)
	c.ok("SELECT INBOX")
	c.ok("UNAUTHENTICATE")
	if _, st := c.cmd("SELECT INBOX"); !strings.HasPrefix(st, "BAD") && !strings.HasPrefix(st, "NO") {
		t.Fatalf("SELECT after UNAUTHENTICATE: %s", st)
	}
	c.ok("LOGIN bob bob-secret")
}

func TestArgon2idHash(t *testing.T) {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 64, 1, 32)
	hash := "$argon2id$v=19$m=64,t=1,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key)
	tests := []struct {
		name, hash, pw string
		ok             bool
		err            bool
	}{
		{"argon2id match", hash, "pw", true, false},
		{"argon2id mismatch", hash, "px", false, false},
		{"argon2id bad params", "$argon2id$v=19$m=0,t=1,p=1$c2FsdA$aGFzaGhhc2g", "pw", false, true},
		{"argon2id bad version", strings.Replace(hash, "v=19", "v=16", 1), "pw", false, true},
		{"unknown scheme", "$1$abc$def", "pw", false, true},
		{"plain text is never a hash", "pw", "pw", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := verifyPassword(tt.hash, tt.pw)
			if ok != tt.ok || (err != nil) != tt.err {
				t.Fatalf("verifyPassword = %v, %v", ok, err)
			}
		})
	}
	// HashPassword produces a bcrypt hash verifyPassword accepts.
	h, err := HashPassword("s3cret")
	if err != nil || !strings.HasPrefix(h, "$2a$10$") {
		t.Fatalf("HashPassword = %q, %v", h, err)
	}
	if ok, err := verifyPassword(h, "s3cret"); !ok || err != nil {
		t.Fatalf("verify HashPassword output: %v %v", ok, err)
	}
}

func TestArgon2idLogin(t *testing.T) {
	salt := []byte("saltsaltsaltsalt")
	key := argon2.IDKey([]byte("carol-pw"), salt, 1, 64, 1, 32)
	hash := "$argon2id$v=19$m=64,t=1,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key)
	env := newEnv(t, func(o *Options) { o.Users = append(o.Users, User{Name: "carol", PasswordHash: hash}) })
	c := env.raw()
	c.ok("LOGIN carol carol-pw")
}

func TestSetUsersKeepsSessions(t *testing.T) {
	env := newEnv(t)
	c := env.rawLogin("alice")
	env.srv.SetUsers([]User{{Name: "bob", PasswordHash: testHashes()["bob"]}})
	c.ok("SELECT INBOX") // alice's session survives the reload
	c2 := env.raw()
	if _, st := c2.cmd("LOGIN alice alice-secret"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("removed user could log in: %s", st)
	}
	env.rawLogin("bob")
}

// TestPlaintextPolicy checks LOGINDISABLED for non-loopback plaintext
// connections. The test runs on loopback only, so it exercises the policy
// through the backend choice directly.
func TestPlaintextPolicy(t *testing.T) {
	tests := []struct {
		name         string
		remote       net.Addr
		allow        bool
		wantInsecure bool
	}{
		{"loopback v4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, false, true},
		{"loopback v6", &net.TCPAddr{IP: net.IPv6loopback}, false, true},
		{"remote", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, false, false},
		{"remote allowed", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := isLoopback(tt.remote) || tt.allow
			if got != tt.wantInsecure {
				t.Fatalf("insecure auth = %v", got)
			}
		})
	}
}

// TestLoginDisabledWithoutTLS serves a connection as if it came from a
// remote address: LOGIN must be refused with LOGINDISABLED advertised.
func TestLoginDisabledWithoutTLS(t *testing.T) {
	env := newEnv(t)
	client, server := net.Pipe()
	defer client.Close()
	env.srv.handle(remoteConn{server}, false)
	c := &rawClient{t: t, conn: client}
	c.br = newReader(client)
	greet := c.line()
	if !strings.Contains(greet, "LOGINDISABLED") {
		t.Fatalf("greeting without LOGINDISABLED: %q", greet)
	}
	_, st := c.cmd("LOGIN alice alice-secret")
	if !strings.HasPrefix(st, "NO") || !strings.Contains(st, "PRIVACYREQUIRED") {
		t.Fatalf("plaintext LOGIN from remote: %s", st)
	}
}

// remoteConn pretends to come from a non-loopback address.
type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4242} }
