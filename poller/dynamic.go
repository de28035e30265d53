package poller

import (
	"errors"
	"time"
)

// Accounts added and removed one at a time (provider mode: an account
// appears at a user's first login and stops when its login is refused),
// without rebuilding the whole set as SetAccounts does: with thousands of
// accounts a login costs one scan of the names, not a comparison of every
// configuration.

// AddAccount adds a, or replaces the account of the same name. While Run
// runs, a new account gets a worker whose first poll is spread like those
// of the configured accounts (call PollNow to poll at once); a replaced
// account whose configuration is unchanged only takes the new Secret, one
// whose configuration changed gets a new worker.
func (p *Poller) AddAccount(a Account) {
	p.mu.Lock()
	defer p.mu.Unlock()
	replaced := false
	for i := range p.accounts {
		if p.accounts[i].Name == a.Name {
			p.accounts[i], replaced = a, true
			break
		}
	}
	if !replaced {
		p.accounts = append(p.accounts, a)
	}
	p.stateLocked(a.Name)
	if !p.running {
		return
	}
	p.applyAccountLocked(a)
}

// RemoveAccount removes the account called name and stops its worker (a
// poll in flight finishes as on shutdown). Its in-memory state is kept, so
// that a later AddAccount still honours the server's LOGIN-DELAY. It
// reports whether the account was there.
func (p *Poller) RemoveAccount(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	found := false
	for i := range p.accounts {
		if p.accounts[i].Name == name {
			p.accounts = append(p.accounts[:i], p.accounts[i+1:]...)
			found = true
			break
		}
	}
	if w := p.workers[name]; w != nil {
		w.cancel()
		delete(p.workers, name)
	}
	p.statuses.drop(name)
	return found
}

// HasAccount reports whether an account called name is in the set.
func (p *Poller) HasAccount(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.accounts {
		if p.accounts[i].Name == name {
			return true
		}
	}
	return false
}

// HintAccount is Hint for one account known by name (no scan of the
// accounts): an early poll, at most once per 15 seconds, ignored while
// the account backs off after a refused login. It does not block.
func (p *Poller) HintAccount(name string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[name]
	if w == nil {
		return
	}
	st := p.stateLocked(name)
	if !st.lastHint.IsZero() && now.Sub(st.lastHint) < hintEvery {
		return
	}
	if w.request(now, false) {
		st.lastHint = now
	}
}

// IsLoginRefused reports whether err says the server refused the
// account's credentials: an -ERR to the login that is not temporary
// ([IN-USE], [LOGIN-DELAY], [SYS/TEMP] are), or credentials that cannot be
// sent at all. Network, TLS and configuration errors are not refusals.
func IsLoginRefused(err error) bool {
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Op != "login" || ae.Temporary {
		return false
	}
	return ae.Reply != "" || errors.Is(err, ErrBadCredentials)
}

// noteLogin records, for the LOGIN-DELAY of account name, a session that
// logged in at t with the server's caps.
func (p *Poller) noteLogin(name string, t time.Time, c capabilities) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stateLocked(name)
	st.lastLogin = t
	st.loginDelay = c.LoginDelay
}
