package imapfront

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// Select implements imapserver.Session (SELECT and EXAMINE). The client
// view starts as the shared state's messages at this moment; the view is
// registered under the same lock, so no change is missed or counted twice.
func (s *session) Select(name string, options *imap.SelectOptions) (data *imap.SelectData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("SELECT", &err)
	us, err := s.requireUser()
	if err != nil {
		return nil, err
	}
	s.unselect()
	mb, err := s.srv.opts.Store.MailboxByName(s.ctx, us.id, name)
	if err != nil {
		return nil, s.storeErr("SELECT", targetMailbox, err)
	}
	if mb.NoSelect {
		return nil, s.storeErr("SELECT", targetMailbox, store.ErrNoSelect)
	}
	if mb.Name == store.Inbox {
		defer func() {
			if err == nil {
				s.sendAlert(us.name) // before imapserver writes the SELECT data
			}
		}()
	}
	m, err := s.srv.acquireMailbox(s.ctx, us, mb.ID)
	if err != nil {
		return nil, s.storeErr("SELECT", targetMailbox, err)
	}
	v := &view{
		mbox:      m,
		name:      mb.Name,
		readOnly:  options != nil && options.ReadOnly,
		notify:    make(chan struct{}, 1),
		ownQueued: make(map[store.UID]struct{}),
		seq:       s.srv.viewSeq.Add(1),
		recent:    make(map[store.UID]struct{}),
	}

	m.mu.Lock()
	// SELECT takes the messages no session has seen as recent; EXAMINE
	// shows them without taking them (recent.go).
	for _, uid := range s.srv.recent.take(mb.ID, v.readOnly) {
		if _, found := m.indexLocked(uid); found {
			v.recent[uid] = struct{}{}
		}
	}
	v.uids = make([]store.UID, len(m.entries))
	var firstUnseen uint32
	for i, e := range m.entries {
		v.uids[i] = e.uid
		if firstUnseen == 0 && !slices.Contains(e.flags, store.FlagSeen) {
			firstUnseen = uint32(i) + 1
		}
	}
	flags := m.flagListLocked()
	v.learnKeywords(flags)
	data = &imap.SelectData{
		Flags:             toIMAPFlags(flags),
		NumMessages:       uint32(len(v.uids)),
		NumRecent:         uint32(len(v.recent)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(m.uidNext),
		UIDValidity:       m.uidValidity,
	}
	v.overflow = m.stale
	m.views[v] = struct{}{}
	m.mu.Unlock()

	if v.readOnly {
		data.PermanentFlags = []imap.Flag{}
	} else {
		data.PermanentFlags = append(toIMAPFlags(flags), imap.FlagWildcard)
	}
	s.view = v
	s.searchRes = nil
	s.hint(true)
	return data, nil
}

// Unselect implements imapserver.Session (UNSELECT, and CLOSE after its
// expunge).
func (s *session) Unselect() (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("UNSELECT", &err)
	s.unselect()
	return nil
}

// unselect drops the selected mailbox, if any.
func (s *session) unselect() {
	v := s.view
	if v == nil {
		return
	}
	s.view = nil
	s.searchRes = nil
	v.mbox.mu.Lock()
	delete(v.mbox.views, v)
	v.pending = nil
	v.mbox.mu.Unlock()
	s.srv.releaseMailbox(s.user, v.mbox)
}
