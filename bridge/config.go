package bridge

import (
	"path/filepath"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/authlimit"
	"github.com/popbridge/popbridge/poller"
)

// Config is the whole popbridge configuration, as read from one TOML file
// (see config.toml.example for every option with its default).
//
// A Config is built with [DefaultConfig] or [Parse] (which starts from the
// defaults), then checked with [Config.Validate]; [Load] does all three.
// Relative paths in the file (data_dir, tls_cert, tls_key, tls_ca_file,
// password_file) are relative to the directory holding the file.
type Config struct {
	// DataDir is the directory of the store (with [store] backend =
	// "postgres", of this node's own files: the automatic TLS certificate,
	// the provider key). Required.
	DataDir string `toml:"data_dir"`
	// Store says where the mail store lives: embedded in DataDir (the
	// default) or on PostgreSQL.
	Store StoreConfig `toml:"store"`
	// IMAP configures the IMAP listeners.
	IMAP IMAPConfig `toml:"imap"`
	// HTTP configures the health and metrics listener.
	HTTP HTTPConfig `toml:"http"`
	// Poller configures the poller towards all upstream servers together.
	Poller PollerConfig `toml:"poller"`
	// Users are the local IMAP users.
	Users []UserConfig `toml:"user"`
	// Accounts are the upstream POP3 accounts.
	Accounts []AccountConfig `toml:"account"`
	// Provider turns on provider mode (Host set): IMAP logins that are
	// not Users are checked against one POP3 service.
	Provider ProviderConfig `toml:"provider"`

	// File is the path the configuration was read from; "" when it was
	// built in code. It names the file in error messages.
	File string `toml:"-"`

	// pos locates keys in the file for error messages; nil when built in code.
	pos *positions
}

// IMAPConfig is the [imap] table.
type IMAPConfig struct {
	// Listen is the address of the plain IMAP listener (STARTTLS when a
	// certificate is configured); "" disables it. Default 127.0.0.1:1143.
	Listen string `toml:"listen"`
	// ListenTLS is the address of the implicit-TLS listener (e.g.
	// 0.0.0.0:993); "" (the default) disables it. Requires TLSCert/TLSKey.
	ListenTLS string `toml:"listen_tls"`
	// TLSCert and TLSKey are PEM files; both or neither. Empty means no TLS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AllowPlaintextAuth allows LOGIN without TLS from non-loopback
	// addresses. Loopback is always allowed. Default false.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`

	// MaxConnections caps the IMAP connections open at once over both
	// listeners; 0 means no cap. Default 1000.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP caps the connections open at once from one IPv4
	// address or IPv6 /64 (loopback exempt); 0 means no cap. Default 20.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxPreLoginConnections caps the connections that have not logged in
	// yet; when it is full, or max_connections is, the oldest of them
	// gives way to the newcomer. 0 means no cap of its own (the oldest
	// still gives way at max_connections); a value above max_connections
	// means max_connections. Default 250.
	MaxPreLoginConnections int `toml:"max_prelogin_connections"`
	// MaxMailboxes caps the mailboxes of one user; 0 means no cap.
	// Default 10000.
	MaxMailboxes int `toml:"max_mailboxes"`
	// IdleTimeout is how long a logged-in connection may stay silent, IDLE
	// included; at least 30m (RFC 2177). Default 35m.
	IdleTimeout Duration `toml:"idle_timeout"`
	// AppendLimit is the largest message a client may APPEND, 4KiB to
	// 4GiB-1. Default 50MiB.
	AppendLimit Size `toml:"append_limit"`
	// AuthPenaltyBase and AuthPenaltyMax shape the delay after failed
	// logins, per client address and per user name: Base after the first
	// failure, doubling up to Max. Defaults 2s and 15s.
	AuthPenaltyBase Duration `toml:"auth_penalty_base"`
	AuthPenaltyMax  Duration `toml:"auth_penalty_max"`
	// TrustedNetworks are CIDRs (or single addresses) whose logins are
	// never delayed, e.g. a webmail front end. Default none.
	TrustedNetworks []string `toml:"trusted_networks"`
}

// TLSEnabled reports whether a certificate is configured (files, or
// AutoCert).
func (c IMAPConfig) TLSEnabled() bool { return c.TLSCert != "" || c.TLSKey != "" }

// TLSAuto reports whether tls_cert is "auto": a self-signed certificate
// kept in data_dir (see [LoadAutoCert]).
func (c IMAPConfig) TLSAuto() bool { return c.TLSCert == AutoCert }

// HTTPConfig is the [http] table.
type HTTPConfig struct {
	// Listen is the address serving /healthz and /metrics; "" disables it.
	// Default 127.0.0.1:9143.
	Listen string `toml:"listen"`
}

// PollerConfig is the [poller] table.
type PollerConfig struct {
	// MaxConnections caps the POP3 sessions (logins included) open at once
	// over all accounts; 0 means no cap. Default 20.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerHost caps the POP3 sessions open at once towards one
	// server (host and port as configured); 0 means no cap. Default 10.
	MaxConnectionsPerHost int `toml:"max_connections_per_host"`
}

// UserConfig is one [[user]] entry: a local IMAP user.
type UserConfig struct {
	// Name is the IMAP login name. Required, unique.
	Name string `toml:"name"`
	// PasswordHash is a bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$)
	// hash, as printed by `popbridge hash-password`. Required.
	PasswordHash string `toml:"password_hash"`
	// Trace logs the user's IMAP traffic once logged in, credentials and
	// message data left out (plaintext and implicit-TLS connections).
	Trace bool `toml:"trace"`
}

// Values of AccountConfig.TLS.
const (
	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"
	TLSNone     = "none"
)

// Values of AccountConfig.Auth.
const (
	AuthUser    = "user"
	AuthAPOP    = "apop"
	AuthPlain   = "plain"
	AuthXOAUTH2 = "xoauth2"
)

// Default values applied by [DefaultConfig], [DefaultAccount] and [Parse].
const (
	DefaultIMAPListen     = "127.0.0.1:1143"
	DefaultHTTPListen     = "127.0.0.1:9143"
	DefaultPollInterval   = 5 * time.Minute
	DefaultMaxMessageSize = 50_000_000 // "50MB"
	DefaultFolder         = "INBOX"
	// MinPollInterval is the shortest poll_interval accepted.
	MinPollInterval = time.Second

	DefaultMaxConnections      = imapfront.DefaultMaxConns
	DefaultMaxConnectionsPerIP = imapfront.DefaultMaxConnsPerAddr
	// DefaultMaxPreLoginConnections is a quarter of DefaultMaxConnections.
	DefaultMaxPreLoginConnections = imapfront.DefaultMaxPreLoginConns
	DefaultMaxMailboxes           = imapfront.DefaultMaxMailboxes
	DefaultIdleTimeout            = imapfront.DefaultIdleTimeout
	DefaultAppendLimit            = 50 << 20 // "50MiB", imapfront's default
	DefaultAuthPenaltyBase        = authlimit.DefaultBase
	DefaultAuthPenaltyMax         = authlimit.DefaultMax

	DefaultPollerMaxConnections        = poller.DefaultMaxConnections
	DefaultPollerMaxConnectionsPerHost = poller.DefaultMaxConnectionsPerHost
	// MinAppendLimit is the smallest append_limit accepted: below 4KiB,
	// compliant clients would send literals imapfront cannot take safely
	// (see imapfront's doc).
	MinAppendLimit = 4 << 10
	// MaxAppendLimit is the largest append_limit accepted (APPENDLIMIT is
	// a 32-bit number).
	MaxAppendLimit = 1<<32 - 1
	// MaxAuthPenalty is the longest auth_penalty_max accepted.
	MaxAuthPenalty = 5 * time.Minute
)

// AccountConfig is one [[account]] entry: an upstream POP3 account.
type AccountConfig struct {
	// Name identifies the account in logs, metrics and the store's ledger.
	// Required, unique; to rename an account without fetching its mail
	// again, list the old name in PreviousNames.
	Name string `toml:"name"`
	// PreviousNames are earlier names of this account: their ledger (what
	// was fetched, what was deleted upstream) is carried over to Name when
	// popbridge starts, so a rename does not fetch the mailbox again.
	PreviousNames []string `toml:"previous_names"`
	// User is the local user whose mailbox receives this account's mail.
	User string `toml:"user"`
	// Host and Port of the POP3 server. Port defaults to 995 for implicit
	// TLS and 110 otherwise.
	Host string `toml:"host"`
	Port int    `toml:"port"`
	// TLS is implicit (default), starttls or none.
	TLS string `toml:"tls"`
	// TLSCAFile is an extra PEM CA bundle for private upstreams.
	TLSCAFile string `toml:"tls_ca_file"`
	// TLSSkipVerify disables certificate verification (logged as a warning).
	TLSSkipVerify bool `toml:"tls_skip_verify"`
	// Username is the POP3 login name. Required.
	Username string `toml:"username"`
	// Exactly one of Password, PasswordFile, PasswordCommand.
	Password        Secret `toml:"password"`
	PasswordFile    string `toml:"password_file"`
	PasswordCommand string `toml:"password_command"`
	// Auth is user (default), apop, plain or xoauth2 (token from
	// PasswordCommand).
	Auth string `toml:"auth"`
	// MaxMessageSize: larger messages are skipped and reported; 0 = no
	// limit. Default 50MB.
	MaxMessageSize Size `toml:"max_message_size"`
	// PollInterval between polls. Default 5m.
	PollInterval Duration `toml:"poll_interval"`
	// Folder is the mailbox new mail lands in. Default INBOX.
	Folder string `toml:"folder"`
	// LeaveOnServer keeps messages upstream after download. Default true.
	LeaveOnServer bool `toml:"leave_on_server"`
	// DeleteAfter, with LeaveOnServer, deletes upstream this long after
	// download; 0 = never.
	DeleteAfter Duration `toml:"delete_after"`
	// DeleteOnExpunge deletes upstream at the next poll a message expunged
	// locally (with LeaveOnServer).
	DeleteOnExpunge bool `toml:"delete_on_expunge"`
	// Trace logs the account's POP3 exchange (secrets and message bodies
	// left out), for chasing an odd server. Default false.
	Trace bool `toml:"trace"`
}

// DefaultConfig returns a configuration with every default set and no
// users or accounts. DataDir is "./data".
func DefaultConfig() *Config {
	return &Config{
		DataDir: "./data",
		Store:   StoreConfig{PollLease: Duration{Value: DefaultPollLease}},
		IMAP: IMAPConfig{
			Listen:                 DefaultIMAPListen,
			MaxConnections:         DefaultMaxConnections,
			MaxConnectionsPerIP:    DefaultMaxConnectionsPerIP,
			MaxPreLoginConnections: DefaultMaxPreLoginConnections,
			MaxMailboxes:           DefaultMaxMailboxes,
			IdleTimeout:            Duration{Value: DefaultIdleTimeout},
			AppendLimit:            Size{Bytes: DefaultAppendLimit},
			AuthPenaltyBase:        Duration{Value: DefaultAuthPenaltyBase},
			AuthPenaltyMax:         Duration{Value: DefaultAuthPenaltyMax},
		},
		HTTP: HTTPConfig{Listen: DefaultHTTPListen},
		Poller: PollerConfig{
			MaxConnections:        DefaultPollerMaxConnections,
			MaxConnectionsPerHost: DefaultPollerMaxConnectionsPerHost,
		},
		Provider: DefaultProvider(),
	}
}

// pollerCap turns a [poller] cap (0: none) into a poller.Options one (0:
// default, negative: none).
func pollerCap(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// pollerLimits returns the [poller] caps as poller.Options takes them.
func (c PollerConfig) pollerLimits() (max, perHost int) {
	return pollerCap(c.MaxConnections), pollerCap(c.MaxConnectionsPerHost)
}

// DefaultAccount returns an account with every default set; the caller
// fills in Name, User, Host, Username and a secret.
func DefaultAccount() AccountConfig {
	return AccountConfig{
		Port:           995,
		TLS:            TLSImplicit,
		Auth:           AuthUser,
		MaxMessageSize: Size{Bytes: DefaultMaxMessageSize},
		PollInterval:   Duration{Value: DefaultPollInterval},
		Folder:         DefaultFolder,
		LeaveOnServer:  true,
	}
}

// DefaultPort returns the POP3 port for a TLS mode: 995 for implicit TLS,
// 110 otherwise.
func DefaultPort(tlsMode string) int {
	if tlsMode == TLSImplicit {
		return 995
	}
	return 110
}

// baseDir is the directory relative paths are resolved against.
func (c *Config) baseDir() string {
	if c.File == "" {
		return "."
	}
	return filepath.Dir(c.File)
}

// Path resolves p against the directory of the configuration file; absolute
// paths and "" are returned unchanged.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.baseDir(), p)
}

// Account returns the account named name.
func (c *Config) Account(name string) (AccountConfig, bool) {
	for _, a := range c.Accounts {
		if a.Name == name {
			return a, true
		}
	}
	return AccountConfig{}, false
}
