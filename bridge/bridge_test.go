package bridge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/testpki"
	"github.com/popbridge/popbridge/poller"
)

var (
	hashOnce sync.Once
	pwHash   string
)

func realHash(t testing.TB) string {
	hashOnce.Do(func() {
		h, err := imapfront.HashPassword("pw")
		if err != nil {
			panic(err)
		}
		pwHash = h
	})
	return pwHash
}

func upstream(t *testing.T, n int) *pop3mem.Server {
	t.Helper()
	s := pop3mem.NewServer(pop3mem.WithUser("bob", "bobpw"))
	t.Cleanup(s.Close)
	for i := 1; i <= n; i++ {
		s.AddMessage([]byte(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n", i, i, i)))
	}
	return s
}

// testConfig is a valid config on :0 ports with user u and one account per upstream.
func testConfig(t *testing.T, ups ...*pop3mem.Server) *Config {
	t.Helper()
	c := DefaultConfig()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.IMAP.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.Users = []UserConfig{{Name: "u", PasswordHash: realHash(t)}}
	for i, up := range ups {
		a := DefaultAccount()
		a.Name, a.User, a.Host, a.Port, a.TLS = fmt.Sprintf("acct%d", i+1), "u", up.Host(), up.Port(), TLSNone
		a.Username, a.Password = "bob", NewSecret("bobpw")
		a.PollInterval = Duration{Value: time.Hour}
		c.Accounts = append(c.Accounts, a)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// run starts b and returns a stop function that cancels and returns Run's error.
func run(t *testing.T, b *Bridge) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("bridge did not become ready")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthAndMetrics(t *testing.T) {
	up := upstream(t, 3)
	b := New(testConfig(t, up), nil)
	stop := run(t, b)
	base := "http://" + b.Addrs().HTTP.String()

	c, err := imapclient.DialInsecure(b.Addrs().IMAP.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first poll", func() bool {
		_, m := get(t, base+"/metrics")
		return strings.Contains(m, `popbridge_polls_total{account="acct1",result="ok"} 1`)
	})
	code, body := get(t, base+"/healthz")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || !h.OK || !h.Store.OK {
		t.Fatalf("healthz %d %s (%v)", code, body, err)
	}
	if len(h.Accounts) != 1 || h.Accounts[0].Account != "acct1" || h.Accounts[0].Stuck || h.Accounts[0].State != "idle" {
		t.Errorf("healthz accounts: %+v", h.Accounts)
	}
	_, m := get(t, base+"/metrics")
	for _, want := range []string{
		`popbridge_delivered_messages_total{account="acct1"} 3`,
		`popbridge_imap_connections_total{listener="imap"} 1`,
		`popbridge_imap_connections_active{listener="imap"} 1`,
		`popbridge_account_failing{account="acct1"} 0`,
		`popbridge_account_identity_anomalies_total{account="acct1",kind="renumbered"} 0`,
		`popbridge_account_identity_anomalies_total{account="acct1",kind="uidl_reused"} 0`,
		`popbridge_account_identity_anomalies_total{account="acct1",kind="twins"} 0`,
		`popbridge_account_identity_anomalies_total{account="acct1",kind="unproven"} 0`,
		"popbridge_poller_connections_open 0",
		"popbridge_poller_waiting_accounts 0",
		`go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// One series per fact: the delivered counters above, no second copy.
	for _, dup := range []string{"popbridge_account_fetched_messages_total", "popbridge_account_fetched_bytes_total", "popbridge_up_seconds"} {
		if strings.Contains(m, dup) {
			t.Errorf("metrics still export %s", dup)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func TestHealthReportsUnwritableStore(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permissions")
	}
	b := New(testConfig(t), nil)
	run(t, b)
	if h := b.Health(context.Background()); !h.OK {
		t.Fatalf("healthy bridge reported %+v", h)
	}
	// Close the store under the bridge: the check must notice.
	b.mu.Lock()
	st := b.store
	b.mu.Unlock()
	st.Close()
	h := b.Health(context.Background())
	if h.OK || h.Store.OK || h.Store.Error == "" {
		t.Errorf("closed store reported healthy: %+v", h)
	}
}

func TestStartFailureRollsBack(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.HTTP.Listen = busy.Addr().String() // the last part to start fails
	before := runtime.NumGoroutine()
	b := New(cfg, nil)
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start http") {
		t.Fatalf("Run = %v, want a start http error", err)
	}
	// Everything started before was stopped: the IMAP port is free again
	// and the store can be opened by someone else.
	if a := b.Addrs().IMAP; a != nil {
		ln, err := net.Listen("tcp", a.String())
		if err != nil {
			t.Errorf("IMAP listener left open: %v", err)
		} else {
			ln.Close()
		}
	}
	b2 := New(cfg, nil)
	cfg.HTTP.Listen = "127.0.0.1:0"
	run(t, b2)
	waitFor(t, "goroutines of the failed run to end", func() bool { return runtime.NumGoroutine() <= before+40 })
}

func TestReload(t *testing.T) {
	up1, up2 := upstream(t, 2), upstream(t, 3)
	cfg := testConfig(t, up1)
	b := New(cfg, nil)
	run(t, b)
	ctx := context.Background()

	// Invalid: refused, nothing changes.
	bad := testConfig(t, up1)
	bad.Accounts[0].TLS = "ssl"
	if _, err := b.Reload(ctx, bad); err == nil || !strings.Contains(err.Error(), `tls: "ssl" is not one of`) {
		t.Fatalf("bad reload: %v", err)
	}
	// A certificate that does not load: refused.
	badTLS := testConfig(t, up1)
	badTLS.IMAP.TLSCert, badTLS.IMAP.TLSKey = "/nonexistent.crt", "/nonexistent.key"
	if _, err := b.Reload(ctx, badTLS); err == nil {
		t.Fatal("reload with a missing certificate accepted")
	}
	if b.Config() != cfg {
		t.Fatal("running config replaced by a refused reload")
	}

	// Valid: a second account and user, a certificate, and a new listen
	// address (needs restart, kept).
	pki := testpki.New(t)
	next := testConfig(t, up1, up2)
	next.DataDir = cfg.DataDir
	next.IMAP.Listen = "127.0.0.1:1"
	next.IMAP.TLSCert, next.IMAP.TLSKey = pki.CertFile, pki.KeyFile
	next.Users = append(next.Users, UserConfig{Name: "v", PasswordHash: realHash(t)})
	next.Poller = PollerConfig{MaxConnections: 7, MaxConnectionsPerHost: 0}
	if m, ph := b.poller.ConnectionLimits(); m != DefaultPollerMaxConnections || ph != DefaultPollerMaxConnectionsPerHost {
		t.Fatalf("connection caps before reload %d/%d, want the defaults", m, ph)
	}
	res, err := b.Reload(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.AccountsAdded, res.UsersAdded, res.NeedRestart) != "[acct2] [v] [imap.listen]" {
		t.Errorf("reload result %+v", res)
	}
	if m, ph := b.poller.ConnectionLimits(); m != 7 || ph != 0 {
		t.Errorf("connection caps after reload %d/%d, want 7 and none (they change live)", m, ph)
	}
	if got := b.Config().IMAP.Listen; got != "127.0.0.1:0" {
		t.Errorf("listen address changed live to %q", got)
	}
	// The new user can log in; STARTTLS is now offered on the running listener.
	c, err := imapclient.DialInsecure(b.Addrs().IMAP.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("v", "pw").Wait(); err != nil {
		t.Errorf("new user cannot log in: %v", err)
	}
	c2, err := imapclient.DialStartTLS(b.Addrs().IMAP.String(), &imapclient.Options{TLSConfig: pki.ClientConfig("127.0.0.1")})
	if err != nil {
		t.Errorf("STARTTLS after reload: %v", err)
	} else {
		c2.Close()
	}
	waitFor(t, "second account polled", func() bool {
		for _, s := range b.Status() {
			if s.Account == "acct2" && !s.LastSuccess.IsZero() {
				return true
			}
		}
		return false
	})
}

func TestCheckLogins(t *testing.T) {
	cfg := testConfig(t, upstream(t, 0), upstream(t, 0))
	cfg.Accounts[1].Password = NewSecret("wrong")
	res := Check(context.Background(), cfg, nil)
	if len(res) != 2 || res[0].Err != nil || res[1].Err == nil {
		t.Fatalf("check results %+v", res)
	}
	if strings.Contains(res[1].Err.Error(), "wrong") || !strings.Contains(res[1].Err.Error(), "acct2") {
		t.Errorf("error %q should name the account and not the password", res[1].Err)
	}
}

func TestAccountHealthStuck(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		s     poller.Status
		stuck bool
	}{
		{"idle, next poll ahead", poller.Status{NextPoll: now.Add(time.Minute)}, false},
		{"never scheduled", poller.Status{}, false},
		{"polling briefly", poller.Status{Polling: true, LastAttempt: now.Add(-time.Minute)}, false},
		{"polling too long", poller.Status{Polling: true, LastAttempt: now.Add(-StuckAfter - time.Second)}, true},
		{"next poll slightly overdue", poller.Status{NextPoll: now.Add(-time.Minute)}, false},
		{"next poll long overdue", poller.Status{NextPoll: now.Add(-StuckAfter - time.Second)}, true},
		{"failing upstream is not stuck", poller.Status{LastError: "login refused", NextPoll: now.Add(time.Hour)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := accountHealth(tt.s, now).Stuck; got != tt.stuck {
				t.Errorf("stuck = %v, want %v", got, tt.stuck)
			}
		})
	}
}

func TestImplicitTLSListener(t *testing.T) {
	pki := testpki.New(t)
	cfg := testConfig(t)
	cfg.IMAP.ListenTLS = "127.0.0.1:0"
	cfg.IMAP.TLSCert, cfg.IMAP.TLSKey = pki.CertFile, pki.KeyFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := New(cfg, nil)
	run(t, b)
	c, err := imapclient.DialTLS(b.Addrs().IMAPTLS.String(), &imapclient.Options{TLSConfig: pki.ClientConfig("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u", "pw").Wait(); err != nil {
		t.Fatalf("login over implicit TLS: %v", err)
	}
	// TLS 1.1 is refused.
	old := pki.ClientConfig("127.0.0.1")
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	conn, err := tls.Dial("tcp", b.Addrs().IMAPTLS.String(), old)
	if err == nil {
		conn.Close()
		t.Error("TLS 1.1 handshake accepted")
	}
}

// TestCheckKeepsConnectionCaps: popbridge check tries every login at once,
// but within [poller] max_connections: 12 accounts on one server with a cap
// of 3 never have more than 3 sessions open there, and all succeed.
func TestCheckKeepsConnectionCaps(t *testing.T) {
	// Twelve upstreams (one mailbox each: two accounts on one mailbox are
	// refused) counted together.
	var sessions pop3mem.SessionCounter
	ups := make([]*pop3mem.Server, 12)
	for i := range ups {
		ups[i] = pop3mem.NewServer(pop3mem.WithUser("bob", "bobpw"), pop3mem.WithSessionCounter(&sessions))
		t.Cleanup(ups[i].Close)
	}
	cfg := testConfig(t, ups...)
	cfg.Poller.MaxConnections = 3
	for i, r := range Check(context.Background(), cfg, nil) {
		if r.Err != nil {
			t.Errorf("account %d: %v", i, r.Err)
		}
	}
	if n := sessions.Max(); n > 3 || n < 1 {
		t.Errorf("%d sessions at once, cap 3", n)
	}
	if n := sessions.Total(); n != 12 {
		t.Errorf("%d logins checked, want 12", n)
	}
}
