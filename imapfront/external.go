package imapfront

import (
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
)

// ExternalLogin checks the logins of names that are not configured users
// (Options.Users), e.g. against the POP3 service of a provider. The
// configured users take precedence: a name in Options.Users never reaches
// it.
type ExternalLogin interface {
	// Verify checks password for login and, on success, makes sure the
	// store user called login exists (INBOX included), so the session
	// can open it. It returns nil, or an error matching
	// ErrLoginRejected (wrong credentials, not a name it serves: answered
	// NO [AUTHENTICATIONFAILED] and throttled as a failed login) or
	// ErrLoginUnavailable (the service that checks cannot be asked now:
	// answered NO [UNAVAILABLE], not counted as a failure). Any other
	// error is logged and answered as unavailable too. It must honour
	// ctx, which ends with the connection or the server.
	Verify(ctx context.Context, login, password string) error
}

// ExternalPresence is implemented by an ExternalLogin that wants to know
// when users have sessions: Present(user, true) when a user's first
// session logs in, Present(user, false) when its last one ends. It is
// called for every user, configured ones included, with the server's
// user table locked: it must not block nor call back into the Server.
type ExternalPresence interface {
	Present(user string, present bool)
}

// Errors an ExternalLogin returns (wrapped or not).
var (
	// ErrLoginRejected: the credentials are wrong, or the name is not one
	// the ExternalLogin serves.
	ErrLoginRejected = errors.New("imapfront: login rejected")
	// ErrLoginUnavailable: the login cannot be checked now.
	ErrLoginUnavailable = errors.New("imapfront: login cannot be checked now")
)

// errUnavailableLogin answers a login whose check is unavailable.
var errUnavailableLogin = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
	Text: "Login cannot be checked now, try again later"}

// checkExternal runs Options.External for a name that is not a configured
// user: ok, or why not; err is ErrLoginUnavailable (wrapped) when the
// answer must be NO [UNAVAILABLE].
func (s *Server) checkExternal(ctx context.Context, username, password string) (ok bool, reason string, err error) {
	err = s.opts.External.Verify(ctx, username, password)
	switch {
	case err == nil:
		return true, "", nil
	case ctx.Err() != nil:
		return false, "aborted", ctx.Err()
	case errors.Is(err, ErrLoginRejected):
		return false, "rejected by external login", nil
	case errors.Is(err, ErrLoginUnavailable):
		return false, "external login unavailable", err
	}
	s.log.Error("external login failed", "user", username, "err", err)
	return false, "external login failed", errors.Join(ErrLoginUnavailable, err)
}

// notePresence tells Options.External a user's presence changed, if it
// wants to know. Called with usersMu held.
func (s *Server) notePresence(name string, present bool) {
	if p, ok := s.opts.External.(ExternalPresence); ok {
		p.Present(name, present)
	}
}
