package poller

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// fastConfig keeps every deadline short so that stall tests end quickly.
func fastConfig() sessionConfig {
	return sessionConfig{
		DialTimeout: 5 * time.Second,
		IOTimeout:   time.Second,
		SlowWindow:  500 * time.Millisecond,
		SlowBytes:   4 << 10,
	}
}

func secret(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}

func testAccount(srv *pop3mem.Server, mods ...func(*Account)) Account {
	a := Account{
		Name: "work", User: "u", Host: srv.Host(), Port: srv.Port(), TLS: "none",
		Username: pop3mem.DefaultUser, Secret: secret(pop3mem.DefaultPassword), Auth: "user",
	}
	for _, m := range mods {
		m(&a)
	}
	return a
}

func open(t *testing.T, a Account, cfg sessionConfig) *session {
	t.Helper()
	s, err := openSession(context.Background(), a, cfg)
	if err != nil {
		t.Fatalf("openSession: %v", err)
	}
	t.Cleanup(s.Abort)
	return s
}

func message(i int) []byte {
	return pop3mem.Normalize([]byte(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <%d@test>\r\n\r\nbody %d\r\n.leading dot\r\n.\r\n", i, i, i)))
}

// fetchAll lists and retrieves everything.
func fetchAll(t *testing.T, s *session, maxSize int64) (map[string][]byte, error) {
	t.Helper()
	items, err := s.List(context.Background())
	if err != nil {
		return nil, err
	}
	got := map[string][]byte{}
	err = s.Retrieve(context.Background(), items, maxSize, func(it listItem, raw []byte) error {
		got[it.UIDL] = raw
		return nil
	})
	return got, err
}

func asAccountError(t *testing.T, err error) *AccountError {
	t.Helper()
	var ae *AccountError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *AccountError", err, err)
	}
	return ae
}

func TestSessionModesAndAuth(t *testing.T) {
	p := testpki.New(t)
	for _, mode := range []string{"none", "starttls", "implicit"} {
		for _, auth := range []string{"user", "apop", "plain", "xoauth2"} {
			t.Run(mode+"/"+auth, func(t *testing.T) {
				t.Parallel()
				srv := pop3mem.NewUnstartedServer(pop3mem.WithTLS(p.ServerConfig()))
				if mode == "implicit" {
					srv.StartTLS()
				} else {
					srv.Start()
				}
				defer srv.Close()
				want := map[string][]byte{}
				for i := range 5 {
					want[srv.AddMessage(message(i))] = message(i)
				}
				a := testAccount(srv, func(a *Account) {
					a.TLS, a.TLSCAFile, a.Auth = mode, p.CAFile, auth
					if auth == "xoauth2" {
						a.Secret = secret(pop3mem.DefaultToken)
					}
				})
				s := open(t, a, fastConfig())
				if !s.Caps().UIDL || !s.Caps().Pipelining || (mode != "none") == s.Caps().STLS {
					t.Errorf("caps after TLS/login = %+v", s.Caps())
				}
				got, err := fetchAll(t, s, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("got %d messages, want %d", len(got), len(want))
				}
				for u, raw := range want {
					if !bytes.Equal(got[u], raw) {
						t.Errorf("message %s = %q, want %q", u, got[u], raw)
					}
				}
				if err := s.Delete(context.Background(), []int{1, 3}); err != nil {
					t.Fatal(err)
				}
				if err := s.Quit(context.Background()); err != nil {
					t.Fatal(err)
				}
				if d := srv.Deleted(); len(d) != 2 {
					t.Errorf("deleted %v, want 2", d)
				}
				if mode == "starttls" && srv.Count("STLS") != 1 {
					t.Errorf("STLS count %d", srv.Count("STLS"))
				}
			})
		}
	}
}

func TestXOAUTH2TwoStep(t *testing.T) {
	srv := pop3mem.NewServer(pop3mem.WithXOAUTH2NoInitialResponse())
	defer srv.Close()
	a := testAccount(srv, func(a *Account) { a.Auth, a.Secret = "xoauth2", secret(pop3mem.DefaultToken) })
	s := open(t, a, fastConfig())
	if _, err := s.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count("AUTH"); n != 2 {
		t.Errorf("AUTH sent %d times, want 2 (initial response, then two-step)", n)
	}
	// A bad token through the two-step path: the error challenge is
	// answered and the final -ERR reported.
	a.Secret = secret("wrong-token")
	_, err := openSession(context.Background(), a, fastConfig())
	ae := asAccountError(t, err)
	if ae.Op != "login" || !strings.HasPrefix(ae.Reply, "-ERR [AUTH]") || ae.Temporary {
		t.Errorf("bad token: %#v", ae)
	}
}

func TestLoginErrors(t *testing.T) {
	const pw = "hunter2-secret"
	tests := []struct {
		name      string
		faults    pop3mem.Faults
		mod       func(*Account)
		wantReply string
		wantErr   error
		temporary bool
		noConnect bool
	}{
		{name: "wrong password", mod: func(a *Account) { a.Secret = secret(pw) },
			wantReply: "-ERR [AUTH] Authentication failed."},
		{name: "wrong password plain", mod: func(a *Account) { a.Secret, a.Auth = secret(pw), "plain" },
			wantReply: "-ERR [AUTH] Authentication failed."},
		{name: "wrong password apop", mod: func(a *Account) { a.Secret, a.Auth = secret(pw), "apop" },
			wantReply: "-ERR [AUTH] Authentication failed."},
		{name: "in use", faults: pop3mem.Faults{ErrOn: map[string]string{"PASS": "[IN-USE] maildrop locked"}},
			wantReply: "-ERR [IN-USE] maildrop locked", temporary: true},
		{name: "login delay", faults: pop3mem.Faults{ErrOn: map[string]string{"PASS": "[LOGIN-DELAY] wait"}},
			wantReply: "-ERR [LOGIN-DELAY] wait", temporary: true},
		{name: "sys temp", faults: pop3mem.Faults{ErrOn: map[string]string{"USER": "[SYS/TEMP] backend down"}},
			wantReply: "-ERR [SYS/TEMP] backend down", temporary: true},
		{name: "sys perm", faults: pop3mem.Faults{ErrOn: map[string]string{"PASS": "[SYS/PERM] account disabled"}},
			wantReply: "-ERR [SYS/PERM] account disabled"},
		{name: "server echoes secret", faults: pop3mem.Faults{ErrOn: map[string]string{"PASS": "bad password " + pw}},
			mod: func(a *Account) { a.Secret = secret(pw) }, wantReply: "-ERR bad password [redacted]"},
		{name: "CRLF in password", mod: func(a *Account) { a.Secret = secret("x\r\nDELE 1") },
			wantErr: ErrBadCredentials, noConnect: true},
		{name: "NUL in user", mod: func(a *Account) { a.Username = "a\x00b" }, wantErr: ErrBadCredentials, noConnect: true},
		{name: "apop without timestamp", mod: func(a *Account) { a.Auth = "apop" }, wantErr: ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []pop3mem.Option
			if tt.name == "apop without timestamp" {
				opts = append(opts, pop3mem.WithoutAPOP())
			}
			srv := pop3mem.NewServer(opts...)
			defer srv.Close()
			srv.SetFaults(tt.faults)
			a := testAccount(srv)
			if tt.mod != nil {
				tt.mod(&a)
			}
			_, err := openSession(context.Background(), a, fastConfig())
			ae := asAccountError(t, err)
			if ae.Account != "work" || ae.Op != "login" || ae.Temporary != tt.temporary {
				t.Errorf("got %#v", ae)
			}
			if ae.Reply != tt.wantReply {
				t.Errorf("Reply = %q, want %q", ae.Reply, tt.wantReply)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "DELE 1") {
				t.Errorf("error reveals the secret: %v", err)
			}
			if !strings.Contains(err.Error(), `account "work": login: `) {
				t.Errorf("error text %q", err)
			}
			if tt.wantReply != "" && err.Error() != fmt.Sprintf(`account "work": login: server said %q`, tt.wantReply) {
				t.Errorf("error text %q", err)
			}
			if tt.noConnect && srv.Connections() != 0 {
				t.Errorf("connected %d times with unusable credentials", srv.Connections())
			}
		})
	}
}

func TestTLSRefusals(t *testing.T) {
	p := testpki.New(t)
	other := testpki.New(t)
	expired := testpki.New(t, testpki.Expired())
	tests := []struct {
		name      string
		cert      *testpki.PKI
		mode      string
		faults    pop3mem.Faults
		ca        string
		skip      bool
		wantErr   error
		ok        bool
		oldTLS    bool
		plainPort bool
	}{
		{name: "stls missing", cert: p, mode: "starttls", faults: pop3mem.Faults{NoSTLS: true}, ca: p.CAFile, wantErr: ErrSTLSUnavailable},
		{name: "stls injection", cert: p, mode: "starttls", faults: pop3mem.Faults{STLSInject: true}, ca: p.CAFile, wantErr: ErrPlaintextInjection},
		{name: "stls unknown CA", cert: other, mode: "starttls", ca: p.CAFile},
		{name: "implicit unknown CA", cert: other, mode: "implicit", ca: p.CAFile},
		{name: "implicit system roots only", cert: p, mode: "implicit"},
		{name: "implicit expired", cert: expired, mode: "implicit", ca: expired.CAFile},
		{name: "skip verify", cert: other, mode: "implicit", skip: true, ok: true},
		{name: "server speaks only TLS 1.0/1.1", cert: p, mode: "implicit", ca: p.CAFile, oldTLS: true},
		{name: "implicit TLS against a plaintext port", cert: p, mode: "implicit", ca: p.CAFile, plainPort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			scfg := tt.cert.ServerConfig()
			if tt.oldTLS {
				scfg.MinVersion, scfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			}
			srv := pop3mem.NewUnstartedServer(pop3mem.WithTLS(scfg))
			if tt.mode == "implicit" && !tt.plainPort {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			srv.SetFaults(tt.faults)
			var logs bytes.Buffer
			cfg := fastConfig()
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			a := testAccount(srv, func(a *Account) { a.TLS, a.TLSCAFile, a.TLSSkipVerify = tt.mode, tt.ca, tt.skip })
			s, err := openSession(context.Background(), a, cfg)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				s.Abort()
				if !strings.Contains(logs.String(), "verification disabled") {
					t.Errorf("no warning logged for tls_skip_verify: %q", logs.String())
				}
				return
			}
			ae := asAccountError(t, err)
			if ae.Temporary {
				t.Errorf("TLS refusal classified temporary: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
			if srv.Count("USER")+srv.Count("PASS")+srv.Count("AUTH") != 0 {
				t.Error("credentials were sent")
			}
		})
	}
}

func TestListMerge(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.SetMessages([]pop3mem.Message{{UIDL: "a", Raw: []byte("x")}, {UIDL: "b", Raw: []byte("yy")}, {UIDL: "a", Raw: []byte("zzz")}})
	s := open(t, testAccount(srv), fastConfig())
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []listItem{{1, 3, "a"}, {2, 4, "b"}, {3, 5, "a"}}
	if fmt.Sprint(items) != fmt.Sprint(want) {
		t.Errorf("List = %v, want %v", items, want)
	}
	if srv.Count("LIST") != 1 || srv.Count("UIDL") != 1 {
		t.Errorf("LIST %d UIDL %d", srv.Count("LIST"), srv.Count("UIDL"))
	}
}

func TestNoUIDLAndHeaderDigests(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	for i := range 40 {
		srv.AddMessage(message(i % 20)) // duplicates have equal headers
	}
	srv.SetFaults(pop3mem.Faults{NoUIDL: true})
	for _, pipelining := range []bool{true, false} {
		cfg := fastConfig()
		if !pipelining {
			srv2 := pop3mem.NewServer(pop3mem.WithCaps("TOP", "USER"))
			defer srv2.Close()
			srv2.SetMessages(srv.Messages())
			srv2.SetFaults(pop3mem.Faults{NoUIDL: true})
			srv = srv2
		}
		s := open(t, testAccount(srv), cfg)
		items, err := s.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if srv.Count("UIDL") != 0 {
			t.Error("UIDL sent although CAPA lacks it")
		}
		var nums []int
		for _, it := range items {
			if it.UIDL != "" {
				t.Fatalf("item %+v has a UIDL", it)
			}
			nums = append(nums, it.Num)
		}
		d, err := s.HeaderDigests(context.Background(), nums)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != 40 || d[1] != d[21] || d[1] == d[2] || len(d[1]) != 64 {
			t.Errorf("pipelining=%v digests: %d, d1=%s d21=%s d2=%s", pipelining, len(d), d[1], d[21], d[2])
		}
		if err := s.Quit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNoCAPAServer(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(message(1))
	srv.SetFaults(pop3mem.Faults{ErrOn: map[string]string{"CAPA": "unknown command"}})
	s := open(t, testAccount(srv), fastConfig())
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].UIDL == "" {
		t.Errorf("without CAPA, UIDL should still be tried: %v", items)
	}
	srv.UpdateFaults(func(f *pop3mem.Faults) { f.NoUIDL = true })
	s2 := open(t, testAccount(srv), fastConfig())
	items, err = s2.List(context.Background())
	if err != nil || len(items) != 1 || items[0].UIDL != "" {
		t.Errorf("UIDL -ERR without CAPA: %v %v", items, err)
	}
}

func TestRetrievePipelinedAndSequential(t *testing.T) {
	for _, caps := range [][]string{nil, {"UIDL", "TOP", "USER"}} {
		name := "pipelined"
		if caps != nil {
			name = "sequential"
		}
		t.Run(name, func(t *testing.T) {
			var opts []pop3mem.Option
			if caps != nil {
				opts = append(opts, pop3mem.WithCaps(caps...))
			}
			srv := pop3mem.NewServer(opts...)
			defer srv.Close()
			var order []string
			for i := range 100 {
				order = append(order, srv.AddMessage(message(i)))
			}
			s := open(t, testAccount(srv), fastConfig())
			items, err := s.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			err = s.Retrieve(context.Background(), items, 1<<20, func(it listItem, raw []byte) error {
				if !bytes.Equal(raw, message(it.Num-1)) {
					t.Errorf("message %d content %q", it.Num, raw)
				}
				got = append(got, it.UIDL)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(order, ",") {
				t.Errorf("order %v", got)
			}
			var nums []int
			for _, it := range items {
				nums = append(nums, it.Num)
			}
			if err := s.Delete(context.Background(), nums); err != nil {
				t.Fatal(err)
			}
			if err := s.Quit(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(srv.Messages()) != 0 || srv.Count("RETR") != 100 || srv.Count("DELE") != 100 {
				t.Errorf("left %d, RETR %d, DELE %d", len(srv.Messages()), srv.Count("RETR"), srv.Count("DELE"))
			}
		})
	}
}

// TestFaults runs a full session against each misbehaving server and checks
// the outcome: the error kind, that nothing hangs beyond the deadlines, and
// which messages fn received.
func TestFaults(t *testing.T) {
	big := pop3mem.Normalize(bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 32<<10)) // 2 MiB
	tests := []struct {
		name     string
		faults   pop3mem.Faults
		maxSize  int64
		msgs     [][]byte
		wantErr  error  // errors.Is target; nil with wantOp == "" means success
		wantOp   string // failing operation
		wantTemp bool
		wantGot  int  // messages delivered to fn
		deleted  int  // messages the server removed
		bulk     bool // moves megabytes: generous deadlines (the case is not about time)
	}{
		{name: "clean", msgs: [][]byte{message(1), message(2)}, wantGot: 2, deleted: 2},
		{name: "drop mid-RETR", faults: pop3mem.Faults{DropRETRAfter: 30}, msgs: [][]byte{message(1)},
			wantOp: "retr", wantTemp: true},
		{name: "stall mid-RETR", faults: pop3mem.Faults{StallRETRAfter: 30}, msgs: [][]byte{message(1)},
			wantErr: errTimeout, wantOp: "retr", wantTemp: true},
		{name: "stall after DELE", faults: pop3mem.Faults{StallAfterDELE: true}, msgs: [][]byte{message(1), message(2)},
			wantErr: errTimeout, wantOp: "dele", wantTemp: true, wantGot: 2},
		{name: "slow drip", faults: pop3mem.Faults{Drip: 10 * time.Millisecond}, msgs: [][]byte{bytes.Repeat([]byte("x"), 1000)},
			wantErr: errTimeout, wantOp: "*", wantTemp: true},
		{name: "unstuffed dot", faults: pop3mem.Faults{UnstuffedDot: true}, msgs: [][]byte{message(1), message(2)},
			wantErr: ErrProtocol, wantOp: "retr", wantTemp: true},
		{name: "never ending", faults: pop3mem.Faults{NeverEnding: true}, maxSize: 1 << 20, msgs: [][]byte{message(1)}, bulk: true,
			wantErr: ErrMessageTooLarge, wantOp: "retr"},
		{name: "never ending no limit", faults: pop3mem.Faults{NeverEnding: true}, msgs: [][]byte{message(1)}, bulk: true,
			wantErr: ErrMessageTooLarge, wantOp: "retr"},
		{name: "multi-MB line over limit", faults: pop3mem.Faults{LongLine: 8 << 20}, maxSize: 1 << 20, msgs: [][]byte{message(1)}, bulk: true,
			wantErr: ErrMessageTooLarge, wantOp: "retr"},
		{name: "multi-MB line within limit", faults: pop3mem.Faults{LongLine: 3 << 20}, maxSize: 50 << 20, msgs: [][]byte{message(1)}, bulk: true,
			wantGot: 1, deleted: 1},
		{name: "LIST size lies low", faults: pop3mem.Faults{ListSizeScale: 0.01}, msgs: [][]byte{big}, bulk: true,
			wantErr: ErrMessageTooLarge, wantOp: "retr"},
		{name: "LIST size lies high", faults: pop3mem.Faults{ListSizeScale: 100}, maxSize: 1 << 30, msgs: [][]byte{message(1)},
			wantGot: 1, deleted: 1},
		{name: "bare LF", faults: pop3mem.Faults{BareLF: true}, msgs: [][]byte{message(1), message(2)},
			wantGot: 2, deleted: 2},
		{name: "RETR -ERR", faults: pop3mem.Faults{ErrOn: map[string]string{"RETR": "[SYS/TEMP] try later"}}, msgs: [][]byte{message(1)},
			wantOp: "retr", wantTemp: true},
		{name: "QUIT dropped", faults: pop3mem.Faults{QuitDrop: true}, msgs: [][]byte{message(1)},
			wantGot: 1, wantOp: "quit", wantTemp: true},
		{name: "QUIT -ERR", faults: pop3mem.Faults{QuitErr: true}, msgs: [][]byte{message(1)},
			wantGot: 1, wantOp: "quit", wantTemp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := pop3mem.NewServer()
			defer srv.Close()
			for _, m := range tt.msgs {
				srv.AddMessage(m)
			}
			srv.SetFaults(tt.faults)
			cfg := fastConfig()
			if tt.bulk {
				cfg.IOTimeout, cfg.SlowWindow = 20*time.Second, 20*time.Second
			}
			start := time.Now()
			got := 0
			err := func() error {
				s, err := openSession(context.Background(), testAccount(srv), cfg)
				if err != nil {
					return err
				}
				defer s.Abort()
				items, err := s.List(context.Background())
				if err != nil {
					return err
				}
				err = s.Retrieve(context.Background(), items, tt.maxSize, func(it listItem, raw []byte) error {
					if !bytes.Equal(raw, srv.Messages()[it.Num-1].Raw) && tt.faults.LongLine == 0 {
						t.Errorf("message %d differs", it.Num)
					}
					got++
					return nil
				})
				if err != nil {
					return err
				}
				var nums []int
				for _, it := range items {
					nums = append(nums, it.Num)
				}
				if err := s.Delete(context.Background(), nums); err != nil {
					return err
				}
				return s.Quit(context.Background())
			}()
			// Not a speed check: the deadlines are 1 s or less, so a
			// session still running after 20 s (a busy CI machine is slow,
			// not that slow) ignored them.
			if el := time.Since(start); el > 20*time.Second && !tt.bulk {
				t.Errorf("took %v: a deadline was not applied", el)
			}
			if got != tt.wantGot {
				t.Errorf("fn saw %d messages, want %d", got, tt.wantGot)
			}
			if tt.wantOp == "" && tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else {
				ae := asAccountError(t, err)
				if (ae.Op != tt.wantOp && tt.wantOp != "*") || ae.Temporary != tt.wantTemp {
					t.Errorf("got op %q temporary %v (%v), want %q %v", ae.Op, ae.Temporary, err, tt.wantOp, tt.wantTemp)
				}
				if tt.wantErr == errTimeout {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("got %v, want a timeout", err)
					}
				} else if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
			}
			if n := len(srv.Deleted()); n != tt.deleted {
				t.Errorf("server deleted %d, want %d", n, tt.deleted)
			}
		})
	}
}

var errTimeout = errors.New("timeout")

// TestSlowDripRETR: every byte arrives well within the I/O timeout, so only
// the slow-drip guard (under SlowBytes in a SlowWindow) can end the RETR.
func TestSlowDripRETR(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(bytes.Repeat([]byte("x"), 2000))
	cfg := fastConfig()
	cfg.IOTimeout, cfg.SlowWindow, cfg.SlowBytes = 5*time.Second, 500*time.Millisecond, 4<<10
	s := open(t, testAccount(srv), cfg)
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(pop3mem.Faults{Drip: 5 * time.Millisecond})
	start := time.Now()
	err = s.Retrieve(context.Background(), items, 0, func(listItem, []byte) error {
		t.Error("fn called for a dripping message")
		return nil
	})
	el := time.Since(start)
	ae := asAccountError(t, err)
	var ne net.Error
	if ae.Op != "retr" || !ae.Temporary || !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "too slow") {
		t.Errorf("got %v", err)
	}
	if el < 400*time.Millisecond || el > 3*time.Second {
		t.Errorf("failed after %v, want about the 500ms slow-drip window", el)
	}
}

func TestStallAfterGreeting(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.SetFaults(pop3mem.Faults{StallAfterGreeting: true})
	cfg := fastConfig()
	cfg.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := openSession(context.Background(), testAccount(srv), cfg)
	ae := asAccountError(t, err)
	if el := time.Since(start); el > 2*time.Second || !ae.Temporary {
		t.Errorf("after %v: %v", el, err)
	}
}

func TestContextCancel(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(message(1))
	srv.SetFaults(pop3mem.Faults{StallRETRAfter: 10})
	cfg := fastConfig()
	cfg.IOTimeout, cfg.SlowWindow = time.Minute, time.Minute
	s := open(t, testAccount(srv), cfg)
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err = s.Retrieve(ctx, items, 0, func(listItem, []byte) error { return nil })
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("after %v: %v, want context.Canceled", time.Since(start), err)
	}
	if err2 := s.Quit(context.Background()); err2 == nil {
		t.Error("Quit on a broken session succeeded")
	}
}

func TestAbortCommitsNothing(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(message(1))
	s := open(t, testAccount(srv), fastConfig())
	if err := s.Delete(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	s.Abort()
	if _, err := s.List(context.Background()); err == nil {
		t.Error("List after Abort succeeded")
	}
	if len(srv.Deleted()) != 0 || len(srv.Messages()) != 1 {
		t.Errorf("abort committed deletions: %v", srv.Deleted())
	}
}

func TestFnErrorStops(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	for i := range 10 {
		srv.AddMessage(message(i))
	}
	s := open(t, testAccount(srv), fastConfig())
	items, _ := s.List(context.Background())
	boom := errors.New("disk full")
	n := 0
	err := s.Retrieve(context.Background(), items, 0, func(listItem, []byte) error {
		n++
		if n == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 3 {
		t.Errorf("err %v after %d calls", err, n)
	}
}

func TestOversizeRefusedBeforeRETR(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(bytes.Repeat([]byte("x"), 5000))
	s := open(t, testAccount(srv), fastConfig())
	items, _ := s.List(context.Background())
	err := s.Retrieve(context.Background(), items, 1000, func(listItem, []byte) error { return nil })
	if !errors.Is(err, ErrMessageTooLarge) || srv.Count("RETR") != 0 {
		t.Errorf("err %v, RETR sent %d", err, srv.Count("RETR"))
	}
	if err := s.Quit(context.Background()); err != nil {
		t.Errorf("session unusable after refusal: %v", err)
	}
}

func TestReorderedNumbers(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	for i := range 3 {
		srv.AddMessage(message(i))
	}
	srv.SetFaults(pop3mem.Faults{Reorder: true})
	byUIDL := map[string]string{}
	for range 3 {
		s := open(t, testAccount(srv), fastConfig())
		got, err := fetchAll(t, s, 0)
		if err != nil {
			t.Fatal(err)
		}
		for u, raw := range got {
			if prev, ok := byUIDL[u]; ok && prev != string(raw) {
				t.Errorf("UIDL %s changed content across sessions", u)
			}
			byUIDL[u] = string(raw)
		}
		s.Quit(context.Background())
	}
	if len(byUIDL) != 3 {
		t.Errorf("%d distinct UIDLs", len(byUIDL))
	}
}

func TestCustomDialerAndLoginDelay(t *testing.T) {
	srv := pop3mem.NewServer(pop3mem.WithCaps("UIDL", "USER", "LOGIN-DELAY 900 USER", "EXPIRE NEVER"))
	defer srv.Close()
	var dials atomic.Int32
	cfg := fastConfig()
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	s := open(t, testAccount(srv), cfg)
	if dials.Load() != 1 {
		t.Errorf("dialer called %d times", dials.Load())
	}
	c := s.Caps()
	if c.LoginDelay != 900*time.Second || !c.ExpireNever || c.Pipelining {
		t.Errorf("caps %+v", c)
	}
	if srv.Count("CAPA") != 2 {
		t.Errorf("CAPA sent %d times, want 2 (LOGIN-DELAY ... USER)", srv.Count("CAPA"))
	}
}

func TestDialSessionDefaults(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	s, err := dialSession(context.Background(), testAccount(srv), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = dialSession(context.Background(), testAccount(srv, func(a *Account) { a.Port = 1 }), nil, nil)
	if ae := asAccountError(t, err); ae.Op != "dial" || !ae.Temporary {
		t.Errorf("dial refused: %#v", ae)
	}
}

// TestBoundedMemory checks that a never-ending message and a giant line are
// cut off with allocations in proportion to the budget, not to what the
// server would send.
func TestBoundedMemory(t *testing.T) {
	for _, f := range []pop3mem.Faults{{NeverEnding: true}, {LongLine: 64 << 20}} {
		srv := pop3mem.NewServer()
		srv.AddMessage(message(1))
		srv.SetFaults(f)
		cfg := fastConfig()
		cfg.SlowWindow, cfg.IOTimeout = 5*time.Second, 5*time.Second
		s := open(t, testAccount(srv), cfg)
		items, err := s.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err = s.Retrieve(context.Background(), items, 1<<20, func(listItem, []byte) error { return nil })
		runtime.ReadMemStats(&after)
		srv.Close()
		if !errors.Is(err, ErrMessageTooLarge) {
			t.Errorf("%+v: %v", f, err)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("never-ending=%v long-line=%d: cut off after allocating %.1f MiB", f.NeverEnding, f.LongLine, float64(alloc)/(1<<20))
		if alloc > 16<<20 {
			t.Errorf("%+v: allocated %d MiB for a 1 MiB limit", f, alloc>>20)
		}
	}
}

func TestReplyErrorsKeepSessionUsable(t *testing.T) {
	srv := pop3mem.NewServer(pop3mem.WithCaps("UIDL", "TOP", "USER")) // no PIPELINING
	defer srv.Close()
	srv.AddMessage(message(1))
	srv.AddMessage(message(2))
	s := open(t, testAccount(srv), fastConfig())
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(pop3mem.Faults{ErrOn: map[string]string{"RETR": "[SYS/TEMP] busy", "DELE": "no such message"}})
	err = s.Retrieve(context.Background(), items, 0, func(listItem, []byte) error { return nil })
	if ae := asAccountError(t, err); ae.Reply != "-ERR [SYS/TEMP] busy" || !ae.Temporary || ae.Op != "retr" {
		t.Errorf("RETR -ERR: %#v", ae)
	}
	err = s.Delete(context.Background(), []int{1, 2})
	if ae := asAccountError(t, err); ae.Reply != "-ERR no such message" || ae.Op != "dele" {
		t.Errorf("DELE -ERR: %#v", ae)
	}
	if srv.Count("DELE") != 2 {
		t.Errorf("DELE sent %d times, want 2", srv.Count("DELE"))
	}
	if err := s.Quit(context.Background()); err != nil {
		t.Errorf("Quit after -ERR replies: %v", err)
	}
}

func TestPipelinedDeleteError(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	for i := range 5 {
		srv.AddMessage(message(i))
	}
	s := open(t, testAccount(srv), fastConfig())
	// Message 9 does not exist: its DELE fails, the others still count.
	err := s.Delete(context.Background(), []int{1, 9, 3})
	if ae := asAccountError(t, err); ae.Reply == "" || ae.Op != "dele" {
		t.Errorf("got %v", err)
	}
	if err := s.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := srv.Deleted(); len(d) != 2 {
		t.Errorf("deleted %v, want messages 1 and 3", d)
	}
}

func TestEmptyMaildrop(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	s := open(t, testAccount(srv), fastConfig())
	items, err := s.List(context.Background())
	if err != nil || len(items) != 0 {
		t.Fatalf("List = %v, %v", items, err)
	}
	if err := s.Retrieve(context.Background(), nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := s.HeaderDigests(context.Background(), nil); err != nil || len(d) != 0 {
		t.Fatal(d, err)
	}
	if err := s.Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if log := strings.Join(srv.Log(), ","); log != "CAPA,USER alice,PASS ***,LIST,UIDL,QUIT" {
		t.Errorf("commands %s", log)
	}
}

// TestPipelinedLongLines: lines far longer than a status line, pipelined
// back to back, must not trip the status-line limit through read-ahead.
func TestPipelinedLongLines(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	var want [][]byte
	for i := range 20 {
		m := pop3mem.Normalize(append([]byte(fmt.Sprintf("Subject: %d\r\n\r\n", i)), bytes.Repeat([]byte{'a' + byte(i)}, 50<<10+i*517)...))
		srv.AddMessage(m)
		want = append(want, m)
	}
	s := open(t, testAccount(srv), fastConfig())
	items, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = s.Retrieve(context.Background(), items, 1<<20, func(it listItem, raw []byte) error {
		if !bytes.Equal(raw, want[it.Num-1]) {
			t.Errorf("message %d differs", it.Num)
		}
		n++
		return nil
	})
	if err != nil || n != 20 {
		t.Fatalf("%d messages, %v", n, err)
	}
}

func TestBadConfig(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	tests := []struct {
		name string
		mod  func(*Account)
	}{
		{"unknown tls mode", func(a *Account) { a.TLS = "" }},
		{"missing CA file", func(a *Account) { a.TLS, a.TLSCAFile = "implicit", "/nonexistent/ca.pem" }},
		{"CA file without PEM", func(a *Account) { a.TLS, a.TLSCAFile = "starttls", "session_test.go" }},
		{"unknown auth", func(a *Account) { a.Auth = "cram-md5" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openSession(context.Background(), testAccount(srv, tt.mod), fastConfig())
			ae := asAccountError(t, err)
			if ae.Temporary || !errors.Is(err, ErrBadConfig) {
				t.Errorf("got %v (temporary %v), want permanent ErrBadConfig", err, ae.Temporary)
			}
		})
	}
	if n := srv.Connections(); n != 0 {
		t.Errorf("connected %d times with an unusable configuration", n)
	}
}
