// Package bridge wires popbridge together: it loads and validates the TOML
// configuration, and runs the store, the POP3 poller, the IMAP front end and
// the HTTP health/metrics endpoint as one service.
//
// # Configuration
//
// A [Config] is loaded in three steps, as litestream does: [DefaultConfig]
// supplies every default, [Parse] decodes the file over it (refusing unknown
// keys, reporting syntax and type errors with file and line), and
// [Config.Validate] checks every value. [Load] does all three. Every problem
// is a *[ConfigError] naming file, line, section, field and what would be
// valid; all problems of a file are reported together with errors.Join.
// Secrets are [Secret] values that never print; password_file and
// password_command are read or run at use time, never at load.
//
// # Lifecycle
//
// [New] has no side effects. [Bridge.Run] first builds every part: it
// opens the store, makes sure every configured user exists, creates the
// poller and the IMAP server and binds the IMAP and HTTP listeners. If any
// of that fails, what was opened is closed in reverse order and Run
// returns: nothing was started, no upstream was polled, no connection
// served. Only then does it start, in order, the IMAP front end, the poller
// and the HTTP server, none of which can fail to start. When the context passed to Run is
// cancelled, shutdown has two phases: first no new work (polls stop being
// scheduled, IMAP listeners close), then in-flight work (a RETR→commit
// delivery, an IMAP command) may finish until [Options.ShutdownTimeout];
// IMAP clients get BYE; the store closes last. Stop errors are joined.
//
// [Bridge.Reload] applies a new configuration without dropping IMAP
// sessions: it validates first and keeps the running configuration when the
// new one is bad. Users, accounts and the TLS certificate are applied live;
// data_dir, listen addresses, allow_plaintext_auth and the [imap] limits
// (max_connections, max_connections_per_ip, max_prelogin_connections,
// max_mailboxes, idle_timeout,
// append_limit, auth_penalty_base, auth_penalty_max, trusted_networks:
// imapfront takes them at creation only) need a restart (a reload keeps
// their running values and lists them in [ReloadResult]).
//
// # Hardening
//
// The [imap] limits map onto imapfront.Options (0 in the file means no cap,
// negative for imapfront); auth_penalty_* and trusted_networks make the one
// authlimit.Limiter the IMAP server uses. tls_cert = "auto" makes
// [LoadAutoCert] generate a self-signed ECDSA P-256 certificate into
// data_dir once and reuse it; its SHA-256 fingerprint is logged at every
// start and reload. At start, [CheckDataPerms] finds data files group or
// others can access, and each is logged as a warning with the chmod that
// fixes it. IMAP command latency comes from imapfront's OnCommand hook.
//
// # Operations
//
// The HTTP endpoint serves /healthz ([Bridge.Health]: store answers and its
// directory takes an fsynced write; no poller stuck for [StuckAfter]) and
// /metrics from the bridge's own Prometheus registry: poll results and
// deliveries observed on the way from the poller to the store, per-account
// state from poller.Status at scrape time, IMAP connections counted on the
// listeners. [Check], [PollOnce] and [ReadStatus] are the one-shot
// operations behind `popbridge check`, `poll` and `status`.
//
// Invariants: the store is the only shared state; the poller never calls
// imapfront (the bridge passes the poller to imapfront as its Hinter); every
// goroutine the bridge starts is stopped and waited for before Run returns.
package bridge
