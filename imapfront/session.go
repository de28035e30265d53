package imapfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// hintInterval bounds how often Poll (every command, NOOP included) hints
// the poller; SELECT and IDLE always hint.
const hintInterval = 10 * time.Second

// session is one IMAP connection's session. imapserver calls its methods
// from the connection's goroutine, one command at a time (Idle from a second
// goroutine while the first waits for DONE), so its fields need no lock.
type session struct {
	srv  *Server
	conn *connState
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	user *userState // nil before login
	view *view      // nil unless a mailbox is selected

	searchRes     []store.UID // SEARCHRES "$" (RFC 5182)
	loginFailures int

	// openResp is the FETCH response being written, closed by the panic
	// handler so the connection's write lock is released.
	openResp *imapserver.FetchResponseWriter

	// imapserver may call Close while Idle still runs (the connection
	// dropped during IDLE): Close waits for it.
	mu       sync.Mutex
	closed   bool
	idling   sync.WaitGroup
	lastHint time.Time
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func newSession(s *Server, cs *connState) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		srv:  s,
		conn: cs,
		log:  s.log.With("conn", cs.remote),
		ctx:  ctx,
		stop: cancel,
	}
}

// begin starts a session method: it refuses on a poisoned or draining
// connection. Every method that begins must `defer s.end(op, &err)`.
func (s *session) begin() error {
	s.srv.syncFeed(s.ctx) // start from the committed state (user.go)
	return s.conn.enter()
}

// end finishes a session method: it turns a panic into a logged generic
// failure (closing the connection when a response was half written) and any
// error that is not an *imap.Error into errInternal.
func (s *session) end(op string, errp *error) {
	if v := recover(); v != nil {
		s.srv.countPanic()
		s.log.Error("panic in imap session", "op", op, "panic", v, "stack", string(debug.Stack()))
		if s.openResp != nil {
			s.openResp.Close()
			s.openResp = nil
			s.conn.Conn.Close()
		}
		*errp = errInternal
	}
	s.conn.leave()
	if *errp != nil {
		var imapErr *imap.Error
		if !errors.As(*errp, &imapErr) {
			*errp = mapStoreError(s.log, op, targetMailbox, *errp)
		}
		if s.conn.tlsUp.Load() && errors.As(*errp, &imapErr) && imapErr.Code == imap.ResponseCodeServerBug {
			// Counted here: connState cannot read the answer under TLS.
			s.srv.serverBug()
		}
	}
}

// uncork ends a connState.cork of the session method returning *errp,
// reporting a failed write unless the method already failed.
func (s *session) uncork(errp *error) {
	if err := s.conn.uncork(); err != nil && *errp == nil {
		*errp = err
	}
}

// Close implements imapserver.Session.
func (s *session) Close() error {
	s.stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.idling.Wait()
	s.unselect()
	if s.user != nil {
		s.srv.releaseUser(s.user)
		s.user = nil
	}
	return nil
}

// errLoginAborted answers a login cut short by shutdown.
var errLoginAborted = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Server is shutting down"}

// maxLoginFailures is how many failed logins a connection may make; the
// connection is closed after the answer to the last one.
const maxLoginFailures = 3

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 {
	return s.srv.limit
}

// Namespace implements imapserver.SessionNamespace: one personal namespace.
func (s *session) Namespace() (data *imap.NamespaceData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("NAMESPACE", &err)
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: store.Delimiter}},
	}, nil
}

// hint tells the Hinter the user looks at the selected mailbox.
func (s *session) hint(force bool) {
	h := s.srv.opts.Hinter
	if h == nil || s.user == nil || s.view == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	if !force && now.Sub(s.lastHint) < hintInterval {
		s.mu.Unlock()
		return
	}
	s.lastHint = now
	s.mu.Unlock()
	h.Hint(s.user.name, s.view.name)
}

// Poll implements imapserver.Session: it writes the updates queued for the
// selected mailbox (NOOP, CHECK and after every command).
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.conn.poisoned.Load() {
		return errPoisoned
	}
	if s.view == nil {
		return nil
	}
	s.hint(false)
	s.srv.syncFeed(s.ctx) // the command's own changes are queued first
	res, err := s.view.drain(allowExpunge)
	if err != nil {
		s.log.Warn("imap session disconnected", "reason", err)
	}
	return writeOut(w, res, err)
}

// Idle implements imapserver.Session: it pushes every update as soon as the
// feed queues it, until stop is closed.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.conn.poisoned.Load() {
		return errPoisoned
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.idling.Add(1)
	defer s.idling.Done()
	v := s.view
	s.mu.Unlock()
	if v != nil {
		s.hint(true)
	}
	if v == nil {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	for {
		res, err := v.drain(true)
		if err != nil {
			s.log.Warn("imap session disconnected", "reason", err)
		}
		if err := writeOut(w, res, err); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-v.notify:
		}
	}
}

// origin returns a context tagging the session's writes for the feed.
func (s *session) origin(silent bool) context.Context {
	return store.WithOrigin(s.ctx, &opOrigin{view: s.view, silent: silent})
}

// requireSelected returns the selected view or a BAD error.
func (s *session) requireSelected() (*view, error) {
	if s.view == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return s.view, nil
}

// requireUser returns the logged-in user or a BAD error.
func (s *session) requireUser() (*userState, error) {
	if s.user == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Not authenticated"}
	}
	return s.user, nil
}

// storeErr maps a store error for op (see errors.go).
func (s *session) storeErr(op string, target errTarget, err error) error {
	return mapStoreError(s.log, op, target, err)
}

// wrapErr adds the doing-what prefix to an internal error.
func wrapErr(what string, err error) error {
	return fmt.Errorf("%s: %w", what, err)
}
