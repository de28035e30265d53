// Package demo runs popbridge's self-contained demo: an in-process POP3
// server (internal/pop3mem) holding a few dozen realistic sample messages,
// and a bridge that fetches them and serves them over IMAP to a real mail
// client, with a new message dropped upstream every so often so that push
// (IDLE) can be watched. It needs no configuration file.
//
// The sample mail comes from [Corpus] and [Fresh]: deterministic for a
// given time, covering plain text, HTML alternatives, attachments, non-ASCII
// headers and bodies, and a thread.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// Demo credentials.
const (
	User     = "demo"
	Password = "demo"
	// Account is the name of the demo's upstream account.
	Account = "demo-upstream"
)

// Options configures Run. Every zero value has the default stated.
type Options struct {
	// Listen is the IMAP address. "": 127.0.0.1:1143.
	Listen string
	// HTTPListen is the health/metrics address. "": none.
	HTTPListen string
	// DataDir keeps the store; "": a temporary directory removed on exit.
	DataDir string
	// Every is how often a new message is dropped upstream. 0: 30s;
	// negative: never.
	Every time.Duration
	// Out receives the settings to type into a mail client. nil: discard.
	Out io.Writer
	// Logger receives the bridge's logs. nil: discard.
	Logger *slog.Logger
	// Started, when set, is called with the running bridge.
	Started func(*bridge.Bridge)
}

// Run starts the sample upstream and the bridge, prints the settings, and
// serves until ctx is cancelled; then it stops both and removes the
// temporary data directory.
func Run(ctx context.Context, opts Options) error {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:1143"
	}
	if opts.Every == 0 {
		opts.Every = 30 * time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dataDir, temp := opts.DataDir, opts.DataDir == ""
	if temp {
		d, err := os.MkdirTemp("", "popbridge-demo-")
		if err != nil {
			return fmt.Errorf("create demo data directory: %w", err)
		}
		dataDir = d
		defer os.RemoveAll(d)
	}

	epoch, err := corpusEpoch(dataDir, temp)
	if err != nil {
		return err
	}
	upstream := pop3mem.NewServer(pop3mem.WithUser(User, "upstream-secret"))
	defer upstream.Close()
	for _, raw := range Corpus(epoch) {
		upstream.AddMessageUIDL(uidl(raw), raw)
	}

	cfg, err := Config(dataDir, opts.Listen, opts.HTTPListen, upstream.Host(), upstream.Port(), "upstream-secret")
	if err != nil {
		return err
	}
	b := bridge.New(cfg, opts.Logger)
	b.ShutdownTimeout = 5 * time.Second
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	select {
	case err := <-errc:
		return fmt.Errorf("start demo: %w", err)
	case <-b.Ready():
	}
	printSettings(opts.Out, b.Addrs(), dataDir, temp, opts.Every, len(upstream.Messages()))
	if opts.Started != nil {
		opts.Started(b)
	}

	var tick <-chan time.Time
	if opts.Every > 0 {
		t := time.NewTicker(opts.Every)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; ; n++ {
		select {
		case err := <-errc:
			return err
		case now := <-tick:
			raw := Fresh(n, now)
			upstream.AddMessageUIDL(uidl(raw), raw)
			b.PollNow(Account)
			fmt.Fprintf(opts.Out, "%s  new message #%d dropped upstream; watch it arrive\n", now.Format("15:04:05"), n)
		}
	}
}

// Config is the demo's configuration: user demo/demo, one account on the
// sample upstream at host:port, polled every minute, mail left upstream.
func Config(dataDir, listen, httpListen, host string, port int, upstreamPassword string) (*bridge.Config, error) {
	hash, err := imapfront.HashPassword(Password)
	if err != nil {
		return nil, fmt.Errorf("hash demo password: %w", err)
	}
	cfg := bridge.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.IMAP.Listen = listen
	cfg.HTTP.Listen = httpListen
	// Loopback may always log in without TLS; on another address the demo
	// still allows it (the password is "demo" anyway).
	cfg.IMAP.AllowPlaintextAuth = !isLoopback(listen)
	cfg.Users = []bridge.UserConfig{{Name: User, PasswordHash: hash}}
	a := bridge.DefaultAccount()
	a.Name, a.User = Account, User
	a.Host, a.Port, a.TLS = host, port, bridge.TLSNone
	a.Username, a.Password = User, bridge.NewSecret(upstreamPassword)
	a.PollInterval = bridge.Duration{Value: time.Minute}
	cfg.Accounts = []bridge.AccountConfig{a}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	return cfg, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func printSettings(w io.Writer, addrs bridge.Addrs, dataDir string, temp bool, every time.Duration, n int) {
	host, port := "127.0.0.1", "1143"
	if a, ok := addrs.IMAP.(*net.TCPAddr); ok {
		host, port = a.IP.String(), fmt.Sprint(a.Port)
		if a.IP.IsUnspecified() {
			host = "127.0.0.1"
		}
	}
	// In a URL an IPv6 address goes in brackets: imap://[::1]:1143/.
	urlHost := net.JoinHostPort(host, port)
	fmt.Fprintf(w, `
popbridge demo is running: %d sample messages are waiting on a built-in POP3
server and are fetched into the IMAP mailbox right away.

Settings for your mail client (incoming mail, IMAP):
  Server:               %s
  Port:                 %s
  Connection security:  None (plain IMAP on this machine; no STARTTLS)
  Authentication:       Normal password
  Username:             %s
  Password:             %s
  (No outgoing/SMTP server is needed: popbridge only receives.)

  Thunderbird: Account Settings > Account Actions > Add Mail Account, enter
    any name, demo@popbridge.example and password demo, then "Configure
    manually": Incoming IMAP, the server and port above, security None,
    Normal password, username demo. Confirm the warning about no encryption.
  mutt:  mutt -f 'imap://demo:demo@%s/INBOX'
  curl:  curl -s 'imap://%s/INBOX;UID=1' -u demo:demo

`, n, host, port, User, Password, urlHost, urlHost)
	if temp {
		fmt.Fprintf(w, "Data: %s (removed on exit; keep it with -data DIR)\n", dataDir)
	} else {
		fmt.Fprintf(w, "Data: %s\n", dataDir)
	}
	if every > 0 {
		fmt.Fprintf(w, "A new message arrives upstream every %s. Press Ctrl-C to stop.\n\n", every)
	} else {
		fmt.Fprintf(w, "Press Ctrl-C to stop.\n\n")
	}
}

// uidl derives a message's upstream UIDL from its content, so that a demo
// restarted on a kept data directory offers the same messages under the
// same UIDLs and popbridge does not fetch them again.
func uidl(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "demo-" + hex.EncodeToString(sum[:12])
}

// corpusEpoch is the time the sample mail is dated from: now for a
// temporary data directory; for a kept one, the time of the first run,
// remembered in dataDir/demo-epoch, so the corpus stays byte-identical.
func corpusEpoch(dataDir string, temp bool) (time.Time, error) {
	now := time.Now().UTC().Truncate(time.Second)
	if temp {
		return now, nil
	}
	path := filepath.Join(dataDir, "demo-epoch")
	if b, err := os.ReadFile(path); err == nil {
		if t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b))); err == nil {
			return t, nil
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return time.Time{}, fmt.Errorf("create demo data directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(now.Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return time.Time{}, fmt.Errorf("write demo epoch: %w", err)
	}
	return now, nil
}
