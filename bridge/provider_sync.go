package bridge

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// adopt takes the provider user su, as the store has it, into memory:
// a new one, or one whose row another node changed (shared store). It
// returns the account to poll when su is to be polled by this node (its
// sealed password opens with key_file and it does not need a login);
// unreadable reports a sealed password that does not open (another
// key_file). A user polled already keeps being polled with the newer
// credential.
func (p *provider) adopt(su store.ProviderUser) (acct poller.Account, poll, unreadable bool) {
	sealed := su.Credential
	if p.aead != nil && sealed != nil {
		if _, err := openCredential(p.aead, su.Name, sealed); err != nil {
			sealed, unreadable = nil, true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[su.Name]
	if u == nil {
		u = &provUser{}
		p.users[su.Name] = u
	}
	u.needsLogin = su.State == store.ProviderNeedsLogin
	if p.aead != nil && !bytes.Equal(u.sealed, sealed) {
		u.sealed = sealed
		u.gen++
	}
	if u.needsLogin || p.aead == nil || u.sealed == nil {
		// Session credentials live only on the node the user logged in
		// to; without a credential there is nothing to poll with.
		return poller.Account{}, false, unreadable
	}
	u.active = true
	return p.account(su.Name, p.keptSecret(su.Name)), true, unreadable
}

// sync brings this node's provider users in line with the shared store:
// users created on another node are polled here too (their account's lease
// makes one node poll each at a time), a user another node found needing
// a login stops being polled, a newer sealed password is taken, and a
// user removed (popbridge users -remove) is forgotten.
func (p *provider) sync(ctx context.Context) error {
	users, err := p.st.ProviderUsers(ctx)
	if err != nil {
		return fmt.Errorf("provider: read users: %w", err)
	}
	inStore := make(map[string]bool, len(users))
	for _, su := range users {
		inStore[su.Name] = true
		p.mu.Lock()
		u := p.users[su.Name]
		wasActive := u != nil && u.active
		p.mu.Unlock()
		acct, poll, _ := p.adopt(su)
		switch {
		case poll && !wasActive:
			p.poller.AddAccount(acct)
		case !poll && wasActive && su.State == store.ProviderNeedsLogin:
			p.mu.Lock()
			u.active, u.secret, u.verifier, u.pending = false, "", "", nil
			p.mu.Unlock()
			p.poller.RemoveAccount(accountName(su.Name))
			p.log.Info("provider user needs login (seen by another node): polling stops", LogKeyUser, su.Name)
		}
	}
	var gone []string
	p.mu.Lock()
	for name, u := range p.users {
		if !inStore[name] && !u.present {
			gone = append(gone, name)
			delete(p.users, name)
		}
	}
	p.mu.Unlock()
	for _, name := range gone {
		p.poller.RemoveAccount(accountName(name))
	}
	return nil
}

// syncLoop runs sync every syncEvery until ctx ends.
func (p *provider) syncLoop(ctx context.Context) {
	t := time.NewTicker(p.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("provider users not synchronised with the other nodes; trying again", "err", err, "in", p.syncEvery)
		}
	}
}
