package poller

import (
	"flag"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
)

var capsAccounts = flag.Int("caps.accounts", 200, "accounts in TestDovecotConnectionCaps (1000 for the full run)")

// TestDovecotConnectionCaps: -caps.accounts accounts (200 by default, 1,000
// with -caps.accounts=1000), one Dovecot user each, all due at the same
// instant, reach a real Dovecot POP3 server through two counting proxies
// (two host:ports, as two upstream servers) with max_connections 15 and
// max_connections_per_host 10. Counted where the sessions arrive: never
// more than 10 through one proxy, never more than 15 through both, the
// total cap reached, and every account's message fetched (Dovecot sheds
// nothing).
func TestDovecotConnectionCaps(t *testing.T) {
	const maxConns, perHost = 15, 10
	n := *capsAccounts
	users := dovecottest.ManyUsers("cap", n)
	dc := dovecottest.Start(t, dovecottest.Options{Users: users})
	for i := range n {
		dc.AddMessage(t, fmt.Sprintf("cap%04d", i), []byte(testMessage(i)))
	}
	var both pop3mem.SessionCounter
	target := net.JoinHostPort(dc.Host, strconv.Itoa(dc.POP3Port))
	var proxies []*pop3mem.Proxy
	var addrs []Account
	for range 2 {
		px := pop3mem.NewProxy(target, &both)
		t.Cleanup(px.Close)
		proxies = append(proxies, px)
		addrs = append(addrs, Account{Host: px.Host(), Port: px.Port(), TLS: "none", Auth: "user"})
	}
	// manyAccountsCapTest names account i "acct%04d" and sends it to
	// addrs[i%2]; give each its own Dovecot user.
	accts := make([]Account, n)
	for i := range accts {
		a := addrs[i%len(addrs)]
		name := fmt.Sprintf("cap%04d", i)
		a.Username = name
		a.Secret = secret(users[name])
		accts[i] = a
	}
	start := time.Now()
	// Dovecot starts a process per session: about 10 sessions/s on a busy
	// 2-core machine.
	maxWaiting := manyAccountsCapTest(t, n, accts, maxConns, perHost, max(time.Minute, time.Duration(n)*200*time.Millisecond))
	t.Logf("%d accounts polled from Dovecot in %v; most sessions at once: %d and %d per proxy, %d together; most polls waiting: %d",
		n, time.Since(start).Round(time.Millisecond), proxies[0].MaxOpenSessions(), proxies[1].MaxOpenSessions(), both.Max(), maxWaiting)
	for i, px := range proxies {
		if m := px.MaxOpenSessions(); m > perHost {
			t.Errorf("proxy %d carried %d sessions at once, cap %d", i, m, perHost)
		}
	}
	if m := both.Max(); m > maxConns {
		t.Errorf("%d sessions at once through both proxies, cap %d", m, maxConns)
	} else if m <= perHost {
		t.Errorf("at most %d sessions at once: the total cap (%d) was never reached", m, maxConns)
	}
	if maxWaiting < n/2 {
		t.Errorf("at most %d polls waited for a slot, want most of the %d due at once", maxWaiting, n)
	}
}
