package demo

import (
	"context"
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
