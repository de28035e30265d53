package poller

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// slowMessage returns a message of about size bytes (CRLF lines).
func slowMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.com\r\nSubject: a large message on a slow link\r\nMessage-ID: <slow@test>\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "line %06d of a large message that a slow but steady server sends at 1 KB/s\r\n", i)
	}
	return b.Bytes()
}

// TestSlowSteadyLargeMessage: a server sending a 300 KB message at 1 KB/s
// (5 minutes) must get it stored, not time out on a total deadline and
// retry forever. The test runs 100 times faster: the session's timeouts
// are the defaults divided by 100 (I/O timeout 600 ms, slow-drip window
// 1.2 s) and the server sends 100 KB/s, so the transfer takes about 3 s.
// The fixed deadline this replaced (2 min + twice the size at 16 KB/s,
// scaled alike: 2.2 s) failed it every time.
func TestSlowSteadyLargeMessage(t *testing.T) {
	const scale = 100
	msg := slowMessage(300_000)
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(msg)
	srv.SetFaults(pop3mem.Faults{Rate: 1000 * scale})
	st := openStore(t, nil)
	a := testAccount(srv)
	a.User = "alice"
	p := New(Options{Sink: st, Accounts: []Account{a}})
	p.sessCfg.IOTimeout = defaultIOTimeout / scale
	p.sessCfg.SlowWindow = defaultSlowWindow / scale
	start := time.Now()
	res, err := p.PollOnce(context.Background(), a.Name, nil)
	el := time.Since(start)
	t.Logf("%d bytes at %d bytes/s: %+v after %v", len(msg), 1000*scale, res, el.Round(time.Millisecond))
	if err != nil || res.Fetched != 1 {
		t.Fatalf("the 300 KB message was not stored: %v", err)
	}
	if el < 2*time.Second {
		t.Errorf("took %v: the server did not throttle, the test proves nothing", el)
	}
	checkBodies(t, mailboxBodies(t, st, "alice", "INBOX"), []string{string(msg)})
}

// TestSlowDripStillCut: a server that drips (under 4 KiB per window) is
// still cut off, also at the poller level, and the error says why.
func TestSlowDripStillCut(t *testing.T) {
	srv := pop3mem.NewServer()
	defer srv.Close()
	srv.AddMessage(slowMessage(20_000))
	st := openStore(t, nil)
	a := testAccount(srv)
	a.User = "alice"
	p := New(Options{Sink: st, Accounts: []Account{a}})
	p.sessCfg.IOTimeout, p.sessCfg.SlowWindow, p.sessCfg.SlowBytes = 2*time.Second, 300*time.Millisecond, 4<<10
	srv.SetFaults(pop3mem.Faults{Rate: 2000}) // 600 bytes per window
	start := time.Now()
	_, err := p.PollOnce(context.Background(), a.Name, nil)
	if err == nil {
		t.Fatal("a dripping server's message was stored")
	}
	ae := asAccountError(t, err)
	if !ae.Temporary || !bytes.Contains([]byte(err.Error()), []byte("too slow")) {
		t.Errorf("got %v, want a temporary 'too slow' error", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("cut after %v, want about one 300 ms window", el)
	}
}
