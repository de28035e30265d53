// Package dovecottest runs a private, real Dovecot POP3 server for
// integration tests.
//
// [Start] writes a dovecot.conf into a fresh temporary directory, starts
// /usr/sbin/dovecot in the foreground (-F) as the current user, and waits
// until its POP3 listener answers. Everything (configuration, sockets,
// state, logs, mail) lives in that directory; nothing under /etc or /var is
// read or written. The server listens on 127.0.0.1 only, on free ports:
// [Server.POP3Port] (plain, with STLS) and [Server.POP3SPort] (implicit
// TLS), with a certificate from a test CA ([Server.PKI], file
// [Server.CAFile]). Users come from a passwd-file with PLAIN passwords; mail
// is in Maildir under the directory, owned by the mail uid (nobody when
// running as root, the current user otherwise).
//
// Dovecot applies DELE only at QUIT, like any POP3 server; [Server.Count]
// reads the Maildir directly, so a test can check what really remains.
// Dovecot penalises failed logins per client address (the next logins from
// 127.0.0.1 are delayed by a second or more), so run wrong-password cases
// last in a test, and give sessions timeouts of several seconds.
//
// When Dovecot is not installed, Start skips the test with a message,
// unless POPBRIDGE_REQUIRE_DOVECOT=1, in which case it fails it. The
// server is stopped (SIGTERM, then waited for) and the directory removed by
// the test's Cleanup.
package dovecottest
