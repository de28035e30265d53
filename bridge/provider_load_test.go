package bridge

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
	"github.com/popbridge/popbridge/store"
)

var (
	provLoad     = flag.Bool("provider.load", false, "run TestProviderLoad (provider mode at scale against Dovecot; minutes)")
	provUsers    = flag.Int("provider.users", 10000, "TestProviderLoad: provider users in Dovecot, provisioned before the start")
	provLogged   = flag.Int("provider.logged", 1000, "TestProviderLoad: users logged in over IMAP at once")
	provIdle     = flag.Int("provider.idle", 500, "TestProviderLoad: of those, users in IDLE")
	provInterval = flag.Duration("provider.interval", 5*time.Minute, "TestProviderLoad: poll_interval")
	provCycle    = flag.Duration("provider.cyclewait", 30*time.Minute, "TestProviderLoad: longest wait for the first full polling cycle")
	provProfile  = flag.String("provider.cpuprofile", "", "TestProviderLoad: write popbridge's CPU profile of the steady-state window to this file")
)

// procStat returns the CPU time (user+system) and RSS of process pid.
func procStat(t *testing.T, pid int) (cpu time.Duration, rssKiB int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			rssKiB, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
		}
	}
	return cpu, rssKiB
}

// metricSum adds the values of every series of name in a /metrics text.
func metricSum(text, name string) float64 {
	var sum float64
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestProviderLoad: -provider.users provider users (3 small messages each)
// in a private Dovecot, provisioned (sealed passwords) before popbridge
// starts; -provider.logged of them log in over IMAP at once,
// -provider.idle of those in IDLE; a new user with 100 messages logs in.
// It logs the time to that user's first full INBOX, the duration of the
// first full polling cycle, the most POP sessions seen open (sampled every
// 100 ms), and popbridge's CPU and RSS in steady state. Before popbridge
// starts, popProbe measures what the bare Dovecot serves (its ceiling).
// Run:
//
//	go test ./bridge -run 'TestProviderLoad$' -provider.load -v -timeout 60m
func TestProviderLoad(t *testing.T) {
	if !*provLoad {
		t.Skip("-provider.load not set")
	}
	n := *provUsers
	users := dovecottest.ManyUsers("u", n)
	users["newbie"] = "pw-newbie"
	t0 := time.Now()
	dc := dovecottest.Start(t, dovecottest.Options{Users: users, Extra: loadDovecotExtra})
	for name := range users {
		if name == "newbie" {
			continue
		}
		for i := 1; i <= 3; i++ {
			dc.AddMessage(t, name, providerMsg(name, i))
		}
	}
	for i := 1; i <= 100; i++ {
		dc.AddMessage(t, "newbie", providerMsg("newbie", i))
	}
	t.Logf("dovecot with %d users ready in %v", n+1, time.Since(t0).Round(time.Second))
	popProbe(t, fmt.Sprintf("127.0.0.1:%d", dc.POP3Port), users, 15*time.Second)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	ctx := context.Background()
	t0 = time.Now()
	st, err := store.Open(ctx, filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	aead, err := loadProviderKey(filepath.Join(dir, "provider.key"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range users {
		if name == "newbie" {
			continue
		}
		if _, err := st.EnsureUser(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := st.PutProviderUser(ctx, store.ProviderUser{Name: name, Credential: sealCredential(aead, name, pw)}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	t.Logf("%d provider users provisioned in %v", n, time.Since(t0).Round(time.Second))

	imapPort, httpPort := freeTCPPort(t), freeTCPPort(t)
	cfgText := fmt.Sprintf(`data_dir = "data"
[imap]
listen = "127.0.0.1:%d"
max_connections = %d
trusted_networks = ["127.0.0.0/8"]
[http]
listen = "127.0.0.1:%d"
[provider]
host = "127.0.0.1"
port = %d
tls = "none"
poll_interval = %q
credentials = "encrypted"
max_upstream_connections = 20
`, imapPort, *provLogged+100, httpPort, dc.POP3Port, provInterval.String())
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestNodeChild$")
	child.Env = append(os.Environ(), nodeChildEnv+"="+cfgPath)
	if *provProfile != "" {
		abs, err := filepath.Abs(*provProfile)
		if err != nil {
			t.Fatal(err)
		}
		child.Env = append(child.Env, nodeProfileEnv+"="+abs)
	}
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		child.Wait()
	}()
	pid := child.Process.Pid
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	scrape := func() string {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, "popbridge up", func() bool { return scrape() != "" })
	t.Logf("popbridge up in %v", time.Since(start).Round(time.Millisecond))

	// Sample the POP sessions open and count the polls done.
	var maxOpen atomic.Int64
	var cycleDone atomic.Int64 // unix nanos when every user had a poll
	stopSample := make(chan struct{})
	var sampleWG sync.WaitGroup
	sampleWG.Add(1)
	go func() {
		defer sampleWG.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var last time.Time
		for {
			select {
			case <-stopSample:
				return
			case <-tick.C:
			}
			// Every 100 ms until the first full cycle (the busiest
			// time for POP sessions), then every 15 s, as Prometheus
			// would scrape a provider's node: /metrics at 10 Hz was a
			// sixth of popbridge's CPU in steady state.
			if cycleDone.Load() != 0 && time.Since(last) < 15*time.Second {
				continue
			}
			last = time.Now()
			m := scrape()
			if m == "" {
				continue
			}
			if o := int64(metricSum(m, "popbridge_provider_connections_open")); o > maxOpen.Load() {
				maxOpen.Store(o)
			}
			// The cycle ends when every user's 3 messages are
			// stored (the polls counter also counts the polls
			// that logins and IMAP activity ask for, so it
			// reaches n before every user had a poll).
			if cycleDone.Load() == 0 && int(metricSum(m, "popbridge_provider_delivered_messages_total")) >= 3*n+100 {
				cycleDone.Store(time.Now().UnixNano())
			}
		}
	}()
	defer func() {
		close(stopSample)
		sampleWG.Wait()
	}()

	addr := fmt.Sprintf("127.0.0.1:%d", imapPort)
	// The new user with 100 messages: login to a full INBOX.
	t1 := time.Now()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("newbie", "pw-newbie").Wait(); err != nil {
		t.Fatal(err)
	}
	loginTook := time.Since(t1)
	for {
		d, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if *d.NumMessages == 100 {
			break
		}
		if time.Since(t1) > 2*time.Minute {
			t.Fatalf("newbie's INBOX has %d messages after 2 minutes", *d.NumMessages)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new user, 100 messages: login %v, first full INBOX %v after the LOGIN was sent",
		loginTook.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	c.Logout().Wait()

	// -provider.logged users log in at once (50 at a time), -provider.idle
	// of them IDLE.
	t2 := time.Now()
	names := make([]string, 0, *provLogged)
	for name := range users {
		if name != "newbie" && len(names) < *provLogged {
			names = append(names, name)
		}
	}
	var (
		mu      sync.Mutex
		clients []*imapclient.Client
		idles   []*imapclient.IdleCommand
		failed  atomic.Int64
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 50)
	)
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := imapclient.DialInsecure(addr, nil)
			if err != nil {
				failed.Add(1)
				return
			}
			if err := c.Login(name, users[name]).Wait(); err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			var idle *imapclient.IdleCommand
			if i < *provIdle {
				if idle, err = c.Idle(); err != nil {
					failed.Add(1)
				}
			}
			mu.Lock()
			clients = append(clients, c)
			if idle != nil {
				idles = append(idles, idle)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d users logged in (%d in IDLE, %d failures) in %v", len(clients), len(idles), failed.Load(), time.Since(t2).Round(time.Millisecond))
	if failed.Load() > 0 {
		t.Errorf("%d logins failed", failed.Load())
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	waitCycle := *provCycle
	deadline := start.Add(waitCycle)
	for cycleDone.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if cycleDone.Load() == 0 {
		m := scrape()
		t.Errorf("no full polling cycle within %v: %v polls, %v of %d messages stored", waitCycle,
			metricSum(m, "popbridge_provider_polls_total"), metricSum(m, "popbridge_provider_delivered_messages_total"), 3*n+100)
	} else {
		t.Logf("first full polling cycle (%d users, poll_interval %v): %v after start",
			n, *provInterval, time.Unix(0, cycleDone.Load()).Sub(start).Round(time.Second))
	}
	if *provProfile != "" {
		child.Process.Signal(syscall.SIGUSR1)
	}
	cpu0, _ := procStat(t, pid)
	w0 := time.Now()
	time.Sleep(60 * time.Second) // the measurement window itself
	cpu1, rss := procStat(t, pid)
	if *provProfile != "" {
		child.Process.Signal(syscall.SIGUSR2)
	}
	window := time.Since(w0)
	m := scrape()
	t.Logf("steady state over %v: CPU %.1f%% of one core (%.1f%% of the machine's %d), RSS %d MiB, polls so far %v (errors %v), POP sessions open at most %d (cap 20), load %s",
		window.Round(time.Second), 100*(cpu1-cpu0).Seconds()/window.Seconds(), 100*(cpu1-cpu0).Seconds()/window.Seconds()/2, 2,
		rss/1024, metricSum(m, "popbridge_provider_polls_total"), metricSum(m, `popbridge_provider_polls_total{result="error"}`),
		maxOpen.Load(), loadavg())
}

// loadDovecotExtra is the Dovecot of a provider with thousands of users:
// login and pop3 processes are reused (Dovecot's "high-performance mode")
// instead of started for every connection. Started per connection, on the
// shared 2-core machine at load 19, Dovecot accepted about 6 POP sessions a
// second from 20 clients (a greeting took 3.6 s), which bounded popbridge's
// polls; reused, 46 a second at load 27.
const loadDovecotExtra = `default_process_limit = 200
service pop3-login {
  service_count = 0
  process_min_avail = 2
}
service pop3 {
  service_count = 0
  process_min_avail = 20
}
`

// popProbe measures the bare POP server for d: 20 clients (popbridge's
// max_upstream_connections) each running a provider poll's session in a
// loop (greeting, USER/PASS, UIDL, RETR of the first 3 messages, QUIT)
// over users in turn. It logs sessions per second and each phase's mean:
// the ceiling of popbridge's polls on this machine at this load.
func popProbe(t *testing.T, addr string, users map[string]string, d time.Duration) {
	t.Helper()
	var names []string
	for name := range users {
		names = append(names, name)
	}
	var (
		next, done atomic.Int64
		phase      [5]atomic.Int64
		wg         sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				u := names[int(next.Add(1))%len(names)]
				t0 := time.Now()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				br := bufio.NewReader(c)
				ok := func() bool {
					l, err := br.ReadString('\n')
					return err == nil && strings.HasPrefix(l, "+OK")
				}
				cmd := func(format string, args ...any) bool {
					fmt.Fprintf(c, format+"\r\n", args...)
					return ok()
				}
				multi := func() bool {
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return false
						}
						if l == ".\r\n" {
							return true
						}
					}
				}
				var at [5]time.Time
				good := ok()
				at[0] = time.Now()
				good = good && cmd("USER %s", u) && cmd("PASS %s", users[u])
				at[1] = time.Now()
				good = good && cmd("UIDL") && multi()
				at[2] = time.Now()
				for i := 1; good && i <= 3; i++ {
					good = cmd("RETR %d", i) && multi()
				}
				at[3] = time.Now()
				good = good && cmd("QUIT")
				c.Close()
				at[4] = time.Now()
				if !good {
					t.Errorf("POP session of %s failed", u)
					return
				}
				prev := t0
				for i, a := range at {
					phase[i].Add(int64(a.Sub(prev)))
					prev = a
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	k := max(done.Load(), 1)
	mean := func(i int) time.Duration { return time.Duration(phase[i].Load() / k).Round(time.Millisecond) }
	t.Logf("bare POP server, 20 clients, %v: %.1f sessions/s; mean greeting %v, login %v, UIDL %v, 3 RETR %v, QUIT %v; load %s",
		d, float64(done.Load())/d.Seconds(), mean(0), mean(1), mean(2), mean(3), mean(4), loadavg())
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func loadavg() string {
	f, err := os.Open("/proc/loadavg")
	if err != nil {
		return "?"
	}
	defer f.Close()
	l, _ := bufio.NewReader(f).ReadString(' ')
	return strings.TrimSpace(l)
}
