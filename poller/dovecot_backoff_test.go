package poller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
)

// TestDovecotHintsDuringAuthBackoff is the report of issue #10 against a
// real Dovecot: a wrong password, poll_interval 5m, and an IMAP client
// refreshing every 5 s. Over an hour (of the poller's fake clock; the
// logins are real, counted by a proxy in front of Dovecot) Dovecot sees
// exactly the logins the backoff allows, 8, each refused, where hints used
// to make one every 15-24 s. An operator's PollNow still logs in at once.
// (Dovecot takes about 2.5 s to refuse each login here, so the test runs
// about 20 s.)
func TestDovecotHintsDuringAuthBackoff(t *testing.T) {
	dc := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"locked": "right-password"}})
	px := pop3mem.NewProxy(dc.Addr(), nil)
	t.Cleanup(px.Close)
	h := newHarness(t, func(a *Account) {
		a.Host, a.Port, a.TLS = px.Host(), px.Port(), "none"
		a.Username, a.Auth, a.Secret = "locked", "user", secret("wrong-password")
	})
	h.p.SetAccounts([]Account{h.acct})
	connect := func(ctx context.Context, a Account) (popSession, error) {
		s, err := openSession(ctx, a, sessionConfig{})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	h.p.connect, h.p.dial = connect, h.p.limited(connect)
	want := hintsForAnHour(t, h, px.Sessions)
	st := h.p.Status()[0]
	if !strings.Contains(st.LastError, "[AUTH]") {
		t.Errorf("last error %q, want Dovecot's [AUTH] refusal", st.LastError)
	}
	made := h.clock.madeCount()
	h.p.PollNow(h.acct.Name)
	h.clock.waitTimer(t, made)
	if got := px.Sessions(); got != want+1 {
		t.Errorf("Dovecot saw %d logins after PollNow, want %d", got, want+1)
	}
	// Dovecot writes its log on its own time; every login it saw was refused.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(dc.Log(), "auth failed") < want+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(dc.Log(), "auth failed"); n != want+1 {
		t.Errorf("Dovecot logged %d refused logins, want %d", n, want+1)
	}
}
