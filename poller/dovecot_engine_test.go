package poller

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
	"github.com/popbridge/popbridge/store"
)

// TestDovecotEngine runs whole poll passes against a real Dovecot POP3
// server over STLS into a real store: first fetch, an idle pass, a new
// message, then leave_on_server=false deleting everything upstream only
// after it is stored. Skipped without Dovecot (failing instead when
// POPBRIDGE_REQUIRE_DOVECOT=1).
func TestDovecotEngine(t *testing.T) {
	dc := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"eng": "pw-eng"}})
	r := rand.New(rand.NewPCG(9, 9))
	var want []string
	add := func(i int) {
		raw := realisticMessage(r, i, 4000)
		dc.AddMessage(t, "eng", []byte(raw))
		want = append(want, raw) // generated with CRLF, as Dovecot serves it
	}
	for i := 0; i < 40; i++ {
		add(i)
	}
	st := openStore(t, nil)
	a := Account{Name: "dc", User: "alice", Host: dc.Host, Port: dc.POP3Port, TLS: "starttls", TLSCAFile: dc.CAFile,
		Username: "eng", Auth: "user", LeaveOnServer: true, PollInterval: time.Minute,
		Secret: func(context.Context) (string, error) { return "pw-eng", nil }}
	p := New(Options{Sink: st, Accounts: []Account{a}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	poll := func(wantFetched, wantDeleted int) {
		t.Helper()
		res, err := p.PollOnce(ctx, "dc", nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Fetched != wantFetched || res.Deleted != wantDeleted {
			t.Fatalf("pass = %+v, want fetched %d deleted %d", res, wantFetched, wantDeleted)
		}
	}
	poll(40, 0)
	poll(0, 0)
	add(40)
	poll(1, 0)
	checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), want)

	a.LeaveOnServer = false
	p.SetAccounts([]Account{a})
	poll(0, 41)
	if n := dc.Count(t, "eng"); n != 0 {
		t.Errorf("Dovecot still holds %d messages", n)
	}
	poll(0, 0)
	checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), want)
	if st := p.Status()[0]; st.Fetched != 41 || st.LastError != "" || !strings.Contains(st.Account, "dc") {
		t.Errorf("status = %+v", st)
	}
}

// TestDovecotUIDLRenumbering restarts the private Dovecot with another
// pop3_uidl_format between two polls, so that every UIDL changes (as after
// a server migration): nothing is stored twice, with leave_on_server true
// and false, and the renumbering is counted.
func TestDovecotUIDLRenumbering(t *testing.T) {
	for _, leave := range []bool{true, false} {
		t.Run(map[bool]string{true: "leave", false: "delete"}[leave], func(t *testing.T) {
			dc := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"ren": "pw-ren"}})
			r := rand.New(rand.NewPCG(11, 11))
			var want []string
			for i := 0; i < 6; i++ {
				raw := realisticMessage(r, i, 2000)
				dc.AddMessage(t, "ren", []byte(raw))
				want = append(want, raw)
			}
			st := openStore(t, nil)
			a := Account{Name: "dc", User: "alice", Host: dc.Host, Port: dc.POP3Port, TLS: "starttls", TLSCAFile: dc.CAFile,
				Username: "ren", Auth: "user", LeaveOnServer: true, PollInterval: time.Minute,
				Secret: func(context.Context) (string, error) { return "pw-ren", nil }}
			p := New(Options{Sink: st, Accounts: []Account{a}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if res, err := p.PollOnce(ctx, "dc", nil); err != nil || res.Fetched != 6 {
				t.Fatalf("first poll = %+v, %v", res, err)
			}
			dc.Restart(t, func(conf string) string {
				return strings.Replace(conf, "pop3_uidl_format = %08Xu%08Xv", "pop3_uidl_format = renum-%v-%u", 1)
			})
			a.LeaveOnServer = leave
			p.SetAccounts([]Account{a})
			res, err := p.PollOnce(ctx, "dc", nil)
			if err != nil {
				t.Fatal(err)
			}
			wantDeleted := map[bool]int{true: 0, false: 6}[leave]
			if res.Fetched != 0 || res.Anomalies.Renumbered != 6 || res.Deleted != wantDeleted {
				t.Fatalf("poll after renumbering = %+v, want nothing stored, 6 renumbered, %d deleted", res, wantDeleted)
			}
			checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), want)
			if n, wantN := dc.Count(t, "ren"), 6-wantDeleted; n != wantN {
				t.Errorf("Dovecot holds %d messages, want %d", n, wantN)
			}
			// Settled: the next poll finds nothing new and nothing odd.
			if res, err := p.PollOnce(ctx, "dc", nil); err != nil || res.Fetched != 0 || res.Anomalies != (store.IdentityAnomalies{}) {
				t.Errorf("poll after that = %+v, %v", res, err)
			}
			checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), want)
		})
	}
}
