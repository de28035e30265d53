package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
	"github.com/popbridge/popbridge/store"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// providerEnv is a bridge in provider mode in front of a private Dovecot.
type providerEnv struct {
	t    *testing.T
	dc   *dovecottest.Server
	b    *Bridge
	cfg  *Config
	dir  string // holds the config file, key_file and data_dir
	logs *syncBuffer
}

func providerMsg(user string, i int) []byte {
	return []byte(fmt.Sprintf("Subject: %s %d\nMessage-ID: <%d.%s>\n\nhello %s %d\n", user, i, i, user, user, i))
}

// newProviderEnv starts Dovecot with users (login: password) and a bridge
// whose [provider] points at it over implicit TLS; mod adjusts the config.
func newProviderEnv(t *testing.T, users map[string]string, mod func(c *Config)) *providerEnv {
	t.Helper()
	dc := dovecottest.Start(t, dovecottest.Options{Users: users})
	dir := t.TempDir()
	c := DefaultConfig()
	c.File = filepath.Join(dir, "config.toml")
	c.DataDir = "data"
	c.IMAP.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.Provider.Host = dc.Host
	c.Provider.Port = dc.POP3SPort
	c.Provider.TLSCAFile = dc.CAFile
	c.Provider.PollInterval = Duration{Value: time.Hour}
	// Refused logins are throttled as for [[user]] entries (imapfront's
	// tests show it); here they must not make the test wait.
	c.IMAP.TrustedNetworks = []string{"127.0.0.0/8"}
	if mod != nil {
		mod(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	b := New(c, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	run(t, b)
	return &providerEnv{t: t, dc: dc, b: b, cfg: c, dir: dir, logs: logs}
}

// login logs in over IMAP and returns the client, or the error.
func (e *providerEnv) login(user, password string) (*imapclient.Client, error) {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.b.Addrs().IMAP.String(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	e.t.Cleanup(func() { c.Close() })
	return c, nil
}

// mustLogin logs in or fails the test.
func (e *providerEnv) mustLogin(user, password string) *imapclient.Client {
	e.t.Helper()
	c, err := e.login(user, password)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// refused fails unless logging in as user answers NO with code.
func (e *providerEnv) refused(user, password string, code imap.ResponseCode) {
	e.t.Helper()
	_, err := e.login(user, password)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != code {
		e.t.Fatalf("login %s: %v, want NO [%s]", user, err, code)
	}
}

// inboxCount returns the messages in user's INBOX in the store (0 when the
// user does not exist).
func (e *providerEnv) inboxCount(user string) int {
	e.t.Helper()
	st := e.b.store
	ctx := context.Background()
	u, err := st.UserByName(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, u.ID, "INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := st.Counts(ctx, u.ID, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return int(n.Messages)
}

// waitInbox waits until user's INBOX in the store holds n messages.
func (e *providerEnv) waitInbox(user string, n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d messages in %s's INBOX", n, user), func() bool { return e.inboxCount(user) == n })
}

// selectCount selects INBOX over c and returns its message count.
func selectCount(t *testing.T, c *imapclient.Client) uint32 {
	t.Helper()
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return d.NumMessages
}

// grepTree fails if any file under dir contains one of secrets.
func grepTree(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the clear password %q", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", dir)
	}
}

// TestProviderEncrypted runs provider mode with credentials = "encrypted"
// against a real Dovecot: a wrong password creates nothing; the first
// login provisions the user (special-use mailboxes too) and fetches its
// POP mail at once; users are isolated; [[user]] entries take precedence
// and domains filters; mail is fetched after logout; a password changed
// upstream stops polling (needs login) until the next login with the new
// password; with the POP server down a user verified within auth_cache
// reads their mail while an unverified one gets UNAVAILABLE; no clear
// password is anywhere under the data directory, the key file's
// directory, the logs or /metrics.
func TestProviderEncrypted(t *testing.T) {
	users := map[string]string{
		"carol@example.net": "carol-pw-1",
		"dan@example.net":   "dan-pw-1",
		"erin@example.net":  "erin-pop-pw",
		"frank@other.org":   "frank-pw-1",
		"gina@example.net":  "gina-pw-1",
		"old@example.net":   "old-pw-1",
	}
	e := newProviderEnv(t, users, func(c *Config) {
		c.Users = []UserConfig{{Name: "erin@example.net", PasswordHash: realHash(t)}}
		c.Provider.Domains = []string{"example.net"}
	})
	for i := 1; i <= 3; i++ {
		e.dc.AddMessage(t, "carol@example.net", providerMsg("carol", i))
	}
	for i := 1; i <= 2; i++ {
		e.dc.AddMessage(t, "dan@example.net", providerMsg("dan", i))
	}
	ctx := context.Background()

	// A wrong password: refused, nothing created.
	e.refused("carol@example.net", "wrong", imap.ResponseCodeAuthenticationFailed)
	if _, err := e.b.store.UserByName(ctx, "carol@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user created by a refused login: %v", err)
	}
	if _, err := e.b.store.ProviderUserByName(ctx, "carol@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("provider user recorded by a refused login: %v", err)
	}

	// The first login provisions and fetches at once.
	start := time.Now()
	carol := e.mustLogin("carol@example.net", "carol-pw-1")
	e.waitInbox("carol@example.net", 3)
	t.Logf("first login to 3 messages in INBOX: %v", time.Since(start).Round(time.Millisecond))
	if n := selectCount(t, carol); n != 3 {
		t.Errorf("carol's INBOX has %d messages over IMAP, want 3", n)
	}
	mboxes, err := carol.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	special := map[imap.MailboxAttr]bool{}
	for _, m := range mboxes {
		for _, a := range m.Attrs {
			special[a] = true
		}
	}
	for _, a := range []imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrDrafts, imap.MailboxAttrJunk, imap.MailboxAttrArchive} {
		if !special[a] {
			t.Errorf("provisioned user lacks %s mailbox (list %v)", a, mboxes)
		}
	}

	// Isolation.
	start = time.Now()
	dan := e.mustLogin("dan@example.net", "dan-pw-1")
	t.Logf("dan login: %v", time.Since(start).Round(time.Millisecond))
	e.waitInbox("dan@example.net", 2)
	t.Logf("dan first login to 2 messages in INBOX: %v", time.Since(start).Round(time.Millisecond))
	if n := selectCount(t, dan); n != 2 {
		t.Errorf("dan sees %d messages, want his 2", n)
	}
	if e.inboxCount("carol@example.net") != 3 {
		t.Error("carol's mailbox changed by dan's login")
	}

	// [[user]] precedence, and domains.
	e.refused("erin@example.net", "erin-pop-pw", imap.ResponseCodeAuthenticationFailed)
	e.mustLogin("erin@example.net", "pw")
	e.refused("frank@other.org", "frank-pw-1", imap.ResponseCodeAuthenticationFailed)
	// A local user provider mode did not create (a former [[user]]) is
	// not handed to the holder of the POP account of that name.
	if _, err := e.b.store.EnsureUser(ctx, "old@example.net"); err != nil {
		t.Fatal(err)
	}
	e.refused("old@example.net", "old-pw-1", imap.ResponseCodeAuthenticationFailed)

	// Fetched after logout, with the sealed password.
	if err := carol.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	e.dc.AddMessage(t, "carol@example.net", providerMsg("carol", 4))
	e.b.provider.poller.PollNow(accountName("carol@example.net"))
	e.waitInbox("carol@example.net", 4)

	// Password changed upstream: the background poll is refused, polling
	// stops, the old password no longer logs in, the new one resumes.
	e.dc.SetPassword(t, "carol@example.net", "carol-pw-2")
	e.dc.AddMessage(t, "carol@example.net", providerMsg("carol", 5))
	e.b.provider.poller.PollNow(accountName("carol@example.net"))
	waitFor(t, "carol needs login", func() bool {
		u, err := e.b.store.ProviderUserByName(ctx, "carol@example.net")
		return err == nil && u.State == store.ProviderNeedsLogin && u.Credential == nil
	})
	if e.b.provider.poller.HasAccount(accountName("carol@example.net")) {
		t.Error("carol still polled after a refused login")
	}
	e.refused("carol@example.net", "carol-pw-1", imap.ResponseCodeAuthenticationFailed)
	e.mustLogin("carol@example.net", "carol-pw-2")
	e.waitInbox("carol@example.net", 5)
	if u, err := e.b.store.ProviderUserByName(ctx, "carol@example.net"); err != nil || u.State != store.ProviderActive || u.Credential == nil {
		t.Errorf("carol after the new login: %+v, %v", u, err)
	}

	_, metrics := get(t, "http://"+e.b.Addrs().HTTP.String()+"/metrics")
	for _, want := range []string{`popbridge_provider_users{state="active"} 2`, `popbridge_provider_logins_total{result="rejected"}`,
		`popbridge_provider_polls_total{result="login_refused"} 1`, "popbridge_provider_delivered_messages_total 7"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "carol") || strings.Contains(metrics, "dan@") {
		t.Error("/metrics names provider users")
	}

	// The POP server goes away: dan (verified within auth_cache) reads
	// his mail, gina (never verified) is told to come back later.
	e.dc.Stop()
	dan2 := e.mustLogin("dan@example.net", "dan-pw-1")
	if n := selectCount(t, dan2); n != 2 {
		t.Errorf("dan sees %d messages with the POP server down, want 2", n)
	}
	e.refused("dan@example.net", "not-dans", imap.ResponseCodeUnavailable)
	e.refused("gina@example.net", "gina-pw-1", imap.ResponseCodeUnavailable)

	secrets := []string{"carol-pw-1", "carol-pw-2", "dan-pw-1", "gina-pw-1"}
	grepTree(t, e.dir, secrets...)
	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs hold the password %q", s)
		}
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "provider.key")); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != ProviderKeySize {
		t.Errorf("key_file: %v, %v", fi, err)
	}
}

// TestProviderSession runs credentials = "session": mail is fetched while
// the user has a session and for poll_after_logout after it; then the
// password is forgotten and polling stops until the next login. Nothing
// sealed is stored.
func TestProviderSession(t *testing.T) {
	e := newProviderEnv(t, map[string]string{"hal@example.org": "hal-pw-1"}, func(c *Config) {
		c.Provider.Credentials = CredentialsSession
		c.Provider.PollAfterLogout = Duration{Value: time.Hour}
	})
	fire := make(chan func(), 1)
	e.b.provider.mu.Lock()
	e.b.provider.afterLogout = func(d time.Duration, f func()) interface{ Stop() bool } {
		if d != time.Hour {
			t.Errorf("logout timer %v, want poll_after_logout 1h", d)
		}
		fire <- f
		return time.NewTimer(time.Hour)
	}
	e.b.provider.mu.Unlock()
	const hal, acct = "hal@example.org", ProviderAccountPrefix + "hal@example.org"
	e.dc.AddMessage(t, hal, providerMsg("hal", 1))
	c := e.mustLogin(hal, "hal-pw-1")
	e.waitInbox(hal, 1)
	e.dc.AddMessage(t, hal, providerMsg("hal", 2))
	e.b.provider.poller.PollNow(acct)
	e.waitInbox(hal, 2)
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	var expire func()
	select {
	case expire = <-fire:
	case <-time.After(10 * time.Second):
		t.Fatal("no logout timer after the last session ended")
	}
	// Within poll_after_logout: still polled.
	e.dc.AddMessage(t, hal, providerMsg("hal", 3))
	e.b.provider.poller.PollNow(acct)
	e.waitInbox(hal, 3)
	// poll_after_logout has passed.
	expire()
	if e.b.provider.poller.HasAccount(acct) {
		t.Fatal("still polled after poll_after_logout")
	}
	if _, err := e.b.provider.keptSecret(hal)(context.Background()); err == nil {
		t.Error("password still in memory after poll_after_logout")
	}
	u, err := e.b.store.ProviderUserByName(context.Background(), hal)
	if err != nil || u.Credential != nil {
		t.Errorf("session mode stored a credential: %+v, %v", u, err)
	}
	// The next login polls again.
	e.dc.AddMessage(t, hal, providerMsg("hal", 4))
	e.mustLogin(hal, "hal-pw-1")
	e.waitInbox(hal, 4)
	grepTree(t, e.dir, "hal-pw-1")

	// `popbridge users` beside the running serve.
	rep, err := ProviderUsers(context.Background(), e.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 || rep[0].Name != hal || rep[0].State != store.ProviderActive || rep[0].Messages != 4 ||
		rep[0].Bytes == 0 || rep[0].LastLogin.IsZero() || rep[0].LastPoll.IsZero() || rep[0].LastError != "" {
		t.Errorf("ProviderUsers = %+v", rep)
	}
}
