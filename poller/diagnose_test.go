package poller

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// TestDiagnoseHints: each connection failure a setting explains ends in a
// hint naming the setting, quoted here as the user reads it.
func TestDiagnoseHints(t *testing.T) {
	p := testpki.New(t)
	other := testpki.New(t)
	expired := testpki.New(t, testpki.Expired())
	wrongName := testpki.New(t, testpki.Names("pop.other.example"))
	tests := []struct {
		name     string
		cert     *testpki.PKI
		implicit bool // server speaks TLS from the first byte
		faults   pop3mem.Faults
		mode, ca string
		want     string
	}{
		{name: "plain POP3 against a TLS port", cert: p, implicit: true, mode: "none",
			want: `no POP3 greeting from ADDR, but it answers a TLS handshake: this port uses TLS from the first byte; set tls = "implicit"`},
		{name: "STLS against a TLS port", cert: p, implicit: true, mode: "starttls", ca: p.CAFile,
			want: `no POP3 greeting from ADDR, but it answers a TLS handshake: this port uses TLS from the first byte; set tls = "implicit"`},
		{name: "implicit TLS against a plain port with STLS", cert: p, mode: "implicit", ca: p.CAFile,
			want: `ADDR sent a plain POP3 greeting, not TLS, and offers STLS: set tls = "starttls" (or port = 995 with tls = "implicit")`},
		{name: "implicit TLS against a plain port without STLS", cert: p, mode: "implicit", ca: p.CAFile, faults: pop3mem.Faults{NoSTLS: true},
			want: `ADDR sent a plain POP3 greeting, not TLS, and offers no STLS: use the server's TLS port (usually 995) with tls = "implicit"; tls = "none" sends the password unencrypted`},
		{name: "unknown CA, system roots", cert: other, implicit: true, mode: "implicit",
			want: `the server's certificate is not signed by a CA this system trusts: for a private or self-signed CA, set tls_ca_file to its PEM file (tls_skip_verify = true only for testing)`},
		{name: "unknown CA, another tls_ca_file", cert: other, implicit: true, mode: "implicit", ca: p.CAFile,
			want: `the server's certificate is not signed by a CA this system trusts nor by tls_ca_file ` + p.CAFile + `: set tls_ca_file to the CA that signed it`},
		{name: "certificate for another name", cert: wrongName, implicit: true, mode: "implicit", ca: wrongName.CAFile,
			want: `the server's certificate is for pop.other.example, not "127.0.0.1": set host to one of those names`},
		{name: "expired certificate", cert: expired, mode: "starttls", ca: expired.CAFile,
			want: `the server's certificate has expired or is not valid yet: tell the provider, and check this machine's clock`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := pop3mem.NewUnstartedServer(pop3mem.WithTLS(tt.cert.ServerConfig()))
			if tt.implicit {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			srv.SetFaults(tt.faults)
			cfg := fastConfig()
			cfg.DialTimeout = time.Second
			a := testAccount(srv, func(a *Account) { a.TLS, a.TLSCAFile = tt.mode, tt.ca })
			start := time.Now()
			_, err := openSession(context.Background(), a, cfg)
			ae := asAccountError(t, err)
			want := strings.ReplaceAll(tt.want, "ADDR", srv.Addr())
			if ae.Hint != want {
				t.Errorf("hint:\n got %q\nwant %q\n(error %v)", ae.Hint, want, err)
			}
			if !strings.HasSuffix(err.Error(), "; "+want) {
				t.Errorf("error text does not end with the hint: %v", err)
			}
			if el := time.Since(start); el > 4*time.Second {
				t.Errorf("diagnosis took %v", el)
			}
			if srv.Count("USER")+srv.Count("PASS")+srv.Count("AUTH") != 0 {
				t.Error("credentials were sent")
			}
		})
	}
}

// TestDiagnoseSilentServer: a port that accepts and says nothing (and is
// no TLS server either) is named as the problem.
func TestDiagnoseSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	cfg := fastConfig()
	cfg.DialTimeout = 500 * time.Millisecond
	a := Account{Name: "work", Host: host, Port: atoi(t, port), TLS: "none", Username: "u", Secret: secret("p"), Auth: "user"}
	_, err = openSession(context.Background(), a, cfg)
	ae := asAccountError(t, err)
	want := `no POP3 greeting from ` + ln.Addr().String() + ` within 500ms: check host and port (POP3 is port 110 with tls = "starttls" or "none", port 995 with tls = "implicit")`
	if ae.Hint != want {
		t.Errorf("hint:\n got %q\nwant %q", ae.Hint, want)
	}
}

// TestDiagnoseNoSTLS: a server without STLS is probed for implicit TLS;
// the hint says whether tls = "implicit" on that port works.
func TestDiagnoseNoSTLS(t *testing.T) {
	p := testpki.New(t)
	plain := pop3mem.NewUnstartedServer(pop3mem.WithTLS(p.ServerConfig()))
	plain.Start()
	defer plain.Close()
	plain.SetFaults(pop3mem.Faults{NoSTLS: true})
	tlsSrv := pop3mem.NewUnstartedServer(pop3mem.WithTLS(p.ServerConfig()))
	tlsSrv.StartTLS()
	defer tlsSrv.Close()

	cfg := fastConfig()
	cfg.setDefaults()
	a := testAccount(plain, func(a *Account) { a.TLS, a.TLSCAFile = "starttls", p.CAFile })
	_, _, _, err := connectOnce(context.Background(), a, &cfg)
	if err == nil {
		t.Fatal("connected without STLS")
	}
	err = diagnose(context.Background(), a, &cfg, err, tlsSrv.Port())
	ae := asAccountError(t, err)
	want := `the server does not offer STLS on port ` + itoa(plain.Port()) + `, but implicit TLS on port ` + itoa(tlsSrv.Port()) +
		` works: set tls = "implicit" and port = ` + itoa(tlsSrv.Port())
	if ae.Hint != want {
		t.Errorf("hint:\n got %q\nwant %q", ae.Hint, want)
	}

	// Nothing on the TLS port: the hint says so and names the risk of "none".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, _, _, err = connectOnce(context.Background(), a, &cfg)
	err = diagnose(context.Background(), a, &cfg, err, closedPort)
	want = `the server does not offer STLS on port ` + itoa(plain.Port()) + ` and no verified implicit TLS was found on port ` + itoa(closedPort) +
		`: ask the provider for its TLS port (then tls = "implicit"); tls = "none" works but sends the password unencrypted, only for a trusted network`
	if ae := asAccountError(t, err); ae.Hint != want {
		t.Errorf("hint:\n got %q\nwant %q", ae.Hint, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
