package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapfront"
)

func (l *syncBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func TestIMAPLimitsMapping(t *testing.T) {
	tests := []struct {
		name                        string
		conns, perIP, mboxes        int
		wantConns, wantPer, wantMbx int
	}{
		{"defaults", DefaultMaxConnections, DefaultMaxConnectionsPerIP, DefaultMaxMailboxes, 1000, 20, 10000},
		{"zero means no cap", 0, 0, 0, -1, -1, -1},
		{"explicit", 5, 2, 7, 5, 2, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.IMAP.MaxConnections, c.IMAP.MaxConnectionsPerIP, c.IMAP.MaxMailboxes = tt.conns, tt.perIP, tt.mboxes
			var o imapfront.Options
			c.imapLimits(&o)
			if o.MaxConns != tt.wantConns || o.MaxConnsPerAddr != tt.wantPer || o.MaxMailboxes != tt.wantMbx {
				t.Errorf("caps %d/%d/%d, want %d/%d/%d", o.MaxConns, o.MaxConnsPerAddr, o.MaxMailboxes, tt.wantConns, tt.wantPer, tt.wantMbx)
			}
			if o.MaxPreLoginConns != 250 {
				t.Errorf("pre-login cap %d, want the default 250", o.MaxPreLoginConns)
			}
			if o.IdleTimeout != 35*time.Minute || o.AppendLimit != 50<<20 || o.AuthLimiter == nil {
				t.Errorf("idle %v append %d limiter %v", o.IdleTimeout, o.AppendLimit, o.AuthLimiter)
			}
		})
	}

	// The limiter follows auth_penalty_base/max and trusted_networks.
	c := DefaultConfig()
	c.IMAP.AuthPenaltyBase, c.IMAP.AuthPenaltyMax = Duration{Value: 3 * time.Second}, Duration{Value: 5 * time.Second}
	c.IMAP.TrustedNetworks = []string{"192.0.2.0/24", "2001:db8::1"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var o imapfront.Options
	c.imapLimits(&o)
	lim := o.AuthLimiter
	stranger := netip.MustParseAddr("198.51.100.7")
	lim.Failure(stranger, "x", "fp1")
	if d := lim.Delay(stranger, "y"); d <= 2*time.Second || d > 3*time.Second {
		t.Errorf("delay after one failure %v, want auth_penalty_base 3s", d)
	}
	for i := range 5 {
		lim.Failure(stranger, "x", fmt.Sprint("fp", i+2))
	}
	if d := lim.Delay(stranger, "y"); d <= 4*time.Second || d > 5*time.Second {
		t.Errorf("delay after six failures %v, want auth_penalty_max 5s", d)
	}
	for _, a := range []string{"192.0.2.99", "2001:db8::1"} {
		addr := netip.MustParseAddr(a)
		lim.Failure(addr, "z", "fp")
		if d := lim.Delay(addr, "other"); d != 0 {
			t.Errorf("trusted %s delayed %v", a, d)
		}
	}
}

// TestIMAPLimitsLive runs a bridge with small caps and checks them on the
// wire: APPENDLIMIT as configured, a connection over max_connections gets
// BYE, a mailbox over max_mailboxes is refused.
func TestIMAPLimitsLive(t *testing.T) {
	cfg := testConfig(t)
	cfg.IMAP.MaxConnections = 2
	cfg.IMAP.MaxConnectionsPerIP = 2
	cfg.IMAP.MaxMailboxes = 12
	cfg.IMAP.AppendLimit = Size{Bytes: 100_000}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := New(cfg, nil)
	run(t, b)
	addr := b.Addrs().IMAP.String()

	c1, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := c1.Login("u", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if lim, ok := c1.Caps().AppendLimit(); !ok || lim == nil || *lim != 100_000 {
		t.Errorf("APPENDLIMIT %v (advertised %v), want 100000", lim, ok)
	}
	var refused error
	for i := range 15 {
		if err := c1.Create(fmt.Sprintf("box%d", i), nil).Wait(); err != nil {
			refused = err
			break
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "LIMIT") {
		t.Errorf("no CREATE refused with [LIMIT] at max_mailboxes = 12: %v", refused)
	}
	if boxes, err := c1.List("", "*", nil).Collect(); err != nil || len(boxes) != 12 {
		t.Errorf("%d mailboxes (%v), want max_mailboxes = 12", len(boxes), err)
	}

	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	if line, _ := br2.ReadString('\n'); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("second connection greeting %q", line)
	}
	// Logged in: a connection that has not would give way to the third.
	io.WriteString(c2, "a LOGIN u pw\r\n")
	if line, _ := br2.ReadString('\n'); !strings.HasPrefix(line, "a OK") {
		t.Fatalf("second connection login %q", line)
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(c3).ReadString('\n'); line != "* BYE Too many connections\r\n" {
		t.Errorf("third connection over max_connections = 2 got %q", line)
	}
}

func TestReloadKeepsIMAPLimits(t *testing.T) {
	cfg := testConfig(t)
	b := New(cfg, nil)
	run(t, b)
	next := testConfig(t)
	next.DataDir = cfg.DataDir
	next.IMAP.MaxConnections = 50
	next.IMAP.IdleTimeout = Duration{Value: time.Hour}
	next.IMAP.TrustedNetworks = []string{"10.0.0.0/8"}
	res, err := b.Reload(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"imap.max_connections", "imap.idle_timeout", "imap.trusted_networks"}
	if !slices.Equal(res.NeedRestart, want) {
		t.Errorf("NeedRestart %v, want %v", res.NeedRestart, want)
	}
	got := b.Config().IMAP
	if got.MaxConnections != DefaultMaxConnections || got.IdleTimeout.Value != DefaultIdleTimeout || got.TrustedNetworks != nil {
		t.Errorf("running limits changed by reload: %+v", got)
	}
}

var fingerprintRE = regexp.MustCompile(`sha256_fingerprint=([0-9A-F:]{95})`)

// autoTLSConfig returns a client TLS configuration trusting exactly the
// self-signed certificate in dir.
func autoTLSConfig(t *testing.T, dir, serverName string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(dir, AutoCertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("auto-cert.pem holds no certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

// TestAutoCert: the first start generates the self-signed certificate
// (files 0600, fingerprint logged), STARTTLS and implicit TLS verify against
// it for localhost and 127.0.0.1, and a second start reuses it unchanged.
func TestAutoCert(t *testing.T) {
	cfg := testConfig(t)
	cfg.IMAP.TLSCert, cfg.IMAP.TLSKey = AutoCert, ""
	cfg.IMAP.ListenTLS = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := cfg.Path(cfg.DataDir)

	var logs syncBuffer
	b := New(cfg, logs.logger())
	stop := run(t, b)
	m := fingerprintRE.FindStringSubmatch(logs.String())
	if m == nil || !strings.Contains(logs.String(), "generated a self-signed certificate") {
		t.Fatalf("no fingerprint logged at first start:\n%s", logs.String())
	}
	fp1 := m[1]
	certPEM, err := os.ReadFile(filepath.Join(dir, AutoCertFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{AutoCertFile, AutoKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", f, err, fi.Mode().Perm())
		}
	}

	connect := func(b *Bridge) {
		t.Helper()
		// The listeners are IPv4; "::1" is checked in the names below.
		for _, name := range []string{"localhost", "127.0.0.1"} {
			conf := autoTLSConfig(t, dir, name)
			var fp string
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				fp = Fingerprint(cs.PeerCertificates[0].Raw)
				return nil
			}
			c, err := imapclient.DialStartTLS(b.Addrs().IMAP.String(), &imapclient.Options{TLSConfig: conf})
			if err != nil {
				t.Fatalf("STARTTLS as %s: %v", name, err)
			}
			if err := c.Login("u", "pw").Wait(); err != nil {
				t.Errorf("login after STARTTLS: %v", err)
			}
			c.Close()
			if fp != fp1 {
				t.Errorf("STARTTLS certificate fingerprint %s, logged %s", fp, fp1)
			}
			c, err = imapclient.DialTLS(b.Addrs().IMAPTLS.String(), &imapclient.Options{TLSConfig: conf})
			if err != nil {
				t.Fatalf("implicit TLS as %s: %v", name, err)
			}
			if err := c.Login("u", "pw").Wait(); err != nil {
				t.Errorf("login over implicit TLS: %v", err)
			}
			c.Close()
		}
	}
	connect(b)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Second start: same files, same fingerprint, nothing generated.
	logs2 := syncBuffer{}
	cfg2 := *cfg
	b2 := New(&cfg2, logs2.logger())
	run(t, b2)
	m = fingerprintRE.FindStringSubmatch(logs2.String())
	if m == nil || m[1] != fp1 || strings.Contains(logs2.String(), "generated") {
		t.Fatalf("second start did not reuse the certificate %s:\n%s", fp1, logs2.String())
	}
	again, err := os.ReadFile(filepath.Join(dir, AutoCertFile))
	if err != nil || !bytes.Equal(again, certPEM) {
		t.Errorf("certificate file rewritten at second start (%v)", err)
	}
	connect(b2)

	info, err := cfg.AutoCertificate(nil)
	if err != nil || info.Created || info.Fingerprint != fp1 {
		t.Errorf("AutoCertificate = %+v, %v", info, err)
	}
	for _, n := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(info.Names, n) {
			t.Errorf("certificate names %v lack %s", info.Names, n)
		}
	}
	if d := time.Until(info.NotAfter); d < AutoCertValidity-48*time.Hour || d > AutoCertValidity {
		t.Errorf("validity ends in %v, want about 10 years", d)
	}
}

// TestAutoCertReplacesBrokenPair: a pair that does not load (a crash
// between the two writes) is replaced with a warning.
func TestAutoCertReplacesBrokenPair(t *testing.T) {
	dir := t.TempDir()
	_, first, err := LoadAutoCert(dir, []string{"localhost"}, nil)
	if err != nil || !first.Created {
		t.Fatalf("first: %+v, %v", first, err)
	}
	if err := os.WriteFile(first.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	_, second, err := LoadAutoCert(dir, []string{"localhost"}, logs.logger())
	if err != nil || !second.Created || second.Fingerprint == first.Fingerprint {
		t.Fatalf("broken pair not replaced: %+v, %v", second, err)
	}
	if !strings.Contains(logs.String(), "unusable") {
		t.Errorf("no warning: %s", logs.String())
	}
}

// TestDataPermsWarning starts a bridge on a data directory others can read
// and checks the warning names the path, the mode and the chmod; then the
// same for a database file.
func TestDataPermsWarning(t *testing.T) {
	cfg := testConfig(t)
	dir := cfg.Path(cfg.DataDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var logs syncBuffer
	stop := run(t, New(cfg, logs.logger()))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("path=%s mode=0755 fix=\"chmod 700 %s\"", dir, dir)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("no warning with %q:\n%s", want, logs.String())
	}
	if strings.Contains(logs.String(), "popbridge.db ") {
		t.Errorf("warning for a 0600 database:\n%s", logs.String())
	}

	// Directory fixed, database widened.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "popbridge.db")
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	probs, err := CheckDataPerms(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 1 || probs[0].Path != db || probs[0].Mode != 0o644 || probs[0].Fix != "chmod 600 "+db {
		t.Errorf("CheckDataPerms = %+v", probs)
	}

	// Message packs and their directory are checked too.
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	// (No mail was stored, so the pack is made here.)
	blobs := filepath.Join(dir, "blobs")
	packs := []string{filepath.Join(blobs, "pack-00000001")}
	if err := os.WriteFile(packs[0], nil, 0o600); err != nil {
		t.Fatalf("the store made no blobs directory: %v", err)
	}
	if err := os.Chmod(blobs, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(packs[0], 0o640); err != nil {
		t.Fatal(err)
	}
	probs, err = CheckDataPerms(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 2 || probs[0].Path != blobs || probs[0].Fix != "chmod 700 "+blobs ||
		probs[1].Path != packs[0] || probs[1].Mode != 0o640 || probs[1].Fix != "chmod 600 "+packs[0] {
		t.Errorf("CheckDataPerms with wide packs = %+v", probs)
	}
	for _, p := range []string{blobs, packs[0], db} {
		mode := os.FileMode(0o600)
		if p == blobs {
			mode = 0o700
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}

	logs2 := syncBuffer{}
	run(t, New(cfg, logs2.logger()))
	if !strings.Contains(logs2.String(), fmt.Sprintf("path=%s mode=0644 fix=\"chmod 600 %s\"", db, db)) {
		t.Errorf("no warning for the database:\n%s", logs2.String())
	}
	if strings.Contains(logs2.String(), "chmod 700") {
		t.Errorf("warning for a 0700 directory:\n%s", logs2.String())
	}
}

// TestIMAPCommandMetrics runs a few commands and reads them back from
// /metrics: counts by name, UID variants apart, failures counted.
func TestIMAPCommandMetrics(t *testing.T) {
	up := upstream(t, 2)
	b := New(testConfig(t, up), nil)
	run(t, b)
	base := "http://" + b.Addrs().HTTP.String()
	waitFor(t, "first poll", func() bool {
		_, m := get(t, base+"/metrics")
		return strings.Contains(m, `popbridge_delivered_messages_total{account="acct1"} 2`)
	})
	c, err := imapclient.DialInsecure(b.Addrs().IMAP.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Nonexistent", nil).Wait(); err == nil {
		t.Fatal("SELECT of a missing mailbox succeeded")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	opts := &imap.FetchOptions{Flags: true, Envelope: true}
	if _, err := c.Fetch(imap.SeqSetNum(1, 2), opts).Collect(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Fetch(imap.UIDSetNum(1), opts).Collect(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	_, m := get(t, base+"/metrics")
	for _, want := range []string{
		`popbridge_imap_command_seconds_count{command="LOGIN"} 1`,
		`popbridge_imap_command_seconds_count{command="SELECT"} 3`,
		`popbridge_imap_command_seconds_count{command="FETCH"} 1`,
		`popbridge_imap_command_seconds_count{command="UID FETCH"} 2`,
		`popbridge_imap_command_seconds_bucket{command="UID FETCH",le="+Inf"} 2`,
		`popbridge_imap_command_errors_total{command="SELECT"} 1`,
		"popbridge_imap_serverbug_total 0", // none of the above is a server bug
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(m, `command="NOOP"`) || strings.Contains(m, `popbridge_imap_command_errors_total{command="LOGIN"}`) {
		t.Errorf("unexpected command series:\n%s", grepLines(m, "popbridge_imap_command"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPreLoginConnectionsValidated: a negative max_prelogin_connections is
// refused with the key and its line (a value above max_connections is
// taken as max_connections).
func TestPreLoginConnectionsValidated(t *testing.T) {
	for _, tt := range []struct {
		value string
		kind  error
	}{
		{"-1", ErrInvalidValue},
	} {
		path := filepath.Join(t.TempDir(), "popbridge.toml")
		conf := "data_dir = \"" + t.TempDir() + "\"\n[imap]\nmax_connections = 10\nmax_prelogin_connections = " + tt.value + "\n"
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, nil)
		var found bool
		for _, ce := range ConfigErrors(err) {
			if errors.Is(ce, tt.kind) && strings.Contains(ce.Error(), "max_prelogin_connections") {
				found = true
				if ce.Line != 4 {
					t.Errorf("%s: line %d, want 4", ce, ce.Line)
				}
			}
		}
		if !found {
			t.Errorf("max_prelogin_connections = %s: %v, want %v naming the key", tt.value, err, tt.kind)
		}
	}
}
