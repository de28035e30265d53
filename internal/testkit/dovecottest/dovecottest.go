package dovecottest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/testenv"

	"github.com/popbridge/popbridge/internal/testkit/testpki"
)

// Binary is the Dovecot executable Start runs.
const Binary = "/usr/sbin/dovecot"

// RequireEnv is the environment variable that turns a missing Dovecot into a
// test failure instead of a skip.
const RequireEnv = "POPBRIDGE_REQUIRE_DOVECOT"

// Default user created when Options.Users is empty.
const (
	DefaultUser     = "alice"
	DefaultPassword = "secret"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Users maps user names to plaintext passwords (default
	// DefaultUser: DefaultPassword).
	Users map[string]string
	// Extra is appended verbatim to dovecot.conf.
	Extra string
}

// ManyUsers returns n users for Options.Users, named prefix followed by a
// four-digit number from 0000 ("u0000", "u0001", ...), each with the
// password "pw-" + its name: for tests that need one upstream account per
// poller account (connection caps, load).
func ManyUsers(prefix string, n int) map[string]string {
	users := make(map[string]string, n)
	for i := range n {
		name := fmt.Sprintf("%s%04d", prefix, i)
		users[name] = "pw-" + name
	}
	return users
}

// Server is a running Dovecot.
type Server struct {
	// Dir is the directory holding the configuration, state and mail.
	Dir string
	// Host is "127.0.0.1".
	Host string
	// POP3Port serves POP3 with STLS offered; POP3SPort serves POP3 over
	// implicit TLS.
	POP3Port, POP3SPort int
	// PKI is the test CA and server certificate Dovecot presents; CAFile is
	// PKI.CAFile, for tls_ca_file.
	PKI    *testpki.PKI
	CAFile string

	cmd      *exec.Cmd
	done     chan struct{}
	usersMu  sync.Mutex
	users    map[string]string
	usersAt  time.Time // mtime of the last users file written
	waitErr  error
	uid, gid int
	seq      atomic.Int64
	stopOnce sync.Once
}

// Available reports why Dovecot cannot be used, or nil.
func Available() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("dovecot not installed (%s: %v); install dovecot-pop3d or set %s=0", Binary, err, RequireEnv)
	}
	return nil
}

// Start starts a Dovecot for the test and registers its shutdown with
// tb.Cleanup. It skips the test when Dovecot is missing (fails it when
// POPBRIDGE_REQUIRE_DOVECOT=1) and fails it if Dovecot does not come up.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("dovecottest: %v", err)
		}
		tb.Skipf("dovecottest: skipping: %v", err)
	}
	var lastErr error
	for range 3 { // a free port may be taken between probing and binding
		s, err := start(tb, opts)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("dovecottest: %v", lastErr)
	return nil
}

func start(tb testing.TB, opts Options) (*Server, error) {
	dir, err := testenv.ServerDir("dct")
	if err != nil {
		return nil, err
	}
	cleanupDir := true
	defer func() {
		if cleanupDir {
			os.RemoveAll(dir)
		}
	}()
	pki, err := testpki.Generate(dir)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(pki.KeyFile, 0o644); err != nil { // readable by Dovecot's processes
		return nil, err
	}
	s := &Server{Dir: dir, Host: "127.0.0.1", PKI: pki, CAFile: pki.CAFile, done: make(chan struct{})}
	if s.POP3Port, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	if s.POP3SPort, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	internalUser, loginUser := "dovecot", "dovenull"
	if os.Geteuid() == 0 {
		s.uid, s.gid = 65534, 65534
		if u, err := user.Lookup("nobody"); err == nil {
			s.uid, _ = strconv.Atoi(u.Uid)
			s.gid, _ = strconv.Atoi(u.Gid)
		}
		if _, err := user.Lookup("dovecot"); err != nil {
			internalUser = "nobody"
		}
		if _, err := user.Lookup("dovenull"); err != nil {
			loginUser = "nobody"
		}
	} else {
		s.uid, s.gid = os.Getuid(), os.Getgid()
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		internalUser, loginUser = u.Username, u.Username
	}
	users := opts.Users
	if len(users) == 0 {
		users = map[string]string{DefaultUser: DefaultPassword}
	}
	s.users = make(map[string]string, len(users))
	names := make([]string, 0, len(users))
	for u, pw := range users {
		names = append(names, u)
		s.users[u] = pw
	}
	sort.Strings(names)
	for _, d := range []string{"run", "state", "log", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := s.writeUsers(); err != nil {
		return nil, err
	}
	for _, u := range names {
		for _, sub := range []string{"", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"} {
			p := filepath.Join(dir, "mail", u, sub)
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, err
			}
			if err := os.Lchown(p, s.uid, s.gid); err != nil {
				return nil, err
			}
		}
	}
	conf := fmt.Sprintf(`# generated by internal/testkit/dovecottest
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dovecottest-%[2]d
log_path = %[1]s/log/dovecot.log
info_log_path = %[1]s/log/dovecot.log
protocols = pop3
listen = 127.0.0.1
default_internal_user = %[3]s
default_login_user = %[4]s
ssl = yes
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login apop
auth_failure_delay = 0
# exempt the tests' loopback clients from the anvil auth penalty
login_trusted_networks = 127.0.0.0/8
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[1]s/mail/%%u
}
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
pop3_uidl_format = %%08Xu%%08Xv
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[7]d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %[8]d
    ssl = yes
  }
  chroot =
}
service anvil {
  chroot =
}
%[9]s
`, dir, os.Getpid(), internalUser, loginUser, s.uid, s.gid, s.POP3Port, s.POP3SPort, opts.Extra)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(Binary, "-F", "-c", confPath)
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dovecot: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("dovecot did not start: %w\noutput: %s\nlog: %s", err, out.String(), s.Log())
	}
	cleanupDir = false
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("dovecot log:\n%s", s.Log())
		}
		os.RemoveAll(dir)
	})
	return s, nil
}

// writeUsers writes the passwd-file from s.users (s.usersMu held or not yet
// shared): to a temporary file renamed over the old one, with an mtime
// later than the last one's, so that Dovecot, which re-reads the file when
// its mtime changes, sees every change.
func (s *Server) writeUsers() error {
	var passwd bytes.Buffer
	names := make([]string, 0, len(s.users))
	for u := range s.users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s\n", u, s.users[u])
	}
	path := filepath.Join(s.Dir, "users")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, passwd.Bytes(), 0o644); err != nil {
		return err
	}
	at := time.Now().Truncate(time.Second)
	if !at.After(s.usersAt) {
		at = s.usersAt.Add(time.Second)
	}
	s.usersAt = at
	if err := os.Chtimes(tmp, at, at); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SetPassword changes (or sets, creating the user's Maildir) the password
// of user while Dovecot runs; the next login sees it. Dovecot looks at the
// passwd-file at most once per second of its clock, so SetPassword returns
// only once the second it wrote in has passed (up to a second).
func (s *Server) SetPassword(tb testing.TB, user, password string) {
	tb.Helper()
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	if _, ok := s.users[user]; !ok {
		for _, sub := range []string{"", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"} {
			p := filepath.Join(s.Dir, "mail", user, sub)
			if err := os.MkdirAll(p, 0o755); err != nil {
				tb.Fatalf("dovecottest: %v", err)
			}
			if err := os.Lchown(p, s.uid, s.gid); err != nil {
				tb.Fatalf("dovecottest: %v", err)
			}
		}
	}
	s.users[user] = password
	if err := s.writeUsers(); err != nil {
		tb.Fatalf("dovecottest: set password: %v", err)
	}
	// Not a stand-in for an event: Dovecot's passwd-file check is keyed
	// on the wall-clock second (last_sync_time == ioloop_time), and a
	// lookup in the same second as the previous one reuses the old file.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
}

// Stop stops Dovecot now (it is also stopped at cleanup): for tests of an
// upstream that went away.
func (s *Server) Stop() { s.stop() }

// waitReady waits for a POP3 greeting on POP3Port.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("dovecot exited: %v", s.waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.POP3Port)), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "+OK") {
				return nil
			}
			lastErr = fmt.Errorf("greeting %q: %v", line, err)
		} else {
			lastErr = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lastErr
}

// stop sends SIGTERM to the master and waits for it to exit (SIGKILL after
// 10 s).
func (s *Server) stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Log returns Dovecot's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "log", "dovecot.log"))
	return string(b)
}

// Addr returns "127.0.0.1:POP3Port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.POP3Port)) }

// AddrTLS returns "127.0.0.1:POP3SPort".
func (s *Server) AddrTLS() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.POP3SPort)) }

// Maildir returns the user's Maildir path.
func (s *Server) Maildir(user string) string { return filepath.Join(s.Dir, "mail", user, "Maildir") }

// AddMessage delivers raw into user's Maildir/new (written to tmp, then
// renamed, owned by the mail uid) and returns the file name. Line endings
// are stored as given; Dovecot serves them as CRLF.
func (s *Server) AddMessage(tb testing.TB, user string, raw []byte) string {
	tb.Helper()
	md := s.Maildir(user)
	name := fmt.Sprintf("%d.M%dP%d.dovecottest", time.Now().Unix(), s.seq.Add(1), os.Getpid())
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		tb.Fatalf("dovecottest: deliver: %v", err)
	}
	if err := os.Lchown(tmp, s.uid, s.gid); err != nil {
		tb.Fatalf("dovecottest: deliver: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		tb.Fatalf("dovecottest: deliver: %v", err)
	}
	return name
}

// Count returns how many messages are in user's Maildir (new and cur).
func (s *Server) Count(tb testing.TB, user string) int {
	tb.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(s.Maildir(user), sub))
		if err != nil {
			tb.Fatalf("dovecottest: %v", err)
		}
		n += len(ents)
	}
	return n
}
