package bridge

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// TestProviderHonoursLoginDelay: a POP server that announces and enforces
// LOGIN-DELAY (RFC 2449) refuses a login sooner than the delay after the
// last one. The IMAP login's check is such a login, so the new user's
// first poll must wait for the delay rather than be refused; each later
// poll likewise. No login may be refused for coming too soon.
func TestProviderHonoursLoginDelay(t *testing.T) {
	const delay = 2 * time.Second
	up := pop3mem.NewServer(pop3mem.WithUser("bob", "bobpw"), pop3mem.WithLoginDelay(delay))
	t.Cleanup(up.Close)
	for i := range 3 {
		up.AddMessage(providerMsg("bob", i))
	}
	dir := t.TempDir()
	c := DefaultConfig()
	c.File = filepath.Join(dir, "config.toml")
	c.DataDir = "data"
	c.IMAP.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.IMAP.TrustedNetworks = []string{"127.0.0.0/8"}
	c.Provider.Host, c.Provider.Port, c.Provider.TLS = up.Host(), up.Port(), TLSNone
	c.Provider.PollInterval = Duration{Value: time.Second} // shorter than the delay: the delay must win
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b := New(c, nil)
	run(t, b)
	e := &providerEnv{t: t, b: b, cfg: c, dir: dir}
	e.mustLogin("bob", "bobpw")
	e.waitInbox("bob", 3)
	// Two more messages reach the store through later polls, each no
	// sooner than the delay after the one before.
	up.AddMessage(providerMsg("bob", 3))
	up.AddMessage(providerMsg("bob", 4))
	e.waitInbox("bob", 5)
	if n := up.LoginDelayRefusals(); n != 0 {
		t.Fatalf("%d logins refused by the server's LOGIN-DELAY (server log: %v)", n, up.Log())
	}
	if got := up.Count("PASS"); got < 2 {
		t.Fatalf("%d POP logins: the IMAP login's check and at least one poll expected", got)
	}
}
