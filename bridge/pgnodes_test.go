package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// pgNode is one popbridge node of a test cluster: a Bridge on the shared
// PostgreSQL database, with its own data_dir and listeners.
type pgNode struct {
	name string
	b    *Bridge
	stop func() error
}

// testPollLease is the account lease of the nodes of these tests: short,
// so that a takeover after a kill happens within seconds.
const testPollLease = 3 * time.Second

// pgConfig is testConfig on the PostgreSQL database dsn, as node name.
func pgConfig(t *testing.T, dsn, name string, ups ...*pop3mem.Server) *Config {
	t.Helper()
	c := testConfig(t, ups...)
	c.Store = StoreConfig{Backend: BackendPostgres, DSN: dsn, NodeName: name, PollLease: Duration{Value: testPollLease}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func startNode(t *testing.T, cfg *Config) *pgNode {
	t.Helper()
	b := New(cfg, nil)
	return &pgNode{name: cfg.Store.NodeName, b: b, stop: run(t, b)}
}

// login opens an IMAP session to the node as user u.
func (n *pgNode) login(t *testing.T, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(n.b.Addrs().IMAP.String(), &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatalf("node %s: dial: %v", n.name, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("u", "pw").Wait(); err != nil {
		t.Fatalf("node %s: login: %v", n.name, err)
	}
	return c
}

// TestPostgresNodes runs several popbridge nodes on one private PostgreSQL
// (Debian's package, started by pgtest; each subtest has its own database).
func TestPostgresNodes(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	var dbs int
	newDB := func(t *testing.T) string {
		dbs++
		return srv.CreateDatabase(t, fmt.Sprintf("nodes%d", dbs))
	}

	// A flag set on node A and a message appended on node A reach an IDLE
	// session on node B.
	t.Run("IdlePushAcrossNodes", func(t *testing.T) {
		dsn := newDB(t)
		a := startNode(t, pgConfig(t, dsn, "a"))
		bn := startNode(t, pgConfig(t, dsn, "b"))
		ca := a.login(t, nil)
		appendMsg(t, ca, "INBOX", "first")

		var mu sync.Mutex
		var exists uint32
		flagged := map[uint32]bool{}
		cb := bn.login(t, &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					mu.Lock()
					exists = *d.NumMessages
					mu.Unlock()
				}
			},
			Fetch: func(m *imapclient.FetchMessageData) {
				buf, err := m.Collect()
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, f := range buf.Flags {
					if f == imap.FlagFlagged {
						flagged[buf.SeqNum] = true
					}
				}
			},
		})
		if sel, err := cb.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
			t.Fatalf("node b: select: %v, %+v", err, sel)
		}
		idle, err := cb.Idle()
		if err != nil {
			t.Fatal(err)
		}
		// STORE on a, seen by b's IDLE.
		if _, err := ca.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := ca.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "\\Flagged pushed to node b", func() bool { mu.Lock(); defer mu.Unlock(); return flagged[1] })
		// APPEND on a, EXISTS on b.
		appendMsg(t, ca, "INBOX", "second")
		waitFor(t, "EXISTS 2 pushed to node b", func() bool { mu.Lock(); defer mu.Unlock(); return exists == 2 })
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
	})

	// Clients on both nodes append into one mailbox at once: every APPENDUID
	// is distinct, each node's are increasing, and the mailbox holds them
	// all under exactly those UIDs.
	t.Run("ConcurrentAppend", func(t *testing.T) {
		dsn := newDB(t)
		nodes := []*pgNode{startNode(t, pgConfig(t, dsn, "a")), startNode(t, pgConfig(t, dsn, "b"))}
		const perClient, clientsPerNode = 25, 2
		var mu sync.Mutex
		all := map[imap.UID]string{}
		var wg sync.WaitGroup
		errc := make(chan error, len(nodes)*clientsPerNode)
		for _, n := range nodes {
			for k := range clientsPerNode {
				c := n.login(t, nil)
				wg.Add(1)
				go func() {
					defer wg.Done()
					var last imap.UID
					for i := range perClient {
						body := fmt.Sprintf("%s-%d-%d", n.name, k, i)
						uid, err := appendUID(c, "INBOX", body)
						if err != nil {
							errc <- fmt.Errorf("node %s: %w", n.name, err)
							return
						}
						if uid <= last {
							errc <- fmt.Errorf("node %s client %d: UID %d after %d", n.name, k, uid, last)
							return
						}
						last = uid
						mu.Lock()
						if prev, dup := all[uid]; dup {
							errc <- fmt.Errorf("UID %d given to %s and %s", uid, prev, body)
						}
						all[uid] = body
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		want := len(nodes) * clientsPerNode * perClient
		if len(all) != want {
			t.Fatalf("%d distinct UIDs, want %d", len(all), want)
		}
		// Read back on node b: every UID holds the body appended under it.
		c := nodes[1].login(t, nil)
		if sel, err := c.Select("INBOX", nil).Wait(); err != nil || int(sel.NumMessages) != want {
			t.Fatalf("select: %v, %+v", err, sel)
		}
		bodies, err := c.Fetch(uidRange(), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Part: []int{1}, Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(bodies) != want {
			t.Fatalf("fetched %d, want %d", len(bodies), want)
		}
		for _, m := range bodies {
			var got string
			for _, b := range m.BodySection {
				got = strings.TrimSpace(string(b.Bytes))
			}
			if all[m.UID] != got {
				t.Errorf("UID %d holds %q, appended %q", m.UID, got, all[m.UID])
			}
		}
		// The whole messages and their texts, which imapfront reads
		// through pgstore's BodiesInto into its arenas: the same.
		whole := &imap.FetchItemBodySection{Peek: true}
		text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
		raws, err := c.Fetch(uidRange(), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{whole, text}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(raws) != want {
			t.Fatalf("fetched %d whole, want %d", len(raws), want)
		}
		// A header sync without ENVELOPE (as Thunderbird's), which
		// reads only the headers (pgstore's BodiesBrief).
		subject := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
		hdrs, err := c.Fetch(uidRange(), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{subject}}).Collect()
		if err != nil || len(hdrs) != want {
			t.Fatalf("header sync: %d messages, %v", len(hdrs), err)
		}
		for _, m := range hdrs {
			if got := string(m.FindBodySection(subject)); got != "Subject: "+all[m.UID]+"\r\n\r\n" || m.RFC822Size == 0 {
				t.Errorf("UID %d: Subject section %q (size %d), appended %q", m.UID, got, m.RFC822Size, all[m.UID])
			}
		}
		for _, m := range raws {
			w, tx := m.FindBodySection(whole), m.FindBodySection(text)
			if int64(len(w)) != m.RFC822Size || !bytes.HasSuffix(w, tx) || strings.TrimSpace(string(tx)) != all[m.UID] {
				t.Errorf("UID %d: BODY[] of %d bytes (RFC822.SIZE %d), TEXT %q; appended %q", m.UID, len(w), m.RFC822Size, tx, all[m.UID])
			}
		}
	})

	// Both nodes have one account (leave_on_server = false) and are asked
	// to poll it at once: one node polls it at a time (its lease), never
	// two sessions together, and every message is stored exactly once and
	// deleted upstream.
	t.Run("TwoPollersExactlyOnce", func(t *testing.T) {
		dsn := newDB(t)
		up := upstream(t, 40)
		want := map[string]bool{}
		for _, m := range up.Messages() {
			want[string(m.Raw)] = true
		}
		cfgs := []*Config{pgConfig(t, dsn, "a", up), pgConfig(t, dsn, "b", up)}
		var nodes []*pgNode
		for _, c := range cfgs {
			c.Accounts[0].LeaveOnServer = false
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, startNode(t, c))
		}
		for _, n := range nodes {
			n.b.PollNow("acct1")
		}
		waitFor(t, "upstream emptied", func() bool { return len(up.Messages()) == 0 })
		if m := up.MaxOpenSessions(); m != 1 {
			t.Errorf("%d POP sessions open at once: one node at a time must poll an account", m)
		}
		// Both nodes have looked at the lease by now (each was asked to
		// poll); they agree on who holds it.
		holders := map[string]string{}
		waitFor(t, "both nodes looked at the lease", func() bool {
			for _, n := range nodes {
				for _, s := range n.b.Status() {
					holders[n.name] = s.LeaseHolder
				}
			}
			return holders["a"] != "" && holders["b"] != ""
		})
		if holders["a"] != holders["b"] {
			t.Errorf("node a says %q holds the lease, node b %q", holders["a"], holders["b"])
		}
		st := openPG(t, dsn)
		got := inboxBodies(t, st, "u")
		if len(got) != len(want) {
			t.Errorf("INBOX holds %d messages, want %d", len(got), len(want))
		}
		for raw, n := range got {
			if n != 1 || !want[raw] {
				t.Errorf("message stored %d times (expected upstream: %v): %.40q", n, want[raw], raw)
			}
		}
	})

	// The one-shot commands (poll, status, verify, export) work on the
	// PostgreSQL store, beside a running node.
	t.Run("CommandsOnPostgres", func(t *testing.T) {
		dsn := newDB(t)
		up := upstream(t, 5)
		cfg := pgConfig(t, dsn, "a", up)
		ctx := context.Background()
		if _, err := PollOnce(ctx, cfg, nil, "", nil); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(cfg.Path(cfg.DataDir)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("data_dir for the node's own files: %v, %v", fi, err)
		}
		n := startNode(t, pgConfig(t, dsn, "b", up))
		c := n.login(t, nil)
		if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 5 {
			t.Fatalf("node b sees %+v, %v; want the 5 messages node a's poll stored", sel, err)
		}
		rep, err := ReadStatus(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		inbox := uint32(0)
		if len(rep.Users) == 1 {
			for _, mb := range rep.Users[0].Mailboxes {
				if mb.Name == "INBOX" {
					inbox = mb.Counts.Messages
				}
			}
		}
		if len(rep.Accounts) != 1 || !rep.Accounts[0].Polled || rep.Accounts[0].Status.Fetched != 5 || inbox != 5 {
			t.Fatalf("status: %+v", rep)
		}
		vr, err := Verify(ctx, cfg, nil, VerifyOptions{})
		if err != nil || !vr.OK() || vr.Report.Messages != 5 {
			t.Fatalf("verify: %+v, %v", vr, err)
		}
		out := t.TempDir()
		ex, err := Export(ctx, cfg, nil, "u", out, nil)
		if err != nil || ex.Messages != 5 {
			t.Fatalf("export: %+v, %v", ex, err)
		}

		// The read-only commands never migrate: against a schema one
		// version behind (a node of the next version's status run while
		// this version's nodes serve), status and check's ledger read
		// fail saying so, and the schema stays as it was.
		db := fmt.Sprintf("nodes%d", dbs)
		latest := strings.TrimSpace(srv.Psql(t, db, `SELECT max(version) FROM schema_migrations`))
		srv.Psql(t, db, `DELETE FROM schema_migrations WHERE version = `+latest)
		if _, err := ReadStatus(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "older than this program's") {
			t.Errorf("status on an older schema: %v", err)
		}
		if _, err := LedgerNotes(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "older than this program's") {
			t.Errorf("check's ledger read on an older schema: %v", err)
		}
		if v := strings.TrimSpace(srv.Psql(t, db, `SELECT max(version) FROM schema_migrations`)); v == latest {
			t.Errorf("a read-only command migrated the schema to %s", v)
		}
		// A database popbridge never opened: nothing made in it.
		empty := newDB(t)
		if _, err := ReadStatus(ctx, pgConfig(t, empty, "c", up), nil); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("status on an empty database: %v, want fs.ErrNotExist", err)
		}
		if n := strings.TrimSpace(srv.Psql(t, fmt.Sprintf("nodes%d", dbs), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`)); n != "0" {
			t.Errorf("status made %s tables in an empty database", n)
		}
	})

	// A provider user created by a login on node a logs in on node b
	// (the load balancer sends them anywhere), and node b takes the user
	// into its own poller when it synchronises with the store.
	t.Run("ProviderUsersAcrossNodes", func(t *testing.T) {
		dsn := newDB(t)
		up := pop3mem.NewServer(pop3mem.WithUser("bob", "bobpw"))
		t.Cleanup(up.Close)
		for i := range 3 {
			up.AddMessage(providerMsg("bob", i))
		}
		key := filepath.Join(t.TempDir(), "provider.key") // one key for the cluster
		cfg := func(node string) *Config {
			c := pgConfig(t, dsn, node)
			c.Users = nil
			c.IMAP.TrustedNetworks = []string{"127.0.0.0/8"}
			c.Provider.Host, c.Provider.Port, c.Provider.TLS = up.Host(), up.Port(), TLSNone
			c.Provider.PollInterval = Duration{Value: time.Hour}
			c.Provider.KeyFile = key
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			return c
		}
		a, bn, cn := startNode(t, cfg("a")), startNode(t, cfg("b")), startNode(t, cfg("c"))
		login := func(n *pgNode) *imapclient.Client {
			c, err := imapclient.DialInsecure(n.b.Addrs().IMAP.String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if err := c.Login("bob", "bobpw").Wait(); err != nil {
				t.Fatalf("node %s: login bob: %v", n.name, err)
			}
			return c
		}
		login(a)
		st := openPG(t, dsn)
		waitFor(t, "bob's 3 messages", func() bool { return len(inboxBodies(t, st, "bob")) == 3 })

		// Node b has not seen bob: his login there is his, not refused as a
		// stranger's, and node b polls him from then on too.
		polled := func(n *pgNode) bool {
			for _, s := range n.b.provider.poller.Status() {
				if s.Account == accountName("bob") {
					return true
				}
			}
			return false
		}
		c := login(bn)
		if n := selectCount(t, c); n != 3 {
			t.Fatalf("node b: bob's INBOX has %d messages, want 3", n)
		}
		if !polled(bn) {
			t.Fatal("node b does not poll bob after his login there")
		}
		// Node c, started before bob existed, takes him in when it
		// synchronises with the store, without any login of bob there.
		if polled(cn) {
			t.Fatal("node c polls bob before it synchronised")
		}
		if err := cn.b.provider.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !polled(cn) {
			t.Fatal("node c does not take bob's account after synchronising")
		}
		// Another node found bob's POP password refused: node c stops
		// polling him at its next synchronisation.
		if err := st.SetProviderUserState(context.Background(), "bob", store.ProviderNeedsLogin, true); err != nil {
			t.Fatal(err)
		}
		if err := cn.b.provider.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if polled(cn) {
			t.Fatal("node c still polls bob, who needs a login")
		}
	})

	// kill -9 of the node polling an account in the middle of a
	// 2,000-message fetch: the other node finishes it.
	t.Run("KillPollingNodeLeave", func(t *testing.T) { killPollingNode(t, newDB(t), true) })
	t.Run("KillPollingNodeDelete", func(t *testing.T) { killPollingNode(t, newDB(t), false) })

	// A database that does not answer fails start with its host named and
	// the password kept out of the error.
	t.Run("DatabaseUnreachableAtStart", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		cfg := pgConfig(t, "postgres://popbridge:s3cretpw@"+addr+"/popbridge?connect_timeout=2", "a")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = New(cfg, nil).Run(ctx)
		if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "s3cretpw") || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Run on an unreachable database: %v", err)
		}
	})
}

// childNodeConfig is the config of a child node polling up as account
// acct1 of user u.
func childNodeConfig(t *testing.T, dsn, node string, up *pop3mem.Server, leave bool) string {
	return fmt.Sprintf(`data_dir = %q
[store]
backend = "postgres"
dsn = %q
node_name = %q
poll_lease = "%s"
[imap]
listen = "127.0.0.1:0"
[http]
listen = ""
[[user]]
name = "u"
password_hash = %q
[[account]]
name = "acct1"
user = "u"
host = %q
port = %d
tls = "none"
username = "bob"
password = "bobpw"
poll_interval = "1h"
leave_on_server = %t
`, filepath.Join(t.TempDir(), "data"), dsn, node, testPollLease, realHash(t), up.Host(), up.Port(), leave)
}

// killPollingNode: node a (a child process) polls a 2,000-message
// mailbox; it is killed with SIGKILL in the middle of the fetch; node b
// finishes it. Nothing is lost, nothing is stored twice, and with
// leave_on_server false the mailbox ends empty.
func killPollingNode(t *testing.T, dsn string, leave bool) {
	const n = 2000
	up := pop3mem.NewServer(pop3mem.WithUser("bob", "bobpw"))
	t.Cleanup(up.Close)
	want := map[string]bool{}
	for i := range n {
		raw := fmt.Sprintf("Subject: m%d\r\nMessage-ID: <m%d@kill>\r\n\r\n%s\r\n", i, i, strings.Repeat(fmt.Sprintf("line %d of message %d\r\n", i, i), 40))
		up.AddMessage([]byte(raw))
		want[raw] = true
	}
	kill := startChildNode(t, childNodeConfig(t, dsn, "a", up, leave))
	waitFor(t, "node a fetching", func() bool { return up.Count("RETR") >= 300 })
	kill()
	retrAtKill := up.Count("RETR")
	if retrAtKill >= n {
		t.Fatalf("node a had retrieved all %d messages before the kill: the test did not cut the fetch", retrAtKill)
	}

	cfg := pgConfig(t, dsn, "b", up)
	cfg.Accounts[0].LeaveOnServer = leave
	b := startNode(t, cfg)
	b.b.PollNow("acct1")
	st := openPG(t, dsn)
	waitFor(t, "every message stored", func() bool { return inboxCount(t, st, "u") >= n })
	got := inboxBodies(t, st, "u")
	if m := up.MaxOpenSessions(); m != 1 {
		t.Errorf("%d POP sessions open at once: node b polled while node a still did", m)
	}
	for raw, k := range got {
		if k != 1 || !want[raw] {
			t.Errorf("stored %d times (sent upstream: %v): %.40q", k, want[raw], raw)
		}
	}
	if len(got) != n {
		t.Errorf("%d messages stored, want %d", len(got), n)
	}
	if leave {
		if left := len(up.Messages()); left != n {
			t.Errorf("leave_on_server: %d messages left upstream, want %d", left, n)
		}
		return
	}
	waitFor(t, "mailbox emptied upstream", func() bool { return len(up.Messages()) == 0 })
}
