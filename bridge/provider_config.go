package bridge

import (
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/store"
)

// ProviderConfig is the [provider] table: provider mode, where IMAP logins
// that are not [[user]] entries are checked against one POP3 service and
// create their local user at their first success (see bridge/provider.go).
// Host "" (the default) turns it off.
type ProviderConfig struct {
	// Host and Port of the POP3 service. Port 0 means the default of TLS
	// (995 implicit, 110 otherwise). Host "" disables provider mode.
	Host string `toml:"host"`
	Port int    `toml:"port"`
	// TLS, TLSCAFile, TLSSkipVerify and Auth are as for [[account]]; Auth
	// is user, apop or plain.
	TLS           string `toml:"tls"`
	TLSCAFile     string `toml:"tls_ca_file"`
	TLSSkipVerify bool   `toml:"tls_skip_verify"`
	Auth          string `toml:"auth"`
	// Username makes the POP3 user name from the IMAP login: %u the whole
	// login, %n its part before "@", %d its domain, %% a "%". Default "%u".
	Username string `toml:"username"`
	// Domains, when not empty, are the only domains whose logins
	// (name@domain) are provider logins.
	Domains []string `toml:"domains"`
	// Folder, PollInterval, LeaveOnServer, DeleteAfter, DeleteOnExpunge and
	// MaxMessageSize are the account policy of every provider user, as for
	// [[account]].
	Folder          string   `toml:"folder"`
	PollInterval    Duration `toml:"poll_interval"`
	LeaveOnServer   bool     `toml:"leave_on_server"`
	DeleteAfter     Duration `toml:"delete_after"`
	DeleteOnExpunge bool     `toml:"delete_on_expunge"`
	MaxMessageSize  Size     `toml:"max_message_size"`
	// Credentials is "encrypted" (the POP password is kept sealed with
	// KeyFile, so mail is fetched while nobody is logged in) or "session"
	// (kept in memory only: polled while the user has a session and for
	// PollAfterLogout after it).
	Credentials string `toml:"credentials"`
	// PollAfterLogout is how long a user is still polled after their last
	// session ended, with credentials = "session". Default 24h.
	PollAfterLogout Duration `toml:"poll_after_logout"`
	// KeyFile holds the 32-byte key sealing the passwords with credentials
	// = "encrypted"; created (0600) at the first start. Default
	// "provider.key", relative to the configuration file.
	KeyFile string `toml:"key_file"`
	// AuthCache is how long a login verified by the POP server is trusted
	// before the server is asked again; it also lets a verified user in
	// while the server is unreachable. "0": always ask. Default 10m.
	AuthCache Duration `toml:"auth_cache"`
	// MaxUpstreamConnections caps the POP3 sessions open at once towards
	// Host, logins included; 0 means no cap. Default 20.
	MaxUpstreamConnections int `toml:"max_upstream_connections"`
}

// Values of ProviderConfig.Credentials.
const (
	CredentialsEncrypted = "encrypted"
	CredentialsSession   = "session"
)

// Defaults of the [provider] table.
const (
	DefaultProviderUsername               = "%u"
	DefaultProviderKeyFile                = "provider.key"
	DefaultProviderAuthCache              = 10 * time.Minute
	DefaultProviderPollAfterLogout        = 24 * time.Hour
	DefaultProviderMaxUpstreamConnections = 20
	// MaxProviderAuthCache is the longest auth_cache accepted.
	MaxProviderAuthCache = 24 * time.Hour
	// ProviderAccountPrefix starts the account name (ledger, status) of
	// every provider user: "provider:" + login.
	ProviderAccountPrefix = "provider:"
)

// DefaultProvider returns a [provider] table with every default set and
// Host "" (provider mode off).
func DefaultProvider() ProviderConfig {
	return ProviderConfig{
		Port:                   995,
		TLS:                    TLSImplicit,
		Auth:                   AuthUser,
		Username:               DefaultProviderUsername,
		Folder:                 DefaultFolder,
		PollInterval:           Duration{Value: DefaultPollInterval},
		LeaveOnServer:          true,
		MaxMessageSize:         Size{Bytes: DefaultMaxMessageSize},
		Credentials:            CredentialsEncrypted,
		PollAfterLogout:        Duration{Value: DefaultProviderPollAfterLogout},
		KeyFile:                DefaultProviderKeyFile,
		AuthCache:              Duration{Value: DefaultProviderAuthCache},
		MaxUpstreamConnections: DefaultProviderMaxUpstreamConnections,
	}
}

// Enabled reports whether provider mode is on (Host set).
func (p ProviderConfig) Enabled() bool { return p.Host != "" }

var providerAuthModes = []string{AuthUser, AuthAPOP, AuthPlain}

// provider checks the [provider] table (only when it is enabled) and that
// no [[account]] name collides with the names of provider users' accounts.
func (v *validator) provider() {
	p := v.c.Provider
	if !p.Enabled() {
		return
	}
	add := func(field string, kind error, format string, args ...any) {
		v.add("provider."+field, "provider", field, kind, format, args...)
	}
	if net.ParseIP(p.Host) == nil && !validHostname(p.Host) {
		add("host", ErrInvalidValue, "%q is not a host name or IP address (\"\" turns provider mode off)", p.Host)
	}
	if p.Port < 1 || p.Port > 65535 {
		add("port", ErrInvalidValue, "%d is not a port (1-65535)", p.Port)
	}
	if !oneOf(p.TLS, tlsModes) {
		add("tls", ErrInvalidValue, "%q is not one of %s", p.TLS, strings.Join(tlsModes, ", "))
	}
	if p.TLS == TLSNone && p.TLSSkipVerify {
		add("tls_skip_verify", ErrConflict, "only with tls = \"implicit\" or \"starttls\"")
	}
	if p.TLSCAFile != "" {
		if p.TLS == TLSNone {
			add("tls_ca_file", ErrConflict, "only with tls = \"implicit\" or \"starttls\"")
		} else if err := checkCAFile(v.c.Path(p.TLSCAFile)); err != nil {
			add("tls_ca_file", ErrInvalidValue, "%v", err)
		}
	}
	if !oneOf(p.Auth, providerAuthModes) {
		add("auth", ErrInvalidValue, "%q is not one of %s (xoauth2 needs a token per user, which an IMAP login does not give)", p.Auth, strings.Join(providerAuthModes, ", "))
	}
	if err := checkUsernameTemplate(p.Username); err != "" {
		add("username", ErrInvalidValue, "%q: %s (write e.g. \"%%u\" for the whole login, \"%%n\" for its part before @, \"%%d\" for its domain)", p.Username, err)
	}
	for _, d := range p.Domains {
		if d == "" || !validHostname(d) || strings.HasPrefix(d, "@") {
			add("domains", ErrInvalidValue, "%q is not a domain (write e.g. [\"example.net\"], without @)", d)
		}
	}
	if p.Folder == "" {
		add("folder", ErrMissing, "required (default %q)", DefaultFolder)
	} else if _, err := store.ValidateMailboxName(p.Folder); err != nil {
		add("folder", ErrInvalidValue, "%q is not a valid mailbox name (levels separated by \"/\", no empty levels)", p.Folder)
	}
	if p.PollInterval.err != nil {
		add("poll_interval", ErrInvalidValue, "%v", p.PollInterval.err)
	} else if p.PollInterval.Value < MinPollInterval {
		add("poll_interval", ErrInvalidValue, "%s is too short (at least %s, e.g. \"5m\")", p.PollInterval.Value, MinPollInterval)
	}
	if p.DeleteAfter.err != nil {
		add("delete_after", ErrInvalidValue, "%v", p.DeleteAfter.err)
	} else if p.DeleteAfter.Value > 0 && !p.LeaveOnServer {
		add("delete_after", ErrConflict, "only with leave_on_server = true (with false, mail is deleted upstream right after download)")
	}
	if p.DeleteOnExpunge && !p.LeaveOnServer {
		add("delete_on_expunge", ErrConflict, "only with leave_on_server = true (with false, mail is deleted upstream right after download)")
	}
	if p.MaxMessageSize.err != nil {
		add("max_message_size", ErrInvalidValue, "%v", p.MaxMessageSize.err)
	} else if p.MaxMessageSize.Bytes < 0 {
		add("max_message_size", ErrInvalidValue, "%d is negative (0 means no limit)", p.MaxMessageSize.Bytes)
	}
	switch p.Credentials {
	case CredentialsEncrypted:
		if p.KeyFile == "" {
			add("key_file", ErrMissing, "required with credentials = \"encrypted\" (default %q, created at the first start)", DefaultProviderKeyFile)
		}
	case CredentialsSession:
	default:
		add("credentials", ErrInvalidValue, "%q is not one of %s, %s", p.Credentials, CredentialsEncrypted, CredentialsSession)
	}
	if p.PollAfterLogout.err != nil {
		add("poll_after_logout", ErrInvalidValue, "%v", p.PollAfterLogout.err)
	} else if p.PollAfterLogout.Value < 0 {
		add("poll_after_logout", ErrInvalidValue, "%s is negative (\"0\" stops polling at logout)", p.PollAfterLogout.Value)
	}
	if p.AuthCache.err != nil {
		add("auth_cache", ErrInvalidValue, "%v", p.AuthCache.err)
	} else if p.AuthCache.Value < 0 || p.AuthCache.Value > MaxProviderAuthCache {
		add("auth_cache", ErrInvalidValue, "%s is out of range (\"0\" to %s; a changed password keeps working this long)", p.AuthCache.Value, MaxProviderAuthCache)
	}
	if p.MaxUpstreamConnections < 0 {
		add("max_upstream_connections", ErrInvalidValue, "%d is negative (0 means no limit; default %d)", p.MaxUpstreamConnections, DefaultProviderMaxUpstreamConnections)
	}
	for i, a := range v.c.Accounts {
		if strings.HasPrefix(a.Name, ProviderAccountPrefix) {
			v.add("account["+strconv.Itoa(i)+"].name", sectionName("account", i, a.Name), "name", ErrConflict,
				"%q: names starting with %q are those of provider users' accounts; rename it", a.Name, ProviderAccountPrefix)
		}
	}
}

// checkUsernameTemplate returns what is wrong with a username template, or "".
func checkUsernameTemplate(t string) string {
	if t == "" {
		return "required"
	}
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			continue
		}
		if i+1 >= len(t) || !strings.ContainsRune("und%", rune(t[i+1])) {
			return "a % must be followed by u, n, d or %"
		}
		i++
	}
	return ""
}

// expandUsername fills in a username template for login.
func expandUsername(t, login string) string {
	name, domain := login, ""
	if i := strings.LastIndexByte(login, '@'); i >= 0 {
		name, domain = login[:i], login[i+1:]
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' || i+1 >= len(t) {
			b.WriteByte(t[i])
			continue
		}
		i++
		switch t[i] {
		case 'u':
			b.WriteString(login)
		case 'n':
			b.WriteString(name)
		case 'd':
			b.WriteString(domain)
		default:
			b.WriteByte(t[i])
		}
	}
	return b.String()
}

// providerRestartOnly lists every [provider] key as needing a restart, for
// restartOnly: provider users' accounts are made from them at login.
func providerRestartOnly() []restartKey {
	var out []restartKey
	t := reflect.TypeFor[ProviderConfig]()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, restartKey{
			key: "provider." + tag,
			changed: func(o, c *Config) bool {
				return !reflect.DeepEqual(reflect.ValueOf(o.Provider).Field(i).Interface(), reflect.ValueOf(c.Provider).Field(i).Interface())
			},
			keep: func(n, o *Config) {
				reflect.ValueOf(&n.Provider).Elem().Field(i).Set(reflect.ValueOf(o.Provider).Field(i))
			},
		})
	}
	return out
}
