package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/passhash"
	"github.com/popbridge/popbridge/store"
)

// Validate checks every setting and returns all problems found, joined
// (errors.Join of *ConfigError), or nil. Each error names the file, the
// line where known, the field and what would be valid. Validate reads the
// TLS certificate and CA files it names (so a reload with a broken
// certificate is refused; with tls_cert = "auto" nothing is read, the
// certificate is made at start) and checks that password files exist, but
// does not read secrets or run password commands.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.top()
	v.store()
	v.imap()
	v.http()
	v.poller()
	v.users()
	v.accounts()
	v.provider()
	return errors.Join(v.errs...)
}

type validator struct {
	c    *Config
	errs []error
}

// add records a problem at path (indexed, e.g. "account[1].tls").
func (v *validator) add(path, section, field string, kind error, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{
		File: v.c.File, Line: v.c.pos.line(path), Section: section, Field: field,
		Kind: kind, Err: fmt.Errorf(format, args...),
	})
}

func (v *validator) top() {
	if strings.TrimSpace(v.c.DataDir) == "" {
		v.add("data_dir", "", "data_dir", ErrMissing, "required: the directory where the store lives")
	}
}

// checkAddr validates a listen address; "" is allowed (disabled).
func (v *validator) checkAddr(path, section, field, addr string) bool {
	if addr == "" {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			err = errors.New("bad port")
		}
	}
	if err == nil && host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		err = errors.New("bad host")
	}
	if err != nil {
		v.add(path, section, field, ErrInvalidValue, "%q is not a listen address (write host:port, e.g. \"127.0.0.1:1143\" or \"[::1]:993\", or \"\" to disable)", addr)
		return false
	}
	return true
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) imap() {
	c := v.c.IMAP
	v.checkAddr("imap.listen", "imap", "listen", c.Listen)
	v.checkAddr("imap.listen_tls", "imap", "listen_tls", c.ListenTLS)
	if c.Listen == "" && c.ListenTLS == "" {
		v.add("imap", "imap", "listen", ErrMissing, "set listen or listen_tls: IMAP needs at least one listener")
	}
	switch {
	case c.TLSCert == AutoCert:
		if c.TLSKey != "" && c.TLSKey != AutoCert {
			v.add("imap.tls_key", "imap", "tls_key", ErrConflict, "must be \"\" or \"auto\" with tls_cert = \"auto\" (the key is generated next to the certificate in data_dir)")
		}
	case c.TLSKey == AutoCert:
		v.add("imap.tls_key", "imap", "tls_key", ErrConflict, "\"auto\" only with tls_cert = \"auto\"")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		if c.TLSCert == "" {
			v.add("imap.tls_key", "imap", "tls_cert", ErrConflict, "required with tls_key (set both or neither)")
		} else {
			v.add("imap.tls_cert", "imap", "tls_key", ErrConflict, "required with tls_cert (set both or neither)")
		}
	case c.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(v.c.Path(c.TLSCert), v.c.Path(c.TLSKey)); err != nil {
			v.add("imap.tls_cert", "imap", "tls_cert", ErrInvalidValue, "load certificate and key: %v", err)
		}
	}
	if c.ListenTLS != "" && c.TLSCert == "" {
		v.add("imap.listen_tls", "imap", "listen_tls", ErrConflict, "needs tls_cert and tls_key")
	}
	v.imapLimits()
	h := v.c.HTTP.Listen
	seen := map[string]string{}
	for _, a := range []struct{ path, field, addr string }{
		{"imap.listen", "imap.listen", c.Listen}, {"imap.listen_tls", "imap.listen_tls", c.ListenTLS}, {"http.listen", "http.listen", h},
	} {
		if _, port, err := net.SplitHostPort(a.addr); a.addr == "" || err != nil || port == "0" {
			continue // disabled, invalid (reported above) or an ephemeral port
		}
		if other, dup := seen[a.addr]; dup {
			v.add(a.path, "", a.field, ErrConflict, "%q is also %s", a.addr, other)
		}
		seen[a.addr] = a.field
	}
}

// imapLimits checks the [imap] limits and login throttling settings.
func (v *validator) imapLimits() {
	c := v.c.IMAP
	add := func(field string, kind error, format string, args ...any) {
		v.add("imap."+field, "imap", field, kind, format, args...)
	}
	for _, n := range []struct {
		field string
		value int
		def   int
	}{
		{"max_connections", c.MaxConnections, DefaultMaxConnections},
		{"max_connections_per_ip", c.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP},
		{"max_prelogin_connections", c.MaxPreLoginConnections, DefaultMaxPreLoginConnections},
		{"max_mailboxes", c.MaxMailboxes, DefaultMaxMailboxes},
	} {
		if n.value < 0 {
			add(n.field, ErrInvalidValue, "%d is negative (0 means no limit; default %d)", n.value, n.def)
		}
	}
	if c.MaxConnections > 0 && c.MaxConnectionsPerIP > c.MaxConnections {
		add("max_connections_per_ip", ErrConflict, "%d is more than max_connections (%d)", c.MaxConnectionsPerIP, c.MaxConnections)
	}

	if c.IdleTimeout.err != nil {
		add("idle_timeout", ErrInvalidValue, "%v", c.IdleTimeout.err)
	} else if c.IdleTimeout.Value < imapfront.MinIdleTimeout {
		add("idle_timeout", ErrInvalidValue, "%s is too short (at least 30m, RFC 2177; default 35m)", c.IdleTimeout.Value)
	}
	if c.AppendLimit.err != nil {
		add("append_limit", ErrInvalidValue, "%v", c.AppendLimit.err)
	} else if c.AppendLimit.Bytes < MinAppendLimit || c.AppendLimit.Bytes > MaxAppendLimit {
		add("append_limit", ErrInvalidValue, "%d bytes is out of range (4KiB to 4GiB-1, e.g. \"50MiB\")", c.AppendLimit.Bytes)
	}
	baseOK, maxOK := true, true
	for _, d := range []struct {
		field string
		d     Duration
		ok    *bool
	}{{"auth_penalty_base", c.AuthPenaltyBase, &baseOK}, {"auth_penalty_max", c.AuthPenaltyMax, &maxOK}} {
		switch {
		case d.d.err != nil:
			add(d.field, ErrInvalidValue, "%v", d.d.err)
			*d.ok = false
		case d.d.Value < time.Millisecond:
			add(d.field, ErrInvalidValue, "%s is too short (failed logins are always slowed down; e.g. \"2s\")", d.d.Value)
			*d.ok = false
		case d.d.Value > MaxAuthPenalty:
			add(d.field, ErrInvalidValue, "%s is too long (at most %s; clients give up waiting)", d.d.Value, MaxAuthPenalty)
			*d.ok = false
		}
	}
	if baseOK && maxOK && c.AuthPenaltyBase.Value > c.AuthPenaltyMax.Value {
		add("auth_penalty_base", ErrConflict, "%s is more than auth_penalty_max (%s)", c.AuthPenaltyBase.Value, c.AuthPenaltyMax.Value)
	}
	for _, n := range c.TrustedNetworks {
		if _, err := parseNetwork(n); err != nil {
			add("trusted_networks", ErrInvalidValue, "%v", err)
		}
	}
}

// parseNetwork parses a trusted_networks entry: a CIDR ("192.168.1.0/24",
// "fd00::/8"), or one address, which stands for itself alone.
func parseNetwork(s string) (netip.Prefix, error) {
	bad := fmt.Errorf("%q is not a network (write a CIDR, e.g. \"192.168.1.0/24\" or \"fd00::/8\", or one address)", s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %q?)", s, p.Masked().String())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, bad
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// poller checks the [poller] table.
func (v *validator) poller() {
	c := v.c.Poller
	for _, n := range []struct {
		field string
		value int
		def   int
	}{
		{"max_connections", c.MaxConnections, DefaultPollerMaxConnections},
		{"max_connections_per_host", c.MaxConnectionsPerHost, DefaultPollerMaxConnectionsPerHost},
	} {
		if n.value < 0 {
			v.add("poller."+n.field, "poller", n.field, ErrInvalidValue, "%d is negative (0 means no limit; default %d)", n.value, n.def)
		}
	}
	// Only a per-host cap written in the file conflicts: the default (10)
	// under a smaller max_connections just has no effect.
	if c.MaxConnections > 0 && c.MaxConnectionsPerHost > c.MaxConnections && v.c.pos.has("poller.max_connections_per_host") {
		v.add("poller.max_connections_per_host", "poller", "max_connections_per_host", ErrConflict,
			"%d is more than max_connections (%d)", c.MaxConnectionsPerHost, c.MaxConnections)
	}
}

func (v *validator) http() {
	v.checkAddr("http.listen", "http", "listen", v.c.HTTP.Listen)
}

// checkName validates a user or account name.
func checkName(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > 128 || !utf8.ValidString(name) || strings.TrimSpace(name) != name {
		return fmt.Errorf("%q is not a valid name (1-128 characters, no leading or trailing space)", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q is not a valid name (control characters)", name)
		}
	}
	return nil
}

func (v *validator) users() {
	seen := map[string]bool{}
	for i, u := range v.c.Users {
		p := "user[" + strconv.Itoa(i) + "]"
		sec := sectionName("user", i, u.Name)
		if err := checkName(u.Name); err != nil {
			v.add(p+".name", sec, "name", ErrInvalidValue, "%v", err)
		} else if strings.ContainsAny(u.Name, " \"\\") {
			v.add(p+".name", sec, "name", ErrInvalidValue, "%q: an IMAP login name may not contain spaces, quotes or backslashes", u.Name)
		}
		if seen[u.Name] && u.Name != "" {
			v.add(p+".name", sec, "name", ErrDuplicate, "%q is defined twice", u.Name)
		}
		seen[u.Name] = true
		switch h := u.PasswordHash; {
		case h == "":
			v.add(p+".password_hash", sec, "password_hash", ErrMissing, "required (make one with `popbridge hash-password`)")
		case !validPasswordHash(h):
			v.add(p+".password_hash", sec, "password_hash", ErrInvalidValue, "not a bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$) hash (make one with `popbridge hash-password`)")
		}
	}
}

// validPasswordHash recognises the hash formats imapfront verifies
// (internal/lib/passhash knows them).
func validPasswordHash(h string) bool {
	return passhash.Check(h) == nil
}

var (
	tlsModes  = []string{TLSImplicit, TLSStartTLS, TLSNone}
	authModes = []string{AuthUser, AuthAPOP, AuthPlain, AuthXOAUTH2}
)

func oneOf(s string, valid []string) bool {
	for _, v := range valid {
		if s == v {
			return true
		}
	}
	return false
}

func (v *validator) accounts() {
	users := map[string]bool{}
	for _, u := range v.c.Users {
		users[u.Name] = true
	}
	seen := map[string]bool{}
	for i, a := range v.c.Accounts {
		p := "account[" + strconv.Itoa(i) + "]."
		sec := sectionName("account", i, a.Name)
		add := func(field string, kind error, format string, args ...any) {
			v.add(p+field, sec, field, kind, format, args...)
		}
		if err := checkName(a.Name); err != nil {
			add("name", ErrInvalidValue, "%v", err)
		}
		if seen[a.Name] && a.Name != "" {
			add("name", ErrDuplicate, "%q is defined twice", a.Name)
		}
		seen[a.Name] = true
		switch {
		case a.User == "":
			add("user", ErrMissing, "required: the local user who receives this account's mail")
		case !users[a.User]:
			add("user", ErrInvalidValue, "%q is not a configured [[user]]", a.User)
		}
		if a.Host == "" {
			add("host", ErrMissing, "required: the POP3 server's host name")
		} else if net.ParseIP(a.Host) == nil && !validHostname(a.Host) {
			add("host", ErrInvalidValue, "%q is not a host name or IP address", a.Host)
		}
		if a.Port < 1 || a.Port > 65535 {
			add("port", ErrInvalidValue, "%d is not a port (1-65535)", a.Port)
		}
		tlsOK := oneOf(a.TLS, tlsModes)
		if !tlsOK {
			add("tls", ErrInvalidValue, "%q is not one of %s", a.TLS, strings.Join(tlsModes, ", "))
		}
		if a.TLS == TLSNone && a.TLSSkipVerify {
			add("tls_skip_verify", ErrConflict, "only with tls = \"implicit\" or \"starttls\"")
		}
		if a.TLSCAFile != "" {
			if a.TLS == TLSNone {
				add("tls_ca_file", ErrConflict, "only with tls = \"implicit\" or \"starttls\"")
			} else if err := checkCAFile(v.c.Path(a.TLSCAFile)); err != nil {
				add("tls_ca_file", ErrInvalidValue, "%v", err)
			}
		}
		if a.Username == "" {
			add("username", ErrMissing, "required: the POP3 login name")
		}
		v.accountSecret(a, add)
		if !oneOf(a.Auth, authModes) {
			add("auth", ErrInvalidValue, "%q is not one of %s", a.Auth, strings.Join(authModes, ", "))
		} else if a.Auth == AuthXOAUTH2 && a.PasswordCommand == "" {
			add("auth", ErrConflict, "xoauth2 needs password_command (a command printing a fresh access token)")
		}
		if a.MaxMessageSize.err != nil {
			add("max_message_size", ErrInvalidValue, "%v", a.MaxMessageSize.err)
		} else if a.MaxMessageSize.Bytes < 0 {
			add("max_message_size", ErrInvalidValue, "%d is negative (0 means no limit)", a.MaxMessageSize.Bytes)
		}
		if a.PollInterval.err != nil {
			add("poll_interval", ErrInvalidValue, "%v", a.PollInterval.err)
		} else if a.PollInterval.Value < MinPollInterval {
			add("poll_interval", ErrInvalidValue, "%s is too short (at least %s, e.g. \"5m\")", a.PollInterval.Value, MinPollInterval)
		}
		if a.Folder == "" {
			add("folder", ErrMissing, "required (default %q)", DefaultFolder)
		} else if _, err := store.ValidateMailboxName(a.Folder); err != nil {
			add("folder", ErrInvalidValue, "%q is not a valid mailbox name (levels separated by \"/\", no empty levels)", a.Folder)
		}
		if a.DeleteAfter.err != nil {
			add("delete_after", ErrInvalidValue, "%v", a.DeleteAfter.err)
		} else if a.DeleteAfter.Value > 0 && !a.LeaveOnServer {
			add("delete_after", ErrConflict, "only with leave_on_server = true (with false, mail is deleted upstream right after download)")
		}
		if a.DeleteOnExpunge && !a.LeaveOnServer {
			add("delete_on_expunge", ErrConflict, "only with leave_on_server = true (with false, mail is deleted upstream right after download)")
		}
	}
	v.previousNames()
	v.sameMailbox()
}

// previousNames checks previous_names: valid names, none the current name
// of an account, none claimed by two accounts.
func (v *validator) previousNames() {
	current := map[string]bool{}
	for _, a := range v.c.Accounts {
		current[a.Name] = true
	}
	claimed := map[string]string{}
	for i, a := range v.c.Accounts {
		path := "account[" + strconv.Itoa(i) + "].previous_names"
		sec := sectionName("account", i, a.Name)
		for _, old := range a.PreviousNames {
			switch err := checkName(old); {
			case err != nil:
				v.add(path, sec, "previous_names", ErrInvalidValue, "%v", err)
			case current[old]:
				v.add(path, sec, "previous_names", ErrConflict, "%q is the name of a configured account; list only names no [[account]] uses any more", old)
			case claimed[old] != "":
				v.add(path, sec, "previous_names", ErrDuplicate, "%q is also a previous name of account %q; a ledger can be carried over to one account only", old, claimed[old])
			default:
				claimed[old] = a.Name
			}
		}
	}
}

// sameMailbox refuses two accounts on one upstream mailbox (same host,
// port and user name): both would fetch every message, so each would
// arrive twice, and deletions of one would race the other.
func (v *validator) sameMailbox() {
	type key struct {
		host string
		port int
		user string
	}
	first := map[key]int{}
	for i, a := range v.c.Accounts {
		if a.Host == "" || a.Username == "" {
			continue
		}
		k := key{strings.ToLower(strings.TrimSuffix(a.Host, ".")), a.Port, a.Username}
		j, dup := first[k]
		if !dup {
			first[k] = i
			continue
		}
		other := v.c.Accounts[j]
		where := sectionName("account", j, other.Name)
		if line := v.c.pos.line("account[" + strconv.Itoa(j) + "].username"); line > 0 && v.c.File != "" {
			where += " (" + v.c.File + ":" + strconv.Itoa(line) + ")"
		}
		v.add("account["+strconv.Itoa(i)+"].username", sectionName("account", i, a.Name), "username", ErrDuplicate,
			"%s@%s:%d is also fetched by %s: two accounts on one upstream mailbox would store every message twice; remove one of them", a.Username, a.Host, a.Port, where)
	}
}

// accountSecret checks that exactly one secret source is set.
func (v *validator) accountSecret(a AccountConfig, add func(field string, kind error, format string, args ...any)) {
	var set []string
	if !a.Password.IsZero() {
		set = append(set, "password")
	}
	if a.PasswordFile != "" {
		set = append(set, "password_file")
	}
	if a.PasswordCommand != "" {
		set = append(set, "password_command")
	}
	switch len(set) {
	case 0:
		add("password", ErrMissing, "set one of password, password_file, password_command")
	case 1:
		if a.PasswordFile != "" {
			if _, err := os.Stat(v.c.Path(a.PasswordFile)); err != nil {
				add("password_file", ErrInvalidValue, "%v", err)
			}
		}
	default:
		add(set[1], ErrConflict, "set only one of password, password_file, password_command (found %s)", strings.Join(set, ", "))
	}
}

// checkCAFile verifies that path holds at least one PEM certificate.
func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}
