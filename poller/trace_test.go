package poller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// TestTrace: with Trace set, the session's commands and the server's
// status lines are logged, passwords and tokens redacted and message bodies
// absent, for every way of logging in.
func TestTrace(t *testing.T) {
	p := testpki.New(t)
	for _, auth := range []string{"user", "apop", "plain", "xoauth2"} {
		t.Run(auth, func(t *testing.T) {
			srv := pop3mem.NewUnstartedServer(pop3mem.WithTLS(p.ServerConfig()))
			srv.StartTLS()
			defer srv.Close()
			srv.AddMessage(message(1))
			secretText := pop3mem.DefaultPassword
			a := testAccount(srv, func(a *Account) { a.TLS, a.TLSCAFile, a.Auth, a.Trace = "implicit", p.CAFile, auth, true })
			if auth == "xoauth2" {
				secretText = pop3mem.DefaultToken
				a.Secret = secret(secretText)
			}
			var logs bytes.Buffer
			cfg := fastConfig()
			cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			s := open(t, a, cfg)
			if _, err := fetchAll(t, s, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Quit(context.Background()); err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var rec struct{ Msg, Dir, Line, Account string }
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatal(err)
				}
				if rec.Msg == "pop3 trace" {
					if rec.Account != "work" {
						t.Errorf("trace line without the account: %s", l)
					}
					lines = append(lines, rec.Dir+" "+rec.Line)
				}
			}
			all := strings.Join(lines, "\n")
			for _, want := range []string{"C RETR 1", "C QUIT", "S +OK"} {
				if !strings.Contains(all, want) {
					t.Errorf("trace lacks %q:\n%s", want, all)
				}
			}
			if !strings.Contains(all, "*** (redacted)") {
				t.Errorf("no redacted login line:\n%s", all)
			}
			b64 := base64.StdEncoding.EncodeToString([]byte("\x00" + pop3mem.DefaultUser + "\x00" + pop3mem.DefaultPassword))
			xo := base64.StdEncoding.EncodeToString([]byte("user=" + pop3mem.DefaultUser + "\x01auth=Bearer " + pop3mem.DefaultToken + "\x01\x01"))
			for _, secretForm := range []string{secretText, b64, xo, "body 1"} {
				if strings.Contains(logs.String(), secretForm) {
					t.Errorf("trace shows %q:\n%s", secretForm, all)
				}
			}
		})
	}
}
