package poller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// TestCheckServer: the check of a server without credentials greets,
// reads CAPA and QUITs, never sending a user name or password; a server
// that is gone is an *AccountError naming the account.
func TestCheckServer(t *testing.T) {
	srv := pop3mem.NewServer(pop3mem.WithUser("u", "p"))
	defer srv.Close()
	p := New(Options{})
	a := Account{Name: "[provider]", Host: srv.Host(), Port: srv.Port(), TLS: "none"}
	if err := p.CheckServer(context.Background(), a, 10*time.Second); err != nil {
		t.Fatalf("CheckServer: %v", err)
	}
	for cmd, want := range map[string]int{"CAPA": 1, "QUIT": 1, "USER": 0, "PASS": 0, "AUTH": 0, "APOP": 0} {
		if got := srv.Count(cmd); got != want {
			t.Errorf("%s sent %d times, want %d", cmd, got, want)
		}
	}
	srv.Close()
	err := p.CheckServer(context.Background(), a, 10*time.Second)
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Account != "[provider]" {
		t.Fatalf("CheckServer of a closed server: %v, want an AccountError naming the account", err)
	}
}
