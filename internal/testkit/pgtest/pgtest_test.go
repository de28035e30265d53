package pgtest

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestStartServesSQL(t *testing.T) {
	// Variables that would steer psql, initdb and postgres elsewhere must
	// not reach them.
	t.Setenv("PGHOST", "/nonexistent")
	t.Setenv("PGPORT", "1")
	t.Setenv("PGDATA", "/nonexistent")
	t.Setenv("PGUSER", "nobody-here")
	s := Start(t, Options{Extra: "max_connections = 42\n"})

	if got := s.Psql(t, s.Database, "SELECT current_database(), current_user, inet_server_addr(), inet_server_port()"); got != s.Database+"|"+s.User+"|127.0.0.1|"+strconv.Itoa(s.Port) {
		t.Fatalf("session = %q, want database %s, user %s over TCP on %s", got, s.Database, s.User, s.Addr())
	}
	if got := s.Psql(t, s.Database, "SHOW listen_addresses; SHOW fsync; SHOW server_encoding; SHOW max_connections"); got != "127.0.0.1\non\nUTF8\n42" {
		t.Errorf("settings = %q", got)
	}
	// Not as root: PostgreSQL refuses it, so the files belong to another user.
	var st syscall.Stat_t
	if err := syscall.Stat(s.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && st.Uid == 0 {
		t.Errorf("data directory owned by root")
	}

	u, err := url.Parse(s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := u.User.Password(); u.Scheme != "postgres" || u.Host != s.Addr() || u.Path != "/"+s.Database || u.User.Username() != s.User || pw != s.Password {
		t.Errorf("DSN %s does not name the server", s.DSN())
	}

	// The password is checked.
	wrong := &Server{BinDir: s.BinDir, Host: s.Host, Port: s.Port, User: s.User, Password: "wrong"}
	if _, err := wrong.PsqlErr(s.Database, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("wrong password: err = %v", err)
	}
}

func TestKillRestartKeepsCommittedData(t *testing.T) {
	// NoFsync: what was committed survives a kill of the server without
	// fsync too (the kernel holds it); this shows it and is faster.
	s := Start(t, Options{Database: "main db", NoFsync: true})
	if got := s.Psql(t, "main db", "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q with NoFsync", got)
	}
	dsn := s.CreateDatabase(t, "extra")
	if !strings.HasSuffix(strings.SplitN(dsn, "?", 2)[0], "/extra") {
		t.Errorf("CreateDatabase DSN = %s", dsn)
	}
	s.Psql(t, "main db", "CREATE TABLE m (id int PRIMARY KEY, body text); INSERT INTO m SELECT i, 'msg ' || i FROM generate_series(1, 1000) i")
	s.Psql(t, "extra", "CREATE TABLE e (v text); INSERT INTO e VALUES ('kept')")

	// A client session open at the kill: its backend must go with the
	// rest of the server, and the client must lose its connection.
	client := exec.Command(filepath.Join(s.BinDir, "psql"), "-X", "-A", "-t", "-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.User, "-d", "extra")
	client.Env = append(os.Environ(), "PGPASSWORD="+s.Password)
	stdin, err := client.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	fmt.Fprintln(stdin, "SELECT pg_backend_pid();")
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("client session: %v", err)
	}
	backend, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("backend pid %q: %v", line, err)
	}
	server, err := childrenOf(s.cmd.Process.Pid)
	if err != nil || len(server) < 3 { // checkpointer, walwriter, ..., the backend
		t.Fatalf("server processes %v, %v", server, err)
	}

	s.Kill(t)
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	for _, p := range append(server, backend) {
		if st := procState(p); st != 0 && st != 'Z' {
			t.Errorf("server process %d in state %c after Kill", p, st)
		}
	}
	fmt.Fprintln(stdin, "SELECT 1;")
	stdin.Close()
	if err := client.Wait(); err == nil {
		t.Errorf("client session survived the kill")
	}
	if _, err := s.PsqlErr("main db", "SELECT 1"); err == nil {
		t.Fatal("query succeeded on a killed server")
	}

	s.Restart(t)
	if got := s.Psql(t, "main db", "SELECT count(*), max(body) FROM m"); got != "1000|msg 999" {
		t.Errorf("after kill -9 and restart: m = %q, want 1000|msg 999", got)
	}
	if got := s.Psql(t, "extra", "SELECT v FROM e"); got != "kept" {
		t.Errorf("after kill -9 and restart: e = %q", got)
	}
	if !strings.Contains(s.Log(), "not properly shut down") {
		t.Errorf("no crash recovery in the log:\n%s", s.Log())
	}

	// A clean stop and start keep everything too.
	s.Stop(t)
	if _, err := s.PsqlErr("extra", "SELECT 1"); err == nil {
		t.Fatal("query succeeded on a stopped server")
	}
	s.Restart(t)
	if got := s.Psql(t, "extra", "SELECT v FROM e"); got != "kept" {
		t.Errorf("after stop and restart: e = %q", got)
	}
}
