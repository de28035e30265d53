package bridge

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// TestProviderRefusalOfOlderPassword: a background poll that took the old
// password and is refused after the user logged in with a new one does not
// stop polling (it polls again with the newest); a refusal of the newest
// password does.
func TestProviderRefusalOfOlderPassword(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := DefaultConfig()
	cfg.Provider.Host, cfg.Provider.Port, cfg.Provider.TLS = "127.0.0.1", 1, "none"
	cfg.Provider.Credentials = CredentialsSession
	p := newProvider(cfg, st, newProviderMetrics(prometheus.NewRegistry(), &Bridge{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.prepare(ctx, ""); err != nil {
		t.Fatal(err)
	}
	const login = "carol@example.net"
	refused := &poller.AccountError{Account: accountName(login), Op: "login", Reply: "-ERR [AUTH] Authentication failed."}
	if !poller.IsLoginRefused(refused) {
		t.Fatal("the test's error is not a login refusal")
	}
	state := func() (active, needsLogin bool, secret string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		u := p.users[login]
		return u.active, u.needsLogin, u.secret
	}
	secret := p.keptSecret(login)
	acct := p.account(login, secret)

	if err := p.loggedIn(ctx, login, "old"); err != nil {
		t.Fatal(err)
	}
	if got, err := secret(ctx); err != nil || got != "old" {
		t.Fatalf("secret = %q, %v", got, err)
	}
	// The user logs in with a new password while the poll with the old
	// one is at the server; then that poll is refused.
	if err := p.loggedIn(ctx, login, "new"); err != nil {
		t.Fatal(err)
	}
	p.afterPoll(acct, poller.Result{}, refused)
	if active, needs, sec := state(); !active || needs || sec != "new" {
		t.Fatalf("after a refusal of the older password: active %v, needs login %v, secret %q; want polled with the new one", active, needs, sec)
	}
	if !p.poller.HasAccount(acct.Name) {
		t.Fatal("account removed from polling after a refusal of the older password")
	}

	// A refusal of the newest password stops polling.
	if got, err := secret(ctx); err != nil || got != "new" {
		t.Fatalf("secret = %q, %v", got, err)
	}
	p.afterPoll(acct, poller.Result{}, refused)
	if active, needs, sec := state(); active || !needs || sec != "" {
		t.Fatalf("after a refusal of the newest password: active %v, needs login %v, secret %q; want needs login, nothing kept", active, needs, sec)
	}
	if p.poller.HasAccount(acct.Name) {
		t.Fatal("account still polled after its newest password was refused")
	}
	users, err := st.ProviderUsers(ctx)
	if err != nil || len(users) != 1 || users[0].State != store.ProviderNeedsLogin {
		t.Fatalf("provider_users = %+v, %v; want %s", users, err, store.ProviderNeedsLogin)
	}
}
