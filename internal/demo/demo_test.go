package demo

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/bridge"
)

// runDemo runs the demo on dir until the first poll after start has
// finished, and returns the INBOX message count seen over IMAP.
func runDemo(t *testing.T, dir string) uint32 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *bridge.Bridge, 1)
	errc := make(chan error, 1)
	begin := time.Now()
	go func() {
		errc <- Run(ctx, Options{Listen: "127.0.0.1:0", DataDir: dir, Every: -1, Started: func(b *bridge.Bridge) { started <- b }})
	}()
	var b *bridge.Bridge
	select {
	case b = <-started:
	case err := <-errc:
		t.Fatalf("demo: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		polled := false
		for _, s := range b.Status() {
			polled = polled || (!s.Polling && s.LastSuccess.After(begin))
		}
		if polled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no poll finished")
		}
		b.PollNow(Account)
		time.Sleep(50 * time.Millisecond)
	}
	c, err := imapclient.DialInsecure(b.Addrs().IMAP.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(User, Password).Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("demo stopped with %v", err)
	}
	return *st.NumMessages
}

// TestDemoKeptDataNoDuplicates restarts the demo on a kept data directory:
// the sample mail must not be fetched a second time.
func TestDemoKeptDataNoDuplicates(t *testing.T) {
	dir := t.TempDir()
	want := uint32(len(Corpus(time.Now())))
	if got := runDemo(t, dir); got != want {
		t.Fatalf("first run: %d messages, want %d", got, want)
	}
	if got := runDemo(t, dir); got != want {
		t.Errorf("second run on the same data: %d messages, want %d (duplicates)", got, want)
	}
}

// TestSettingsIPv6URL: the banner's URLs put an IPv6 address in brackets.
func TestSettingsIPv6URL(t *testing.T) {
	for _, tt := range []struct {
		ip   net.IP
		want string
	}{
		{net.IPv6loopback, "imap://demo:demo@[::1]:1143/INBOX"},
		{net.IPv4(127, 0, 0, 1), "imap://demo:demo@127.0.0.1:1143/INBOX"},
	} {
		var b strings.Builder
		printSettings(&b, bridge.Addrs{IMAP: &net.TCPAddr{IP: tt.ip, Port: 1143}}, "/tmp/x", true, 0, 3)
		if !strings.Contains(b.String(), "mutt -f '"+tt.want+"'") {
			t.Errorf("banner for %v lacks %s:\n%s", tt.ip, tt.want, b.String())
		}
		if !strings.Contains(b.String(), "Server:               "+tt.ip.String()+"\n") {
			t.Errorf("banner for %v: Server line without brackets expected:\n%s", tt.ip, b.String())
		}
	}
}
