package imapfront

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// Expunge implements imapserver.Session (EXPUNGE, UID EXPUNGE and the
// expunge of CLOSE). The EXPUNGE responses are not written here: the feed
// queues them to every session of the mailbox, this one included, and the
// Poll after the command delivers them (CLOSE unselects first, so it sends
// none). In a read-only mailbox CLOSE expunges nothing and EXPUNGE is
// refused.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("EXPUNGE", &err)
	v, err := s.requireSelected()
	if err != nil {
		return err
	}
	if v.readOnly {
		if w == nil || *w == (imapserver.ExpungeWriter{}) {
			return nil // CLOSE: nothing to expunge, and it must succeed
		}
		return errReadOnly
	}
	var list []store.UID
	if uids != nil {
		list = targetUIDs(v.resolve(*uids, s.searchRes))
		if len(list) == 0 {
			return nil
		}
	}
	if _, err := s.srv.opts.Store.Expunge(s.origin(false), s.user.id, v.mbox.id, list); err != nil {
		return s.storeErr("EXPUNGE", targetMailbox, err)
	}
	return nil
}
