package imapfront

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// startServer runs a server outside newEnv so the test controls Shutdown.
func startServer(t *testing.T) (*Server, *store.Store, string, chan error) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := Options{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for name, h := range testHashes() {
		o.Users = append(o.Users, User{Name: name, PasswordHash: h})
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return srv, st, ln.Addr().String(), done
}

func TestShutdownSendsBye(t *testing.T) {
	srv, _, addr, served := startServer(t)
	env := &testEnv{t: t, addr: addr}
	idle := env.rawLogin("alice")
	idle.ok("SELECT INBOX")
	idle.idle()
	authed := env.rawLogin("bob")
	fresh := env.raw()

	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	for name, c := range map[string]*rawClient{"idle": idle, "authenticated": authed, "not authenticated": fresh} {
		l, err := c.readLine(ioWait)
		if err != nil || !strings.HasPrefix(l, "* BYE") {
			t.Errorf("%s: got %q, %v; want BYE", name, l, err)
		}
		if _, err := c.readLine(ioWait); err == nil {
			t.Errorf("%s: connection still open", name)
		}
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("listener still accepts")
	}
	if err := srv.Shutdown(ctx); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// TestShutdownForceCloses: a connection that never becomes quiet (its
// client does not read a large FETCH) is closed when ctx ends.
func TestShutdownForceCloses(t *testing.T) {
	srv, st, addr, served := startServer(t)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 1022)+"\r\n", 512) // 512 KiB
	if _, err := st.EnsureUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1; i++ {
		if _, err := st.Deliver(context.Background(), []store.Delivery{{Account: "a", UIDL: itoa(i), Digest: itoa(i), User: "alice", Folder: "INBOX", Raw: []byte(big)}}); err != nil {
			t.Fatal(err)
		}
	}
	env := &testEnv{t: t, addr: addr}
	c := env.rawLogin("alice")
	c.ok("SELECT INBOX")
	// 20 MiB of answer, which the client never reads.
	c.write("f1 FETCH 1 (%s)", strings.TrimSpace(strings.Repeat("BODY.PEEK[] ", 40)))
	// The server is busy writing once the first response has started.
	c.conn.SetReadDeadline(time.Now().Add(ioWait))
	if l, err := c.br.ReadString('{'); err != nil || !strings.HasPrefix(l, "* 1 FETCH") {
		t.Fatalf("FETCH start: %q %v", l, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second { // a missed deadline would hang for the 5-minute write timeout
		t.Fatalf("Shutdown took %v", d)
	}
	<-served
}
