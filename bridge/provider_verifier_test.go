package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/store"
)

// TestProviderLoginDoesNotWaitForItsVerifier: the argon2id verifier of the
// login cache is computed after a POP-checked login returns, so a login
// (and the user's first fetch) never queues behind other logins' hashing;
// a login that comes while it is computed waits for it, so that a user
// the POP server accepted a moment ago still gets in while that server
// is down.
func TestProviderLoginDoesNotWaitForItsVerifier(t *testing.T) {
	ctx := context.Background()
	up := pop3mem.NewServer(pop3mem.WithUser("dan", "danpw"))
	t.Cleanup(up.Close)
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := DefaultConfig()
	cfg.Provider.Host, cfg.Provider.Port, cfg.Provider.TLS = up.Host(), up.Port(), TLSNone
	cfg.Provider.Credentials = CredentialsSession
	p := newProvider(cfg, st, newProviderMetrics(prometheus.NewRegistry(), &Bridge{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.prepare(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// Every hashing slot is taken, as under a storm of logins.
	for range cap(p.hashSem) {
		p.hashSem <- struct{}{}
	}
	vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.Verify(vctx, "dan", "danpw"); err != nil {
		t.Fatalf("login while hashing is saturated: %v (it must not wait for its verifier)", err)
	}
	p.mu.Lock()
	pending := p.users["dan"].pending
	p.mu.Unlock()
	if pending == nil {
		t.Fatal("no verifier under way after an accepted login")
	}
	// The POP server goes away; a second login waits for the verifier
	// (slots freed now) and gets in from the cache.
	up.Close()
	go func() {
		for range cap(p.hashSem) {
			<-p.hashSem
		}
	}()
	if err := p.Verify(vctx, "dan", "danpw"); err != nil {
		t.Fatalf("login from the cache with the POP server down: %v", err)
	}
	// A wrong password is not let in by the cache.
	if err := p.Verify(vctx, "dan", "wrong"); !errors.Is(err, imapfront.ErrLoginUnavailable) {
		t.Fatalf("wrong password with the POP server down: %v, want unavailable", err)
	}
}
