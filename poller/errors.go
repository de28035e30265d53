package poller

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// AccountError is the error every upstream operation returns. It names the
// account, the operation and, when the server answered, the server's words;
// it never contains the account's secret.
type AccountError struct {
	// Account is the account's configured name.
	Account string
	// Op is the operation that failed: "secret" (Account.Secret failed),
	// "dial", "tls", "stls", "greeting", "capa", "login", "list", "uidl",
	// "top", "retr", "dele", "quit", or "session" (a call on a session
	// that was already closed or whose context was done).
	Op string
	// Reply is the server's reply line ("-ERR ..."), or "" when the server
	// did not answer (network error, timeout, protocol violation).
	Reply string
	// Temporary reports whether retrying later may succeed: network errors,
	// timeouts and the [IN-USE], [LOGIN-DELAY] and [SYS/TEMP] response codes
	// (RFC 2449, RFC 3206). Wrong credentials, [AUTH], [SYS/PERM], TLS
	// verification failures and missing STLS are permanent.
	Temporary bool
	// Err is the underlying error.
	Err error
	// Hint, when set, says what to change: the setting that explains the
	// failure (see diagnose.go). It ends the error's text.
	Hint string
}

// Error returns e.g. `account "work": login: server said "-ERR [AUTH] Authentication failed."`,
// followed by "; " and the Hint when there is one.
func (e *AccountError) Error() string {
	var s string
	if e.Reply != "" {
		s = fmt.Sprintf("account %q: %s: server said %q", e.Account, e.Op, e.Reply)
	} else {
		s = fmt.Sprintf("account %q: %s: %v", e.Account, e.Op, e.Err)
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Unwrap returns the underlying error.
func (e *AccountError) Unwrap() error { return e.Err }

// Sentinel errors wrapped by [AccountError]. Match them with errors.Is.
var (
	// ErrSTLSUnavailable: tls = "starttls" but the server does not offer
	// STLS; popbridge never falls back to plaintext.
	ErrSTLSUnavailable = errors.New("poller: server does not offer STLS")
	// ErrPlaintextInjection: the server sent data after its "+OK" to STLS
	// and before the TLS handshake (CVE-2011-0411 class); the connection
	// is dropped.
	ErrPlaintextInjection = errors.New("poller: plaintext injected after STLS")
	// ErrMessageTooLarge: a response exceeded its byte budget (a message
	// larger than the size limit, a lying LIST size, a never-ending
	// message or an over-long line). The connection is dropped, since the
	// rest of the response is still in flight.
	ErrMessageTooLarge = errors.New("poller: response exceeds size limit")
	// ErrProtocol: the server broke the protocol (a malformed or missing
	// status line, a message ended by an unstuffed "." line, replies out
	// of step). The connection is dropped; nothing read after the
	// violation is used.
	ErrProtocol = errors.New("poller: POP3 protocol violation")
	// ErrBadCredentials: the user name or secret contains CR, LF or NUL,
	// or is empty, or APOP is configured but the greeting has no
	// timestamp.
	ErrBadCredentials = errors.New("poller: unusable credentials")
	// ErrBadConfig: the account's settings cannot work (unknown TLS mode
	// or auth mechanism, unreadable tls_ca_file).
	ErrBadConfig = errors.New("poller: unusable account configuration")
	// errReply marks an error that is a server -ERR reply.
	errReply = errors.New("server replied -ERR")
)

// replyError is a server's -ERR reply.
type replyError struct{ line string }

func (e *replyError) Error() string   { return e.line }
func (e *replyError) Is(t error) bool { return t == errReply }

// respCode returns the RFC 2449 response code of an -ERR line ("IN-USE",
// "SYS/TEMP", ...) or "".
func respCode(reply string) string {
	s := strings.TrimSpace(strings.TrimPrefix(reply, "-ERR"))
	if !strings.HasPrefix(s, "[") {
		return ""
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return ""
	}
	return strings.ToUpper(s[1:end])
}

// classifyReply decides whether an -ERR reply to op is temporary.
func classifyReply(op, reply string) bool {
	code := respCode(reply)
	switch {
	case code == "IN-USE", code == "LOGIN-DELAY", strings.HasPrefix(code, "SYS/TEMP"):
		return true
	case code == "AUTH", strings.HasPrefix(code, "SYS/PERM"):
		return false
	}
	// Without a code, a refused login means bad credentials; any other
	// refusal (a message gone under us, a failing QUIT) may clear up.
	return op != "login"
}

// classifyErr decides whether a non-reply error is temporary.
func classifyErr(err error) bool {
	switch {
	case errors.Is(err, ErrSTLSUnavailable), errors.Is(err, ErrPlaintextInjection),
		errors.Is(err, ErrBadCredentials), errors.Is(err, ErrMessageTooLarge), errors.Is(err, ErrBadConfig):
		return false
	case errors.Is(err, ErrProtocol):
		return true
	}
	var (
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		he  x509.HostnameError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
	)
	if errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) || errors.As(err, &cve) ||
		errors.As(err, &rhe) || errors.As(err, &ae) {
		return false
	}
	// Network trouble, timeouts, cancellation, EOF, a desynchronised
	// stream: try again later on a new connection.
	return true
}
