package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/testenv"
)

// TestBuildFailureStartsNothing: when a later part fails to build (a
// listen address in use), Run returns its error having started nothing:
// the upstream was never polled, the listeners bound before the failure
// are closed (nothing accepts a connection there), and the store is closed
// (another Run on the same data directory starts). The bridge's own log
// says so too: no part was announced as started.
func TestBuildFailureStartsNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range []struct {
		name    string
		setup   func(c *Config)
		wantErr string
	}{
		{"imaps listener in use", func(c *Config) { c.IMAP.ListenTLS = busy.Addr().String() }, "listen imaps"},
		{"http listener in use", func(c *Config) { c.HTTP.Listen = busy.Addr().String() }, "listen http"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := upstream(t, 2)
			cfg := testConfig(t, up)
			port, err := testenv.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			imapAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			cfg.IMAP.Listen = imapAddr
			tt.setup(cfg)
			var logs syncBuffer
			err = New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run = %v, want an error with %q", err, tt.wantErr)
			}
			if strings.Contains(logs.String(), "msg=started") {
				t.Errorf("a part was started before the failure:\n%s", logs.String())
			}
			if n := up.Connections(); n != 0 {
				t.Errorf("upstream saw %d connections: the poller ran", n)
			}
			if c, err := net.Dial("tcp", imapAddr); err == nil {
				c.Close()
				t.Errorf("IMAP address %s still accepts connections", imapAddr)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dial %s: %v, want connection refused", imapAddr, err)
			}
			cfg.IMAP.ListenTLS, cfg.HTTP.Listen = "", "127.0.0.1:0"
			if err := run(t, New(cfg, nil))(); err != nil {
				t.Errorf("second Run: %v", err)
			}
		})
	}
}
