// Package pgtest runs a private, real PostgreSQL server for integration
// tests.
//
// [Start] finds the binaries of Debian's postgresql package (the newest
// /usr/lib/postgresql/<version>/bin; programs of the same name in
// /usr/local/bin or on PATH are used only when no such directory exists),
// runs initdb into a fresh, short temporary directory and starts the
// postmaster on a free port of 127.0.0.1. Everything (data directory,
// UNIX socket, log) lives in that directory; nothing under /etc or /var is
// read or written, and a cluster the package started for the system (port
// 5432, /var/run/postgresql) is neither used nor disturbed. PG* variables
// of the environment (PGHOST, PGPORT, PGDATA, ...) are not passed on, so
// they cannot point the helper's programs elsewhere.
//
// PostgreSQL refuses to run as root, and CI runs as root: then the server
// runs as nobody (its data directory chowned to it), otherwise as the
// current user. The postmaster runs in the foreground as a child of the
// test process, as pg_ctl would start it but without daemonising: a
// daemonised postmaster killed with SIGKILL stays an unreaped zombie where
// PID 1 does not reap orphans, and its pid in postmaster.pid would then
// keep the next start from taking the data directory.
//
// Clients log in over TCP with a password (SCRAM-SHA-256) as
// [Server.User], a superuser, with [Server.Password]; [Server.DSN] gives a
// postgres:// URL for [Server.Database], which Start creates, and
// [Server.CreateDatabase] adds more. [Server.Psql] runs SQL through the
// package's psql, for setting up and checking data without a Go driver.
//
// fsync stays on, as in production: popbridge is a durability product and
// its tests must not pass only because the database cheated.
// [Options.NoFsync] turns it off for speed where a test does not depend on
// it; data committed before a kill of the server still survives then (the
// kernel holds what PostgreSQL wrote), only a power loss would lose it.
//
// [Server.Kill] kills the postmaster and all its processes with SIGKILL at
// once, as if the machine died (open sessions lose their connection);
// [Server.Stop] shuts down cleanly (fast mode); [Server.Restart] starts the
// server again on the same port and data, running crash recovery after a
// Kill; [Server.PsqlErr] shows a client's view meanwhile. Together they
// serve failover and "database lost during serve" tests. Where PID 1 does
// not reap orphans (some containers), each Kill leaves the server's former
// children as zombies until the machine restarts; they hold nothing.
//
// Costs, on a 2-core machine under load: Start 2 to 6 s (mostly initdb),
// CreateDatabase 0.2 to 0.4 s, Restart 0.3 s, Restart after Kill 0.3 s
// (1.2 s with fsync: recovery ends with a checkpoint), psql 0.1 s. So
// start one server for a group of subtests and give each its own database
// rather than one server each, except where a test kills or stops it.
//
// When PostgreSQL is not installed, Start skips the test with a message,
// unless POPBRIDGE_REQUIRE_POSTGRES=1 or POPBRIDGE_REQUIRE_DOVECOT=1 (which
// CI sets for all external servers), in which case it fails it. The server
// is stopped and the directory removed by the test's Cleanup; should the
// test process die without running its cleanups (go test's -timeout), the
// kernel stops the server on Linux (the directory stays in $TMPDIR).
package pgtest
