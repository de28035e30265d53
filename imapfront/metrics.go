package imapfront

import (
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Per-command observation (Options.OnCommand).
//
// imapserver has no per-command hook, so the session imapserver sees is
// wrapped: meteredSession embeds *session (every method, and so every
// optional imapserver interface, is promoted) and overrides the methods
// that carry a command, timing each call and reporting it under the
// command's name. What this can and cannot see:
//
//   - The name comes from the method and its arguments: Select with
//     ReadOnly is "EXAMINE", a UID set makes "UID FETCH", "UID STORE",
//     "UID COPY", "UID MOVE", "UID EXPUNGE", and kind makes "UID SEARCH".
//     AUTHENTICATE PLAIN arrives as Login and is reported as "LOGIN";
//     LSUB arrives as List and is reported as "LIST".
//   - CLOSE is reported as its parts: "EXPUNGE" then "UNSELECT"; a SELECT
//     or EXAMINE while a mailbox is selected also reports "UNSELECT".
//   - Commands imapserver answers itself (CAPABILITY, NOOP, CHECK, LOGOUT,
//     STARTTLS, ENABLE) never reach the session and are not reported;
//     neither is the Poll that follows every command.
//   - The duration is the session method's: parsing the command and
//     writing its tagged status are not included, but the untagged
//     responses a FETCH or SEARCH writes are. IDLE's duration is the whole
//     idle period.
type meteredSession struct {
	*session
	on func(name string, d time.Duration, err error)
}

var (
	_ imapserver.SessionIMAP4rev2      = (*meteredSession)(nil)
	_ imapserver.SessionAppendLimit    = (*meteredSession)(nil)
	_ imapserver.SessionUnauthenticate = (*meteredSession)(nil)
)

// metered returns the session imapserver should call: sess itself when no
// OnCommand hook is set, sess wrapped otherwise.
func (s *Server) metered(sess *session) imapserver.Session {
	if s.opts.OnCommand == nil {
		return sess
	}
	return &meteredSession{session: sess, on: s.opts.OnCommand}
}

// observe reports one command to the hook; use as
// `defer m.observe("NAME", time.Now(), &err)`.
func (m *meteredSession) observe(name string, start time.Time, errp *error) {
	m.on(name, time.Since(start), *errp)
}

// uidName prefixes name with "UID " when numSet is a UID set.
func uidName(name string, numSet imap.NumSet) string {
	if _, ok := numSet.(imap.UIDSet); ok {
		return "UID " + name
	}
	return name
}

// Login implements imapserver.Session.
func (m *meteredSession) Login(username, password string) (err error) {
	defer m.observe("LOGIN", time.Now(), &err)
	return m.session.Login(username, password)
}

// Select implements imapserver.Session.
func (m *meteredSession) Select(mailbox string, options *imap.SelectOptions) (_ *imap.SelectData, err error) {
	name := "SELECT"
	if options != nil && options.ReadOnly {
		name = "EXAMINE"
	}
	defer m.observe(name, time.Now(), &err)
	return m.session.Select(mailbox, options)
}

// Create implements imapserver.Session.
func (m *meteredSession) Create(mailbox string, options *imap.CreateOptions) (err error) {
	defer m.observe("CREATE", time.Now(), &err)
	return m.session.Create(mailbox, options)
}

// Delete implements imapserver.Session.
func (m *meteredSession) Delete(mailbox string) (err error) {
	defer m.observe("DELETE", time.Now(), &err)
	return m.session.Delete(mailbox)
}

// Rename implements imapserver.Session.
func (m *meteredSession) Rename(mailbox, newName string, options *imap.RenameOptions) (err error) {
	defer m.observe("RENAME", time.Now(), &err)
	return m.session.Rename(mailbox, newName, options)
}

// Subscribe implements imapserver.Session.
func (m *meteredSession) Subscribe(mailbox string) (err error) {
	defer m.observe("SUBSCRIBE", time.Now(), &err)
	return m.session.Subscribe(mailbox)
}

// Unsubscribe implements imapserver.Session.
func (m *meteredSession) Unsubscribe(mailbox string) (err error) {
	defer m.observe("UNSUBSCRIBE", time.Now(), &err)
	return m.session.Unsubscribe(mailbox)
}

// List implements imapserver.Session.
func (m *meteredSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer m.observe("LIST", time.Now(), &err)
	return m.session.List(w, ref, patterns, options)
}

// Status implements imapserver.Session.
func (m *meteredSession) Status(mailbox string, options *imap.StatusOptions) (_ *imap.StatusData, err error) {
	defer m.observe("STATUS", time.Now(), &err)
	return m.session.Status(mailbox, options)
}

// Append implements imapserver.Session.
func (m *meteredSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (_ *imap.AppendData, err error) {
	defer m.observe("APPEND", time.Now(), &err)
	return m.session.Append(mailbox, r, options)
}

// Idle implements imapserver.Session.
func (m *meteredSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) (err error) {
	defer m.observe("IDLE", time.Now(), &err)
	return m.session.Idle(w, stop)
}

// Unselect implements imapserver.Session.
func (m *meteredSession) Unselect() (err error) {
	defer m.observe("UNSELECT", time.Now(), &err)
	return m.session.Unselect()
}

// Expunge implements imapserver.Session.
func (m *meteredSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) (err error) {
	name := "EXPUNGE"
	if uids != nil {
		name = "UID EXPUNGE"
	}
	defer m.observe(name, time.Now(), &err)
	return m.session.Expunge(w, uids)
}

// Search implements imapserver.Session.
func (m *meteredSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	name := "SEARCH"
	if kind == imapserver.NumKindUID {
		name = "UID SEARCH"
	}
	defer m.observe(name, time.Now(), &err)
	return m.session.Search(kind, criteria, options)
}

// Fetch implements imapserver.Session.
func (m *meteredSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer m.observe(uidName("FETCH", numSet), time.Now(), &err)
	return m.session.Fetch(w, numSet, options)
}

// Store implements imapserver.Session.
func (m *meteredSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	defer m.observe(uidName("STORE", numSet), time.Now(), &err)
	return m.session.Store(w, numSet, flags, options)
}

// Copy implements imapserver.Session.
func (m *meteredSession) Copy(numSet imap.NumSet, dest string) (_ *imap.CopyData, err error) {
	defer m.observe(uidName("COPY", numSet), time.Now(), &err)
	return m.session.Copy(numSet, dest)
}

// Move implements imapserver.SessionMove.
func (m *meteredSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer m.observe(uidName("MOVE", numSet), time.Now(), &err)
	return m.session.Move(w, numSet, dest)
}

// Namespace implements imapserver.SessionNamespace.
func (m *meteredSession) Namespace() (_ *imap.NamespaceData, err error) {
	defer m.observe("NAMESPACE", time.Now(), &err)
	return m.session.Namespace()
}

// Unauthenticate implements imapserver.SessionUnauthenticate.
func (m *meteredSession) Unauthenticate() (err error) {
	defer m.observe("UNAUTHENTICATE", time.Now(), &err)
	return m.session.Unauthenticate()
}
