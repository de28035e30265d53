package bridge

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/authlimit"
	"github.com/popbridge/popbridge/poller"
)

// serverTLS loads the IMAP certificate; nil when TLS is not configured.
// With tls_cert = "auto" the self-signed certificate in dataDir is loaded
// or generated, and described in the returned info (nil otherwise).
func (c *Config) serverTLS(dataDir string, log *slog.Logger) (*tls.Config, *AutoCertInfo, error) {
	if !c.IMAP.TLSEnabled() {
		return nil, nil, nil
	}
	var info *AutoCertInfo
	var cert tls.Certificate
	var err error
	if c.IMAP.TLSAuto() {
		var ai AutoCertInfo
		cert, ai, err = LoadAutoCert(dataDir, c.autoCertNames(), log)
		info = &ai
	} else {
		cert, err = tls.LoadX509KeyPair(c.Path(c.IMAP.TLSCert), c.Path(c.IMAP.TLSKey))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load imap certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, info, nil
}

// logAutoCert logs the fingerprint of the self-signed certificate, so that
// users can pin it in their mail clients.
func logAutoCert(log *slog.Logger, info *AutoCertInfo) {
	if info == nil {
		return
	}
	msg := "imap tls: using the self-signed certificate; pin this fingerprint in mail clients"
	if info.Created {
		msg = "imap tls: generated a self-signed certificate; pin this fingerprint in mail clients"
	}
	log.Info(msg, "sha256_fingerprint", info.Fingerprint, "cert", info.CertFile,
		"names", strings.Join(info.Names, ","), "not_after", info.NotAfter.Format(time.DateOnly))
}

// imapLimits returns the imapfront settings of the [imap] limits: 0 (no
// cap) in the file is negative for imapfront.
func (c *Config) imapLimits(o *imapfront.Options) {
	noCap := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	o.MaxConns = noCap(c.IMAP.MaxConnections)
	o.MaxConnsPerAddr = noCap(c.IMAP.MaxConnectionsPerIP)
	o.MaxPreLoginConns = noCap(c.IMAP.MaxPreLoginConnections)
	o.MaxMailboxes = noCap(c.IMAP.MaxMailboxes)
	o.IdleTimeout = c.IMAP.IdleTimeout.Value
	o.AppendLimit = c.IMAP.AppendLimit.Bytes
	var trusted []netip.Prefix
	for _, n := range c.IMAP.TrustedNetworks {
		if p, err := parseNetwork(n); err == nil {
			trusted = append(trusted, p)
		}
	}
	o.AuthLimiter = authlimit.New(authlimit.Options{
		Base:    c.IMAP.AuthPenaltyBase.Value,
		Max:     c.IMAP.AuthPenaltyMax.Value,
		Trusted: trusted,
	})
}

// imapUsers converts the [[user]] entries for imapfront.
func (c *Config) imapUsers() []imapfront.User {
	out := make([]imapfront.User, 0, len(c.Users))
	for _, u := range c.Users {
		out = append(out, imapfront.User{Name: u.Name, PasswordHash: u.PasswordHash, Trace: u.Trace})
	}
	return out
}

// pollerAccounts converts the [[account]] entries for the poller.
func (c *Config) pollerAccounts() []poller.Account {
	out := make([]poller.Account, 0, len(c.Accounts))
	for _, a := range c.Accounts {
		out = append(out, c.pollerAccount(a))
	}
	return out
}

func (c *Config) pollerAccount(a AccountConfig) poller.Account {
	return poller.Account{
		Name:            a.Name,
		User:            a.User,
		Host:            a.Host,
		Port:            a.Port,
		TLS:             a.TLS,
		TLSCAFile:       c.Path(a.TLSCAFile),
		TLSSkipVerify:   a.TLSSkipVerify,
		Username:        a.Username,
		Secret:          c.SecretFunc(a),
		Auth:            a.Auth,
		MaxMessageSize:  a.MaxMessageSize.Bytes,
		PollInterval:    a.PollInterval.Value,
		Folder:          a.Folder,
		LeaveOnServer:   a.LeaveOnServer,
		DeleteAfter:     a.DeleteAfter.Value,
		DeleteOnExpunge: a.DeleteOnExpunge,
		Trace:           a.Trace,
	}
}
