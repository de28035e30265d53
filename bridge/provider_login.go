package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/passhash"
	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// serves reports whether login is a provider login: domains, when set,
// must hold its domain.
func (p *provider) serves(login string) bool {
	if login == "" || len(login) > maxProviderLogin || !utf8.ValidString(login) {
		return false
	}
	for _, r := range login {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return false
		}
	}
	if len(p.cfg.Domains) == 0 {
		return true
	}
	i := strings.LastIndexByte(login, '@')
	if i < 0 {
		return false
	}
	for _, d := range p.cfg.Domains {
		if strings.EqualFold(login[i+1:], d) {
			return true
		}
	}
	return false
}

// Verify implements imapfront.ExternalLogin.
func (p *provider) Verify(ctx context.Context, login, password string) error {
	if !p.serves(login) || password == "" {
		p.m.logins.WithLabelValues("rejected").Inc()
		return fmt.Errorf("%w: not a provider login", imapfront.ErrLoginRejected)
	}
	verifier, known, err := p.cachedVerifier(ctx, login)
	if err != nil {
		return err
	}
	if !known && p.shared {
		// Created by another node of a shared store.
		su, err := p.st.ProviderUserByName(ctx, login)
		switch {
		case err == nil:
			if acct, poll, _ := p.adopt(su); poll {
				p.poller.AddAccount(acct)
			}
			known = true
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("provider login: %w", err)
		}
	}
	if !known {
		// A local user of that name that provider mode did not create (a
		// former [[user]]) is not handed to whoever holds the POP account.
		_, err := p.st.UserByName(ctx, login)
		if err == nil {
			p.m.logins.WithLabelValues("rejected").Inc()
			p.log.Warn("provider login refused: a local user of that name exists that is not a provider user", LogKeyUser, login)
			return fmt.Errorf("%w: local user %q is not a provider user", imapfront.ErrLoginRejected, login)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("provider login: %w", err)
		}
	}
	if verifier != "" {
		ok, err := p.verifyHash(ctx, verifier, password)
		if err != nil {
			return err
		}
		if ok {
			p.m.logins.WithLabelValues("cached").Inc()
			return p.loggedIn(ctx, login, password)
		}
	}
	err = p.poller.CheckLogin(ctx, p.account(login, func(context.Context) (string, error) { return password, nil }), providerCheckTimeout)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case poller.IsLoginRefused(err):
		p.m.logins.WithLabelValues("rejected").Inc()
		p.mu.Lock()
		if u := p.users[login]; u != nil {
			u.verifier, u.pending = "", nil
		}
		p.mu.Unlock()
		return fmt.Errorf("%w: %v", imapfront.ErrLoginRejected, err)
	default:
		p.m.logins.WithLabelValues("unavailable").Inc()
		p.log.Warn("provider login cannot be checked", LogKeyUser, login, "err", err)
		return fmt.Errorf("%w: %v", imapfront.ErrLoginUnavailable, err)
	}
	p.m.logins.WithLabelValues("ok").Inc()
	at := p.now()
	if err := p.loggedIn(ctx, login, password); err != nil {
		return err
	}
	p.rememberVerifier(login, password, at)
	return nil
}

// cachedVerifier returns the verifier of a password the POP server
// accepted for login within auth_cache ("" when there is none), and
// whether login is a provider user this node knows. A verifier still being
// computed is waited for, so that a login right after a successful one
// finds it.
func (p *provider) cachedVerifier(ctx context.Context, login string) (verifier string, known bool, err error) {
	p.mu.Lock()
	u := p.users[login]
	var pending chan struct{}
	if u != nil {
		pending = u.pending
	}
	p.mu.Unlock()
	if pending != nil {
		select {
		case <-pending:
		case <-ctx.Done():
			return "", true, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u = p.users[login]
	if u == nil {
		return "", false, nil
	}
	if !u.needsLogin && u.verifier != "" && p.now().Sub(u.verifiedAt) < p.cfg.AuthCache.Value {
		verifier = u.verifier
	}
	return verifier, true, nil
}

// rememberVerifier computes, apart from the login that waits for nothing
// of it, the argon2id verifier of password, which the POP server accepted
// for login at at, and keeps it for auth_cache. Hashing is the costliest
// step of a login (tens of ms of CPU, bounded by hashSem): done after the
// login returns, it no longer delays the login or the user's first fetch.
// A refusal meanwhile (forgetVerifier) discards the result.
func (p *provider) rememberVerifier(login, password string, at time.Time) {
	p.mu.Lock()
	u := p.users[login]
	if u == nil {
		p.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	u.pending = ch
	p.mu.Unlock()
	go func() {
		defer close(ch)
		h, err := p.makeVerifier(context.Background(), password)
		p.mu.Lock()
		defer p.mu.Unlock()
		if u.pending != ch {
			return // refused meanwhile, or a newer login computes its own
		}
		u.pending = nil
		if err != nil {
			p.log.Warn("provider login cache: no verifier kept; the next login asks the POP server", LogKeyUser, login, "err", err)
			return
		}
		u.verifier, u.verifiedAt = h, at
	}()
}

// verifyHash checks password against an argon2id verifier, at most
// cap(hashSem) at a time.
func (p *provider) verifyHash(ctx context.Context, verifier, password string) (bool, error) {
	select {
	case p.hashSem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-p.hashSem }()
	return passhash.Verify(verifier, password)
}

// makeVerifier hashes password with argon2id, at most cap(hashSem) at a time.
func (p *provider) makeVerifier(ctx context.Context, password string) (string, error) {
	select {
	case p.hashSem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-p.hashSem }()
	h, err := passhash.Hash(password, passhash.Argon2id)
	if err != nil {
		return "", fmt.Errorf("provider login cache: %w", err)
	}
	return h, nil
}

// loggedIn records a successful login of login: the store user (created
// with its mailboxes at the first one), the provider_users row with the
// sealed password, the verifier when the POP server was asked (verifier
// not ""), and the account in the poller, polled at once for a new user or
// one that was not polled.
func (p *provider) loggedIn(ctx context.Context, login, password string) error {
	// Someone waits on this login: its writes go ahead of background polls'.
	ctx = store.WithUrgent(ctx)
	_, err := p.st.UserByName(ctx, login)
	created := errors.Is(err, store.ErrNotFound)
	if err != nil && !created {
		return fmt.Errorf("provider login: %w", err)
	}
	if _, err := p.st.EnsureUser(ctx, login); err != nil {
		return fmt.Errorf("provider login: %w", err)
	}
	var sealed []byte
	if p.aead != nil {
		sealed = sealCredential(p.aead, login, password)
	}
	now := p.now()
	if err := p.st.PutProviderUser(ctx, store.ProviderUser{Name: login, Credential: sealed, State: store.ProviderActive, LastLogin: now}); err != nil {
		return fmt.Errorf("provider login: %w", err)
	}
	p.mu.Lock()
	u := p.users[login]
	if u == nil {
		u = &provUser{}
		p.users[login] = u
	}
	wasPolled := u.active
	resumed := u.needsLogin
	u.needsLogin, u.active, u.sealed = false, true, sealed
	u.gen++
	if p.aead == nil {
		u.secret = password
	}
	p.mu.Unlock()
	if created {
		p.log.Info("provider user created", LogKeyUser, login)
	} else if resumed {
		p.log.Info("provider user logged in again: polling resumes", LogKeyUser, login)
	}
	p.poller.AddAccount(p.account(login, p.keptSecret(login)))
	if !wasPolled {
		p.poller.PollNow(accountName(login))
	}
	return nil
}
