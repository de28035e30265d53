package bridge

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	// UsersAdded and UsersRemoved name the [[user]] entries that appeared
	// or disappeared.
	UsersAdded, UsersRemoved []string
	// AccountsAdded, AccountsRemoved and AccountsChanged name the
	// [[account]] entries whose pollers were started, stopped or restarted.
	AccountsAdded, AccountsRemoved, AccountsChanged []string
	// NeedRestart lists changed settings that take effect only after a
	// restart (data_dir, listen addresses, allow_plaintext_auth, the [imap]
	// limits and login throttling), as "section.key"; the running values
	// are kept.
	NeedRestart []string
}

// Reload applies cfg to the running service without dropping IMAP
// sessions: users (new logins; sessions of removed users stay until they
// log out), accounts (pollers of added, removed or changed accounts are
// started, stopped or restarted), the [poller] connection caps (sessions
// already open stay; new ones wait until they fit) and the IMAP TLS
// certificate (new
// handshakes; with tls_cert = "auto", the one in the running data_dir). cfg is validated first, and its certificate loaded and its
// users created in the store, before anything changes: when any of that
// fails, the running configuration stays and the error says why.
// Settings that need a restart are kept at their running values and
// listed in the result. Reload is safe to call concurrently; it fails
// before Run has started everything.
func (b *Bridge) Reload(ctx context.Context, cfg *Config) (ReloadResult, error) {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	select {
	case <-b.ready:
	default:
		return ReloadResult{}, errors.New("reload: bridge is not running")
	}
	res, err := b.reload1(ctx, cfg)
	b.recordReload(err)
	return res, err
}

// reload1 is Reload once the bridge runs, under reloadMu.
func (b *Bridge) reload1(ctx context.Context, cfg *Config) (ReloadResult, error) {
	var res ReloadResult
	if err := cfg.Validate(); err != nil {
		b.log.Error("reload refused; keeping the running configuration", "err", err)
		return res, fmt.Errorf("reload: %w", err)
	}
	b.mu.Lock()
	old, st, srv, p := b.cfg, b.store, b.imap, b.poller
	b.mu.Unlock()
	// The data directory is the running one: changing it needs a restart.
	tlsConf, autoInfo, err := cfg.serverTLS(old.Path(old.DataDir), b.log)
	if err != nil {
		b.log.Error("reload refused; keeping the running configuration", "err", err)
		return res, fmt.Errorf("reload: %w", err)
	}
	// A rename whose old name still has a running poller needs a restart:
	// that poller may still be writing the ledger under the old name.
	for _, a := range cfg.Accounts {
		for _, prev := range a.PreviousNames {
			if _, running := old.Account(prev); running {
				err := fmt.Errorf("account %q renames the running account %q (previous_names): restart popbridge to apply a rename", a.Name, prev)
				b.log.Error("reload refused; keeping the running configuration", "err", err)
				return res, fmt.Errorf("reload: %w", err)
			}
		}
	}
	if err := ensureUsers(ctx, st, cfg); err != nil {
		b.log.Error("reload refused; keeping the running configuration", "err", err)
		return res, fmt.Errorf("reload: %w", err)
	}
	if err := carryLedgers(ctx, st, cfg, b.log); err != nil {
		b.log.Error("reload refused; keeping the running configuration", "err", err)
		return res, fmt.Errorf("reload: %w", err)
	}

	// Keep what cannot change live.
	next := *cfg
	for _, r := range restartOnly {
		if r.changed(old, cfg) {
			res.NeedRestart = append(res.NeedRestart, r.key)
		}
		r.keep(&next, old)
	}

	res.UsersAdded, res.UsersRemoved = diffNames(names(old.Users, func(u UserConfig) string { return u.Name }),
		names(cfg.Users, func(u UserConfig) string { return u.Name }))
	res.AccountsAdded, res.AccountsRemoved = diffNames(names(old.Accounts, func(a AccountConfig) string { return a.Name }),
		names(cfg.Accounts, func(a AccountConfig) string { return a.Name }))
	for _, a := range cfg.Accounts {
		if prev, ok := old.Account(a.Name); ok && !sameAccount(old, prev, cfg, a) {
			res.AccountsChanged = append(res.AccountsChanged, a.Name)
		}
	}

	srv.SetUsers(cfg.imapUsers())
	srv.SetTLSConfig(tlsConf)
	logAutoCert(b.log, autoInfo)
	p.SetConnectionLimits(cfg.Poller.pollerLimits())
	p.SetAccounts(cfg.pollerAccounts())
	b.mu.Lock()
	b.cfg = &next
	b.mu.Unlock()
	for _, a := range cfg.Accounts {
		if a.TLSSkipVerify && slices.Contains(append(res.AccountsAdded, res.AccountsChanged...), a.Name) {
			b.log.Warn("tls_skip_verify is set: the upstream certificate is not verified", LogKeyAccount, a.Name)
		}
	}
	b.log.Info("configuration reloaded",
		"users", len(cfg.Users), "accounts", len(cfg.Accounts),
		"users_added", res.UsersAdded, "users_removed", res.UsersRemoved,
		"accounts_added", res.AccountsAdded, "accounts_removed", res.AccountsRemoved,
		"accounts_changed", res.AccountsChanged)
	if len(res.NeedRestart) > 0 {
		b.log.Warn("changed settings take effect only after a restart; running values kept", "settings", res.NeedRestart)
	}
	return res, nil
}

// absPath is filepath.Abs, or p when that fails.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// sameAccount compares two account entries as the poller would see them
// (secrets compared by source, relative paths resolved).
func sameAccount(ca *Config, a AccountConfig, cb *Config, b AccountConfig) bool {
	pa, pb := ca.pollerAccount(a), cb.pollerAccount(b)
	pa.Secret, pb.Secret = nil, nil
	return reflect.DeepEqual(pa, pb) && a.Password.Reveal() == b.Password.Reveal() &&
		ca.Path(a.PasswordFile) == cb.Path(b.PasswordFile) && a.PasswordCommand == b.PasswordCommand
}

func names[T any](xs []T, name func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, name(x))
	}
	return out
}

// diffNames returns the names only in next (added) and only in prev (removed).
func diffNames(prev, next []string) (added, removed []string) {
	for _, n := range next {
		if !slices.Contains(prev, n) {
			added = append(added, n)
		}
	}
	for _, n := range prev {
		if !slices.Contains(next, n) {
			removed = append(removed, n)
		}
	}
	return added, removed
}

// restartOnly lists the settings a reload cannot change, in the order a
// reload reports them: how to tell one changed, and how to keep its running
// value. It is the one list of them: docs/OPERATIONS.md (SIGHUP) and
// config.toml.example say the same, which TestRestartOnlyDocumented checks.
var restartOnly = append([]restartKey{
	// Compared as absolute paths: the running config holds an absolute
	// data_dir, the file a relative one when -config is.
	{"data_dir", func(o, c *Config) bool { return absPath(c.Path(c.DataDir)) != absPath(o.Path(o.DataDir)) },
		func(n, o *Config) { n.DataDir = absPath(o.Path(o.DataDir)) }},
	{"imap.listen", func(o, c *Config) bool { return c.IMAP.Listen != o.IMAP.Listen },
		func(n, o *Config) { n.IMAP.Listen = o.IMAP.Listen }},
	{"imap.listen_tls", func(o, c *Config) bool { return c.IMAP.ListenTLS != o.IMAP.ListenTLS },
		func(n, o *Config) { n.IMAP.ListenTLS = o.IMAP.ListenTLS }},
	{"imap.allow_plaintext_auth", func(o, c *Config) bool { return c.IMAP.AllowPlaintextAuth != o.IMAP.AllowPlaintextAuth },
		func(n, o *Config) { n.IMAP.AllowPlaintextAuth = o.IMAP.AllowPlaintextAuth }},
	{"http.listen", func(o, c *Config) bool { return c.HTTP.Listen != o.HTTP.Listen },
		func(n, o *Config) { n.HTTP.Listen = o.HTTP.Listen }},
	{"imap.max_connections", func(o, c *Config) bool { return c.IMAP.MaxConnections != o.IMAP.MaxConnections },
		func(n, o *Config) { n.IMAP.MaxConnections = o.IMAP.MaxConnections }},
	{"imap.max_connections_per_ip", func(o, c *Config) bool { return c.IMAP.MaxConnectionsPerIP != o.IMAP.MaxConnectionsPerIP },
		func(n, o *Config) { n.IMAP.MaxConnectionsPerIP = o.IMAP.MaxConnectionsPerIP }},
	{"imap.max_prelogin_connections", func(o, c *Config) bool { return c.IMAP.MaxPreLoginConnections != o.IMAP.MaxPreLoginConnections },
		func(n, o *Config) { n.IMAP.MaxPreLoginConnections = o.IMAP.MaxPreLoginConnections }},
	{"imap.max_mailboxes", func(o, c *Config) bool { return c.IMAP.MaxMailboxes != o.IMAP.MaxMailboxes },
		func(n, o *Config) { n.IMAP.MaxMailboxes = o.IMAP.MaxMailboxes }},
	{"imap.idle_timeout", func(o, c *Config) bool { return c.IMAP.IdleTimeout.Value != o.IMAP.IdleTimeout.Value },
		func(n, o *Config) { n.IMAP.IdleTimeout = o.IMAP.IdleTimeout }},
	{"imap.append_limit", func(o, c *Config) bool { return c.IMAP.AppendLimit.Bytes != o.IMAP.AppendLimit.Bytes },
		func(n, o *Config) { n.IMAP.AppendLimit = o.IMAP.AppendLimit }},
	{"imap.auth_penalty_base", func(o, c *Config) bool { return c.IMAP.AuthPenaltyBase.Value != o.IMAP.AuthPenaltyBase.Value },
		func(n, o *Config) { n.IMAP.AuthPenaltyBase = o.IMAP.AuthPenaltyBase }},
	{"imap.auth_penalty_max", func(o, c *Config) bool { return c.IMAP.AuthPenaltyMax.Value != o.IMAP.AuthPenaltyMax.Value },
		func(n, o *Config) { n.IMAP.AuthPenaltyMax = o.IMAP.AuthPenaltyMax }},
	{"imap.trusted_networks", func(o, c *Config) bool { return !slices.Equal(c.IMAP.TrustedNetworks, o.IMAP.TrustedNetworks) },
		func(n, o *Config) { n.IMAP.TrustedNetworks = o.IMAP.TrustedNetworks }},
}, append(storeRestartOnly(), providerRestartOnly()...)...)

// restartKey is one setting a reload cannot change: how to tell it changed,
// and how to keep its running value.
type restartKey struct {
	key     string
	changed func(old, cfg *Config) bool
	keep    func(next, old *Config)
}
