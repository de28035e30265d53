package imapfront

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeExternal is an ExternalLogin with a table of logins and a switch
// that makes it unavailable; it records presence changes.
type fakeExternal struct {
	mu          sync.Mutex
	passwords   map[string]string
	unavailable bool
	broken      bool
	calls       []string
	presence    chan string
}

func (f *fakeExternal) Verify(ctx context.Context, login, password string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, login)
	switch {
	case f.broken:
		return errors.New("database on fire")
	case f.unavailable:
		return fmt.Errorf("pop server down: %w", ErrLoginUnavailable)
	}
	if pw, ok := f.passwords[login]; ok && pw == password {
		return nil
	}
	return fmt.Errorf("wrong: %w", ErrLoginRejected)
}

func (f *fakeExternal) Present(user string, present bool) {
	f.presence <- fmt.Sprintf("%s=%v", user, present)
}

func (f *fakeExternal) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestExternalLogin: names that are not configured users go to the
// ExternalLogin; its rejection is NO [AUTHENTICATIONFAILED] and throttled,
// its unavailability NO [UNAVAILABLE] and not throttled; a configured user
// never reaches it (precedence), even with a password the ExternalLogin
// would accept; presence is reported at the first login and last logout.
func TestExternalLogin(t *testing.T) {
	ext := &fakeExternal{passwords: map[string]string{"carol@example.net": "pop-pw", "alice": "pop-pw"}, presence: make(chan string, 100)}
	env := newEnv(t, func(o *Options) { o.External = ext })

	c := env.raw()
	c.ok("LOGIN carol@example.net pop-pw")
	c.ok("SELECT INBOX")
	c2 := env.raw()
	c2.ok("LOGIN carol@example.net pop-pw")

	if _, st := env.raw().cmd("LOGIN alice pop-pw"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("configured user with the external password: %s", st)
	}
	env.clock.take()
	if _, st := env.raw().cmd("LOGIN carol@example.net wrong"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("rejected external login: %s", st)
	}
	if d := env.clock.take(); len(d) == 0 {
		t.Error("rejected external login was not throttled")
	}
	ext.mu.Lock()
	ext.unavailable = true
	ext.mu.Unlock()
	if _, st := env.raw().cmd("LOGIN dave@example.net pw"); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("unavailable external login: %s", st)
	}
	if d := env.clock.take(); len(d) != 0 {
		t.Errorf("unavailable login was throttled: %v", d)
	}
	ext.mu.Lock()
	ext.unavailable, ext.broken = false, true
	ext.mu.Unlock()
	if _, st := env.raw().cmd("LOGIN erin@example.net pw"); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("failing external login: %s", st)
	}
	calls := ext.snapshot()
	for _, c := range calls {
		if c == "alice" {
			t.Error("configured user alice reached the ExternalLogin")
		}
	}
	if len(calls) != 5 {
		t.Errorf("calls = %v, want 5", calls)
	}

	c.ok("LOGOUT")
	c2.ok("LOGOUT")
	var carol []string
	for len(carol) < 2 {
		select {
		case p := <-ext.presence:
			if strings.HasPrefix(p, "carol@") {
				carol = append(carol, p)
			}
		case <-time.After(ioWait):
			t.Fatalf("presence of carol = %v", carol)
		}
	}
	if got := strings.Join(carol, ","); got != "carol@example.net=true,carol@example.net=false" {
		t.Errorf("presence = %s", got)
	}
	if logs := env.logs.String(); strings.Contains(logs, "pop-pw") {
		t.Error("log contains a password")
	}
}
