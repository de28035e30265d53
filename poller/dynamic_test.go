package poller

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestAddRemoveAccount: an account added while the poller runs gets a
// worker (PollNow polls it at once and AfterPoll reports the pass), a
// removed one stops and leaves the account set; HintAccount reaches only
// running accounts.
func TestAddRemoveAccount(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(2)
	type done struct {
		name string
		res  Result
		err  error
	}
	passes := make(chan done, 10)
	h.p.afterPoll = func(a Account, res Result, err error) { passes <- done{a.Name, res, err} }
	runPoller(t, h)
	h.clock.waitTimer(t, 0) // the configured account's worker sleeps

	prov := Account{Name: "provider:bob", User: "bob", Folder: "INBOX", LeaveOnServer: true, PollInterval: 5 * time.Minute}
	h.p.AddAccount(prov)
	if !h.p.HasAccount(prov.Name) {
		t.Fatal("added account missing")
	}
	h.p.PollNow(prov.Name)
	select {
	case d := <-passes:
		if d.name != prov.Name || d.err != nil || d.res.Fetched != 2 {
			t.Fatalf("pass = %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no poll of the added account")
	}
	if got := len(h.p.Status()); got != 2 {
		t.Errorf("Status lists %d accounts, want 2", got)
	}
	// Adding it again with the same configuration keeps its worker.
	h.p.AddAccount(prov)
	if got := len(h.p.Status()); got != 2 {
		t.Errorf("re-add: Status lists %d accounts, want 2", got)
	}
	if !h.p.RemoveAccount(prov.Name) || h.p.HasAccount(prov.Name) || h.p.RemoveAccount(prov.Name) {
		t.Fatal("RemoveAccount did not remove exactly once")
	}
	h.p.mu.Lock()
	_, running := h.p.workers[prov.Name]
	h.p.mu.Unlock()
	if running {
		t.Error("worker of the removed account still registered")
	}
	h.p.HintAccount(prov.Name) // no worker: nothing happens, nothing blocks
	select {
	case d := <-passes:
		t.Errorf("pass after removal: %+v", d)
	default:
	}
}

// TestIsLoginRefused: only a permanent refusal of the login is one.
func TestIsLoginRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"wrong password", &AccountError{Op: "login", Reply: "-ERR [AUTH] Authentication failed.", Err: errReply}, true},
		{"bad credentials", &AccountError{Op: "login", Err: fmt.Errorf("x: %w", ErrBadCredentials)}, true},
		{"in use", &AccountError{Op: "login", Reply: "-ERR [IN-USE] busy", Temporary: true}, false},
		{"unknown mechanism", &AccountError{Op: "login", Err: ErrBadConfig}, false},
		{"dial", &AccountError{Op: "dial", Err: errors.New("connection refused"), Temporary: true}, false},
		{"tls", &AccountError{Op: "tls", Err: errors.New("x509")}, false},
		{"plain error", errors.New("login"), false},
	} {
		if got := IsLoginRefused(fmt.Errorf("wrapped: %w", tt.err)); got != tt.want {
			t.Errorf("%s: IsLoginRefused = %v, want %v", tt.name, got, tt.want)
		}
	}
}
