package imapfront

import (
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Login implements imapserver.Session (AUTHENTICATE PLAIN arrives here
// too). Every attempt first waits for the other attempts from its client
// address to be answered (authlimit.Limiter.Acquire), then waits out the penalty of its address and user
// name (Options.AuthLimiter), then verifies the password, against the dummy
// hash when the user is unknown (or asks Options.External, whose
// unavailability is answered NO [UNAVAILABLE] without a penalty); a failure
// is recorded and its penalty waited out before the NO, a success clears
// both penalties.
func (s *session) Login(username, password string) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("LOGIN", &err)
	if s.user != nil {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Already logged in"}
	}
	// The penalty ends early when the connection or the server goes away.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	defer context.AfterFunc(s.srv.ctx, cancel)()
	lim, addr := s.srv.authLim, s.conn.addr
	// One attempt per client address at a time, held until the answer:
	// parallel guesses then cost what sequential ones do.
	release, err := lim.Acquire(ctx, addr)
	if err != nil {
		return errLoginAborted
	}
	defer release()
	if err := lim.Wait(ctx, addr, username); err != nil {
		return errLoginAborted
	}
	ok, reason, verr := s.srv.checkPassword(ctx, username, password)
	if verr != nil && ctx.Err() != nil {
		return errLoginAborted
	}
	if errors.Is(verr, ErrLoginUnavailable) {
		s.log.Warn("imap login unavailable", "user", username, "reason", reason)
		return errUnavailableLogin
	}
	if !ok {
		lim.Failure(addr, username, s.srv.fingerprint.Fingerprint(password))
		failed := s.loginFailed(username, reason, verr)
		if err := lim.Wait(ctx, addr, username); err != nil {
			return errLoginAborted
		}
		return failed
	}
	lim.Success(addr, username)
	us, err := s.srv.acquireUser(s.ctx, username)
	if err != nil {
		return mapStoreError(s.log, "LOGIN", targetMailbox, err)
	}
	s.user = us
	s.srv.pre.remove(s.conn) // logged in: no longer evictable
	s.log = s.log.With("user", username)
	s.log.Info("imap login")
	s.conn.startTrace(s.log, username)
	s.sendAlert(username)
	return nil
}

// checkPassword verifies password for username and says why it failed.
// Unknown users and users whose configured hash is unusable are verified
// against the dummy hash, so every failure costs one full verification.
// Verifications run at most cap(verifySem) at a time (argon2id may take 64
// MiB each); the error is ctx's when ctx ended while waiting for a turn.
func (s *Server) checkPassword(ctx context.Context, username, password string) (ok bool, reason string, err error) {
	if _, known := s.lookupUser(username); !known && s.opts.External != nil {
		// Not under verifySem: the check may wait on a remote server;
		// ExternalLogin bounds its own work.
		return s.checkExternal(ctx, username, password)
	}
	select {
	case s.verifySem <- struct{}{}:
	case <-ctx.Done():
		return false, "aborted", ctx.Err()
	}
	defer func() { <-s.verifySem }()
	h := s.hooks()
	if h != nil {
		h.verifies.Add(1)
	}
	hash, known := s.lookupUser(username)
	if !known {
		if h != nil {
			h.dummyVerifies.Add(1)
		}
		s.verifyPassword(dummyHash(), password)
		return false, "unknown user", nil
	}
	ok, err = s.verifyPassword(hash, password)
	if err != nil {
		if h != nil {
			h.dummyVerifies.Add(1)
		}
		s.verifyPassword(dummyHash(), password)
		return false, "bad password hash in configuration", err
	}
	if !ok {
		return false, "wrong password", nil
	}
	return true, "", nil
}

// loginFailed logs a failed login (address and user, never the password)
// and answers AUTHENTICATIONFAILED.
func (s *session) loginFailed(user, reason string, err error) error {
	s.loginFailures++
	if err != nil {
		s.log.Error("imap login failed", "user", user, "reason", reason, "err", err)
	} else {
		s.log.Warn("imap login failed", "user", user, "reason", reason)
	}
	if s.loginFailures >= maxLoginFailures {
		s.log.Warn("imap connection closed after failed logins", "failures", s.loginFailures)
		// Refuse everything from now on; the connection closes once the
		// answer below is written.
		s.conn.poisoned.Store(true)
	}
	return imapserver.ErrAuthFailed
}

// Unauthenticate implements imapserver.SessionUnauthenticate.
func (s *session) Unauthenticate() (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("UNAUTHENTICATE", &err)
	s.unselect()
	if s.user != nil {
		s.srv.releaseUser(s.user)
		s.user = nil
	}
	s.log = s.srv.log.With("conn", s.conn.remote)
	s.searchRes = nil
	// Not logged in again: back under the pre-login budget, as newest.
	if victim := s.srv.pre.add(s.conn); victim != nil && victim != s.conn {
		s.srv.evictPreLogin(victim)
	}
	return nil
}
