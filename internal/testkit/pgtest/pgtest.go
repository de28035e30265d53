package pgtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/testenv"
)

// DebianRoot holds one directory per PostgreSQL major version installed by
// Debian's postgresql-NN packages, each with a bin directory.
const DebianRoot = "/usr/lib/postgresql"

// debianRoot is DebianRoot; tests point it elsewhere.
var debianRoot = DebianRoot

// RequireEnv is the environment variable that turns a missing PostgreSQL
// into a test failure instead of a skip.
const RequireEnv = "POPBRIDGE_REQUIRE_POSTGRES"

// RequireAllEnv, set to 1, turns every missing external server (Dovecot,
// mbsync, PostgreSQL) into a test failure; CI sets it. It is
// dovecottest.RequireEnv, spelled out to keep the test kits independent.
const RequireAllEnv = "POPBRIDGE_REQUIRE_DOVECOT"

// Defaults for Options and the superuser initdb creates.
const (
	DefaultDatabase = "popbridge"
	DefaultUser     = "popbridge"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Database is the database Start creates for the test (default
	// DefaultDatabase).
	Database string
	// NoFsync turns fsync off (and initdb's syncing): faster, and still
	// safe against a kill of the server, not against a power loss.
	NoFsync bool
	// Extra is appended verbatim to postgresql.conf (e.g.
	// "max_connections = 200\n"); it applies to restarts too.
	Extra string
}

// Server is a running PostgreSQL.
type Server struct {
	// Dir is the directory holding the data directory (DataDir), the UNIX
	// socket and the log.
	Dir, DataDir string
	// BinDir is the directory of the PostgreSQL programs used.
	BinDir string
	// Host is "127.0.0.1"; Port is the TCP port the server listens on.
	Host string
	Port int
	// User is a superuser, logging in with Password over TCP.
	User, Password string
	// Database is the database Start created (Options.Database).
	Database string

	uid, gid int
	mu       sync.Mutex // guards the fields below
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	logFile  *os.File
}

// BinDir returns the directory of the PostgreSQL programs Start would use:
// the newest Debian /usr/lib/postgresql/<version>/bin holding initdb,
// postgres and psql, or, when there is none, the directory of initdb on
// PATH if it holds the other two.
func BinDir() (string, error) {
	if dirs, _ := filepath.Glob(filepath.Join(debianRoot, "*", "bin")); len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
		for _, d := range dirs {
			if hasPrograms(d) {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if d := filepath.Dir(p); hasPrograms(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server programs (initdb, postgres, psql) in %s/*/bin or on PATH; install postgresql (or unset %s and %s to skip such tests)", debianRoot, RequireEnv, RequireAllEnv)
}

// versionOf returns the major version in .../<version>/bin, or 0.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func hasPrograms(dir string) bool {
	for _, p := range []string{"initdb", "postgres", "psql"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Available reports why PostgreSQL cannot be used, or nil.
func Available() error {
	_, err := BinDir()
	return err
}

// required reports whether the environment asks for a missing PostgreSQL
// to fail the test.
func required() bool {
	return os.Getenv(RequireEnv) == "1" || os.Getenv(RequireAllEnv) == "1"
}

// Start starts a PostgreSQL for the test, creates Options.Database and
// registers the server's shutdown and the directory's removal with
// tb.Cleanup. It skips the test when PostgreSQL is missing (fails it when
// POPBRIDGE_REQUIRE_POSTGRES=1 or POPBRIDGE_REQUIRE_DOVECOT=1) and fails
// it if the server does not come up.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := BinDir()
	if err != nil {
		if required() {
			tb.Fatalf("pgtest: %v", err)
		}
		tb.Skipf("pgtest: skipping: %v", err)
	}
	if opts.Database == "" {
		opts.Database = DefaultDatabase
	}
	var lastErr error
	for range 3 { // a free port may be taken between probing and binding
		s, err := start(tb, bin, opts)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("pgtest: %v", lastErr)
	return nil
}

// serverUser returns the uid and gid the server runs as: nobody when the
// test runs as root (PostgreSQL refuses root), the current user otherwise.
func serverUser() (uid, gid int) {
	if os.Geteuid() != 0 {
		return os.Getuid(), os.Getgid()
	}
	uid, gid = 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	return uid, gid
}

// environ returns the test's environment without PG* variables, which
// would otherwise steer the PostgreSQL programs (PGDATA, PGHOST, ...),
// plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func start(tb testing.TB, bin string, opts Options) (*Server, error) {
	dir, err := testenv.ServerDir("pgt")
	if err != nil {
		return nil, err
	}
	cleanupDir := true
	defer func() {
		if cleanupDir {
			os.RemoveAll(dir)
		}
	}()
	pw := make([]byte, 16)
	rand.Read(pw)
	s := &Server{
		Dir: dir, DataDir: filepath.Join(dir, "data"), BinDir: bin,
		Host: "127.0.0.1", User: DefaultUser, Password: hex.EncodeToString(pw),
		Database: opts.Database,
	}
	s.uid, s.gid = serverUser()
	if s.Port, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	for _, d := range []string{s.DataDir, s.socketDir()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Lchown(d, s.uid, s.gid); err != nil {
			return nil, err
		}
	}
	pwFile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(s.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Lchown(pwFile, s.uid, s.gid); err != nil {
		return nil, err
	}
	args := []string{"-D", s.DataDir, "-U", s.User, "--pwfile=" + pwFile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"}
	if opts.NoFsync {
		args = append(args, "--no-sync")
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), args...)
	s.asServerUser(initdb)
	out, err := initdb.CombinedOutput()
	os.Remove(pwFile)
	if err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	fsync := "on"
	if opts.NoFsync {
		fsync = "off"
	}
	conf := fmt.Sprintf(`
# added by internal/testkit/pgtest
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
fsync = %s
# before crash recovery, flush the data directory with one syncfs(2)
# instead of an fsync per file (seconds on a loaded machine)
recovery_init_sync_method = syncfs
%s
`, s.Port, s.socketDir(), fsync, opts.Extra)
	f, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if s.logFile, err = os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		return nil, err
	}
	if err := s.startPostmaster(); err != nil {
		s.logFile.Close()
		return nil, err
	}
	if _, err := s.psql("postgres", "CREATE DATABASE "+QuoteIdent(s.Database)); err != nil {
		s.stop()
		s.logFile.Close()
		return nil, fmt.Errorf("create database %s: %w", s.Database, err)
	}
	cleanupDir = false
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Errorf("pgtest: cleanup: %v", err)
		}
		if tb.Failed() {
			tb.Logf("postgres log:\n%s", s.Log())
		}
		s.logFile.Close()
		os.RemoveAll(dir)
	})
	return s, nil
}

func (s *Server) socketDir() string { return filepath.Join(s.Dir, "sock") }

// asServerUser makes cmd run as the server's user in Dir, with a clean
// environment.
func (s *Server) asServerUser(cmd *exec.Cmd) {
	cmd.Dir = s.Dir
	cmd.Env = environ("LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}
		cmd.Env = append(cmd.Env, "HOME="+s.Dir, "USER=nobody", "LOGNAME=nobody")
	}
}

// startPostmaster starts postgres in the foreground and waits until it
// accepts connections (crash recovery included).
func (s *Server) startPostmaster() error {
	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), "-D", s.DataDir)
	s.asServerUser(cmd)
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	dieWithParent(cmd.SysProcAttr)
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal follows the thread that started the
		// child, and Go may end idle threads: keep this one until the
		// postmaster exits.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		s.mu.Lock()
		s.cmd, s.done = cmd, done
		s.mu.Unlock()
		started <- nil
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := s.waitReady(cmd.Process.Pid, done, 60*time.Second); err != nil {
		s.stop()
		return fmt.Errorf("postgres did not start: %w\nlog: %s", err, s.Log())
	}
	return nil
}

// waitReady waits until postmaster.pid names pid and says "ready", as
// pg_ctl -w does.
func (s *Server) waitReady(pid int, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pidFile := filepath.Join(s.DataDir, "postmaster.pid")
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("postgres exited: %v", err)
		default:
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			// Line 1 is the postmaster's pid, line 8 its status (PG 10+).
			if len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(pid) && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("not ready after " + timeout.String())
}

// Addr returns "127.0.0.1:Port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// DSN returns a postgres:// URL for Database, with User and Password,
// over TCP without TLS.
func (s *Server) DSN() string { return s.DSNFor(s.Database) }

// DSNFor returns a postgres:// URL like DSN's for database db.
func (s *Server) DSNFor(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.User, s.Password),
		Host:     s.Addr(),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name (owned by User) and returns its
// DSN. The test fails if it cannot.
func (s *Server) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	if _, err := s.psql("postgres", "CREATE DATABASE "+QuoteIdent(name)); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.DSNFor(name)
}

// Psql runs sql (one or more statements, stopping at the first error) in
// database db with the package's psql over TCP, and returns its output:
// rows one a line, columns separated by "|", no headers, trailing newline
// removed. The test fails on any error.
func (s *Server) Psql(tb testing.TB, db, sql string) string {
	tb.Helper()
	out, err := s.psql(db, sql)
	if err != nil {
		tb.Fatalf("pgtest: psql: %v", err)
	}
	return out
}

// PsqlErr is Psql returning the error (with psql's message) instead of
// failing the test: for checking that the server is down or refuses.
func (s *Server) PsqlErr(db, sql string) (string, error) { return s.psql(db, sql) }

// psql runs sql in db.
func (s *Server) psql(db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(s.BinDir, "psql"), "-X", "-q", "-A", "-t",
		"-v", "ON_ERROR_STOP=1", "-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.User, "-d", db, "-f", "-")
	cmd.Env = environ("PGPASSWORD="+s.Password, "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("database %s: %w: %s", db, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSuffix(stdout.String(), "\n"), nil
}

// QuoteIdent quotes name as an SQL identifier.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	return string(b)
}
