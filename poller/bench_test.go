package poller

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// commands counts every POP3 command a pop3mem server received.
func commands(srv *pop3mem.Server) int {
	n := 0
	for _, c := range []string{"CAPA", "USER", "PASS", "APOP", "AUTH", "STLS", "STAT", "LIST", "UIDL", "TOP", "RETR", "DELE", "RSET", "NOOP", "QUIT"} {
		n += srv.Count(c)
	}
	return n
}

// BenchmarkFetch measures a first fetch of 2,000 realistic messages (mean
// about 50 KB, some with attachments) from pop3mem on loopback into a real
// store in a temporary directory, with full durability (synchronous=FULL,
// group commits). Reports msgs/s and MB/s.
func BenchmarkFetch(b *testing.B) {
	const n = 2000
	r := rand.New(rand.NewPCG(3, 4))
	var msgs [][]byte
	var total int64
	for i := 0; i < n; i++ {
		m := []byte(realisticMessage(r, i, 50_000))
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		srv := pop3mem.NewServer()
		for _, m := range msgs {
			srv.AddMessage(m)
		}
		st := openStore(b, nil)
		a := upstreamAccount(srv, nil)
		p := New(Options{Sink: st, Accounts: []Account{a}})
		b.StartTimer()
		start := time.Now()
		res, err := p.PollOnce(context.Background(), a.Name, nil)
		elapsed += time.Since(start)
		b.StopTimer()
		if err != nil || res.Fetched != n {
			b.Fatalf("fetch = %+v, %v", res, err)
		}
		srv.Close()
		b.StartTimer()
	}
	secs := elapsed.Seconds() / float64(b.N)
	b.ReportMetric(float64(n)/secs, "msgs/s")
	b.ReportMetric(float64(total)/secs/1e6, "MB/s")
}

// BenchmarkIdlePoll measures a poll of a maildrop of 10,000 messages that
// are all known: commands sent per poll and time per poll.
func BenchmarkIdlePoll(b *testing.B) {
	const n = 10000
	srv := pop3mem.NewServer()
	defer srv.Close()
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < n; i++ {
		srv.AddMessage([]byte(realisticMessage(r, i, 1500)))
	}
	st := openStore(b, nil)
	a := upstreamAccount(srv, nil)
	p := New(Options{Sink: st, Accounts: []Account{a}})
	if res, err := p.PollOnce(context.Background(), a.Name, nil); err != nil || res.Fetched != n {
		b.Fatalf("initial fetch = %+v, %v", res, err)
	}
	before := commands(srv)
	for b.Loop() {
		res, err := p.PollOnce(context.Background(), a.Name, nil)
		if err != nil || res.Fetched != 0 || res.Listed != n {
			b.Fatalf("idle poll = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(commands(srv)-before)/float64(b.N), "cmds/poll")
	if srv.Count("RETR") != n || srv.Count("TOP") != 0 {
		b.Errorf("idle polls sent RETR/TOP: RETR %d TOP %d", srv.Count("RETR"), srv.Count("TOP"))
	}
}
