package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/store"
)

// upstreamAccount returns an account for a pop3mem server.
func upstreamAccount(srv *pop3mem.Server, mod func(*Account)) Account {
	a := Account{
		Name: "up", User: "alice", Host: srv.Host(), Port: srv.Port(), TLS: "none",
		Username: pop3mem.DefaultUser, Auth: "user", LeaveOnServer: true, PollInterval: time.Minute,
		Secret: func(context.Context) (string, error) { return pop3mem.DefaultPassword, nil },
	}
	if mod != nil {
		mod(&a)
	}
	return a
}

// upstreamHarness is a real session against pop3mem and a real store.
type upstreamHarness struct {
	t    *testing.T
	srv  *pop3mem.Server
	st   *store.Store
	p    *Poller
	acct Account
}

func newUpstream(t *testing.T, mod func(*Account), opts ...pop3mem.Option) *upstreamHarness {
	t.Helper()
	srv := pop3mem.NewServer(opts...)
	t.Cleanup(srv.Close)
	st := openStore(t, nil)
	a := upstreamAccount(srv, mod)
	p := New(Options{Sink: st, Accounts: []Account{a}})
	return &upstreamHarness{t: t, srv: srv, st: st, p: p, acct: a}
}

func (u *upstreamHarness) poll(timeout time.Duration) (Result, error) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return u.p.PollOnce(ctx, u.acct.Name, nil)
}

// wantExact fails unless the store holds exactly the raw bytes of msgs,
// each once.
func (u *upstreamHarness) wantExact(msgs []pop3mem.Message) {
	u.t.Helper()
	var want []string
	for _, m := range msgs {
		want = append(want, string(m.Raw))
	}
	checkBodies(u.t, mailboxBodies(u.t, u.st, "alice", u.acct.folder()), want)
}

func smallMessages(n int) [][]byte {
	var out [][]byte
	for i := 1; i <= n; i++ {
		out = append(out, []byte(testMessage(i)))
	}
	return out
}

// TestUpstreamMisbehaviour runs a pass against each pop3mem fault, then a
// pass with the fault cleared, and checks that the store holds every
// upstream message exactly once, byte for byte, and that DELE happened only
// for stored messages.
func TestUpstreamMisbehaviour(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	big := []byte(realisticMessage(r, 1000, 200_000))
	tests := []struct {
		name      string
		acct      func(*Account)
		faults    pop3mem.Faults
		msgs      [][]byte
		timeout   time.Duration // of the faulty pass
		faultyErr bool          // the faulty pass must fail
		check     func(t *testing.T, u *upstreamHarness, upstream []pop3mem.Message)
	}{
		{name: "well behaved", msgs: smallMessages(20)},
		{name: "drop mid-RETR", faults: pop3mem.Faults{DropRETRAfter: 50_000}, msgs: append(smallMessages(5), big), faultyErr: true},
		{name: "ERR on RETR", faults: pop3mem.Faults{ErrOn: map[string]string{"RETR": "[SYS/TEMP] busy"}}, msgs: smallMessages(3), faultyErr: true},
		{name: "ERR on DELE", acct: func(a *Account) { a.LeaveOnServer = false }, faults: pop3mem.Faults{ErrOn: map[string]string{"DELE": "no"}}, msgs: smallMessages(4), faultyErr: true},
		{name: "stall mid-RETR", faults: pop3mem.Faults{StallRETRAfter: 20_000}, msgs: append(smallMessages(3), big), timeout: 2 * time.Second, faultyErr: true},
		{name: "stall after DELE", acct: func(a *Account) { a.LeaveOnServer = false }, faults: pop3mem.Faults{StallAfterDELE: true}, msgs: smallMessages(4), timeout: 2 * time.Second, faultyErr: true},
		{name: "no UIDL", faults: pop3mem.Faults{NoUIDL: true}, msgs: smallMessages(10)},
		{name: "no UIDL reordered, leave false", acct: func(a *Account) { a.LeaveOnServer = false }, faults: pop3mem.Faults{NoUIDL: true, Reorder: true}, msgs: smallMessages(10)},
		{name: "reordered, delete_after", acct: func(a *Account) { a.DeleteAfter = time.Nanosecond }, faults: pop3mem.Faults{Reorder: true}, msgs: smallMessages(10)},
		{name: "bare LF", faults: pop3mem.Faults{BareLF: true}, msgs: smallMessages(5)},
		{name: "long line", faults: pop3mem.Faults{LongLine: 8 << 20}, msgs: smallMessages(2), faultyErr: true},
		{name: "unstuffed dot", faults: pop3mem.Faults{UnstuffedDot: true}, msgs: [][]byte{[]byte("Subject: a\r\n\r\nfirst\r\n.\r\nafter the dot\r\n"), []byte(testMessage(2))}, faultyErr: true},
		{name: "never ending", faults: pop3mem.Faults{NeverEnding: true}, msgs: smallMessages(2), timeout: 10 * time.Second, faultyErr: true},
		{name: "LIST sizes doubled", faults: pop3mem.Faults{ListSizeScale: 2}, msgs: smallMessages(5)},
		{name: "LIST sizes halved", faults: pop3mem.Faults{ListSizeScale: 0.5}, msgs: smallMessages(5)},
		{name: "QUIT dropped", acct: func(a *Account) { a.LeaveOnServer = false }, faults: pop3mem.Faults{QuitDrop: true}, msgs: smallMessages(6), faultyErr: true},
		{name: "QUIT -ERR", acct: func(a *Account) { a.LeaveOnServer = false }, faults: pop3mem.Faults{QuitErr: true}, msgs: smallMessages(6), faultyErr: true},
		{name: "max size skips, never RETR", acct: func(a *Account) { a.MaxMessageSize = 10_000 }, msgs: append(smallMessages(2), big),
			check: func(t *testing.T, u *upstreamHarness, upstream []pop3mem.Message) {
				if n := u.srv.Count("RETR"); n != 2 {
					t.Errorf("RETR sent %d times, want 2", n)
				}
				u.wantExact(upstream[:2])
				if st := u.p.Status()[0]; st.Skipped != 1 {
					t.Errorf("status skipped = %d", st.Skipped)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, tt.acct)
			for _, m := range tt.msgs {
				u.srv.AddMessage(m)
			}
			upstream := u.srv.Messages()
			u.srv.SetFaults(tt.faults)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			_, err := u.poll(timeout)
			if tt.faultyErr && err == nil {
				t.Fatalf("faulty pass succeeded")
			}
			t.Logf("faulty pass: %v", err)
			if !u.acct.LeaveOnServer {
				// Nothing may be gone upstream that is not stored.
				stored := map[string]bool{}
				for _, b := range mailboxBodies(t, u.st, "alice", "INBOX") {
					stored[string(b)] = true
				}
				gone := map[string]bool{}
				for _, id := range u.srv.Deleted() {
					gone[id] = true
				}
				for _, m := range upstream {
					if gone[m.UIDL] && !stored[string(m.Raw)] {
						t.Errorf("%s deleted upstream but not stored", m.UIDL)
					}
				}
			}
			u.srv.SetFaults(pop3mem.Faults{Reorder: tt.faults.Reorder, NoUIDL: tt.faults.NoUIDL})
			for i := 0; i < 2; i++ {
				if _, err := u.poll(30 * time.Second); err != nil {
					t.Fatalf("clean pass %d: %v", i, err)
				}
			}
			if tt.check != nil {
				tt.check(t, u, upstream)
				return
			}
			u.wantExact(upstream)
			if !u.acct.LeaveOnServer || u.acct.DeleteAfter > 0 {
				if left := u.srv.Messages(); len(left) != 0 {
					t.Errorf("upstream still holds %d messages", len(left))
				}
			}
		})
	}
}

func TestUpstreamReusedAndDuplicateUIDL(t *testing.T) {
	u := newUpstream(t, nil)
	u.srv.AddMessageUIDL("same", []byte(testMessage(1)))
	u.srv.AddMessageUIDL("same", []byte(testMessage(2)))
	if _, err := u.poll(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Two messages under one UIDL: told apart by content, both stored.
	first := u.srv.Messages()
	u.wantExact(first)
	// The server drops both and reuses the UIDL for new content.
	reused := []byte(testMessage(3) + "with a longer body\r\n")
	u.srv.SetMessages([]pop3mem.Message{{UIDL: "same", Raw: reused}})
	if r, err := u.poll(30 * time.Second); err != nil || r.Fetched != 1 {
		t.Fatalf("reused UIDL pass = %+v, %v", r, err)
	}
	u.wantExact(append(first, u.srv.Messages()...))
}

func TestUpstreamMassUIDLChangeAndEmptyListing(t *testing.T) {
	u := newUpstream(t, nil)
	for _, m := range smallMessages(30) {
		u.srv.AddMessage(m)
	}
	if _, err := u.poll(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	upstream := u.srv.Messages()
	u.srv.SetMessages(nil)
	if r, err := u.poll(30 * time.Second); err != nil || r.Listed != 0 {
		t.Fatalf("empty listing pass = %+v, %v", r, err)
	}
	var renamed []pop3mem.Message
	for _, m := range upstream {
		renamed = append(renamed, pop3mem.Message{UIDL: "v2-" + m.UIDL, Raw: m.Raw})
	}
	u.srv.SetMessages(renamed)
	for i := 0; i < 2; i++ {
		if r, err := u.poll(30 * time.Second); err != nil || r.Fetched != 0 {
			t.Fatalf("pass %d after mass UIDL change = %+v, %v", i, r, err)
		}
	}
	u.wantExact(upstream)
}

func TestUpstreamIdlePollRoundTrips(t *testing.T) {
	u := newUpstream(t, nil)
	for _, m := range smallMessages(50) {
		u.srv.AddMessage(m)
	}
	if _, err := u.poll(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, c := range []string{"RETR", "TOP", "DELE", "LIST", "UIDL"} {
		before[c] = u.srv.Count(c)
	}
	if r, err := u.poll(30 * time.Second); err != nil || r.Fetched != 0 {
		t.Fatalf("idle pass = %+v, %v", r, err)
	}
	for _, c := range []string{"RETR", "TOP", "DELE"} {
		if n := u.srv.Count(c) - before[c]; n != 0 {
			t.Errorf("idle pass sent %s %d times", c, n)
		}
	}
	if n := u.srv.Count("LIST") + u.srv.Count("UIDL") - before["LIST"] - before["UIDL"]; n > 2 {
		t.Errorf("idle pass sent %d LIST/UIDL commands", n)
	}
}

func TestUpstreamLoginErrorInStatus(t *testing.T) {
	u := newUpstream(t, nil)
	u.srv.SetFaults(pop3mem.Faults{ErrOn: map[string]string{"PASS": "[AUTH] Authentication failed."}})
	err := u.p.CheckLogin(context.Background(), u.acct, 0)
	var ae *AccountError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "Authentication failed") || strings.Contains(err.Error(), pop3mem.DefaultPassword) {
		t.Fatalf("CheckLogin = %v", err)
	}
	if _, err := u.poll(10 * time.Second); err == nil {
		t.Fatal("poll succeeded")
	}
	st := u.p.Status()[0]
	if !strings.Contains(st.LastError, "Authentication failed") {
		t.Errorf("status LastError = %q", st.LastError)
	}
	sts, _ := u.st.AccountStatuses(context.Background())
	if len(sts) != 1 || !strings.Contains(sts[0].LastError, "Authentication failed") || sts[0].LastAttempt.IsZero() {
		t.Errorf("persisted status = %+v", sts)
	}
}

var _ = bytes.Equal
var _ = fmt.Sprint
