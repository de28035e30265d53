package imapfront

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// specialUses are the special-use attributes CREATE (USE ...) accepts.
var specialUses = []string{store.SpecialAll, store.SpecialArchive, store.SpecialDrafts,
	store.SpecialFlagged, store.SpecialJunk, store.SpecialSent, store.SpecialTrash}

// errUseAttr refuses a CREATE with a special-use attribute popbridge does
// not support (RFC 6154 section 3).
var errUseAttr = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}

// errStatusItem refuses STATUS items popbridge cannot compute (docs/imapserver-workarounds.md, "STATUS items").
var errStatusItem = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Unsupported STATUS item DELETED-STORAGE"}

// Create implements imapserver.Session, with CREATE-SPECIAL-USE (RFC 6154).
// A trailing delimiter is dropped (RFC 3501 section 6.3.3).
func (s *session) Create(name string, options *imap.CreateOptions) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("CREATE", &err)
	us, err := s.requireUser()
	if err != nil {
		return err
	}
	name = strings.TrimSuffix(name, string(store.Delimiter))
	use := ""
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return errUseAttr
		}
		for _, su := range specialUses {
			if strings.EqualFold(string(options.SpecialUse[0]), su) {
				use = su
			}
		}
		if use == "" {
			return errUseAttr
		}
	}
	us.createMu.Lock()
	defer us.createMu.Unlock()
	if err := s.checkMailboxLimit(us, name, false); err != nil {
		return err
	}
	if _, err := s.srv.opts.Store.CreateMailbox(s.ctx, us.id, name, use); err != nil {
		return s.storeErr("CREATE", targetMailbox, err)
	}
	return nil
}

// errTooManyMailboxes refuses a CREATE or RENAME over Options.MaxMailboxes.
var errTooManyMailboxes = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many mailboxes"}

// checkMailboxLimit refuses with NO [LIMIT] when creating name (renaming a
// mailbox to it when rename is set) would leave the user with more than
// Options.MaxMailboxes mailboxes. The store creates missing parents as
// \Noselect mailboxes, so each missing level counts; a renamed mailbox
// moves and only its new parents count, except INBOX, which stays. Names
// the store would refuse are left for it to refuse. The caller holds
// us.createMu, so concurrent CREATEs of one user cannot overshoot.
func (s *session) checkMailboxLimit(us *userState, name string, rename bool) error {
	max := s.srv.maxMboxes
	if max < 0 {
		return nil
	}
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return nil
	}
	mboxes, err := s.srv.opts.Store.Mailboxes(s.ctx, us.id)
	if err != nil {
		return s.storeErr("CREATE", targetMailbox, err)
	}
	have := make(map[string]bool, len(mboxes))
	for _, mb := range mboxes {
		have[mb.Name] = true
	}
	added := 0
	levels := strings.Split(canon, string(store.Delimiter))
	for i := range levels {
		if n := strings.Join(levels[:i+1], string(store.Delimiter)); !have[n] {
			added++
		}
	}
	if rename && added > 0 {
		added-- // the renamed mailbox itself
	}
	if len(mboxes)+added > max {
		s.log.Warn("imap mailbox limit reached", "mailboxes", len(mboxes), "limit", max)
		return errTooManyMailboxes
	}
	return nil
}

// Delete implements imapserver.Session (RFC 3501 section 6.3.4 semantics
// are the store's).
func (s *session) Delete(name string) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("DELETE", &err)
	us, err := s.requireUser()
	if err != nil {
		return err
	}
	if err := s.srv.opts.Store.DeleteMailbox(s.ctx, us.id, name); err != nil {
		return s.storeErr("DELETE", targetMailbox, err)
	}
	return nil
}

// Rename implements imapserver.Session; children move along, and renaming
// INBOX moves its messages (the store's semantics).
func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("RENAME", &err)
	us, err := s.requireUser()
	if err != nil {
		return err
	}
	newName = strings.TrimSuffix(newName, string(store.Delimiter))
	us.createMu.Lock()
	defer us.createMu.Unlock()
	// Renaming INBOX creates the new mailbox and keeps INBOX.
	if err := s.checkMailboxLimit(us, newName, !strings.EqualFold(oldName, store.Inbox)); err != nil {
		return err
	}
	if err := s.srv.opts.Store.RenameMailbox(s.ctx, us.id, oldName, newName); err != nil {
		return s.storeErr("RENAME", targetMailbox, err)
	}
	return nil
}

// Subscribe implements imapserver.Session.
func (s *session) Subscribe(name string) (err error) {
	return s.setSubscribed("SUBSCRIBE", name, true)
}

// Unsubscribe implements imapserver.Session.
func (s *session) Unsubscribe(name string) (err error) {
	return s.setSubscribed("UNSUBSCRIBE", name, false)
}

func (s *session) setSubscribed(op, name string, on bool) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end(op, &err)
	us, err := s.requireUser()
	if err != nil {
		return err
	}
	if err := s.srv.opts.Store.SetSubscribed(s.ctx, us.id, name, on); err != nil {
		return s.storeErr(op, targetMailbox, err)
	}
	return nil
}

// Status implements imapserver.Session. Every requested item is filled;
// DELETED-STORAGE is refused (a nil item would kill the connection:
// docs/imapserver-workarounds.md, "STATUS items"; go-imap #746).
func (s *session) Status(name string, options *imap.StatusOptions) (data *imap.StatusData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("STATUS", &err)
	us, err := s.requireUser()
	if err != nil {
		return nil, err
	}
	if options.DeletedStorage {
		return nil, errStatusItem
	}
	mb, err := s.srv.opts.Store.MailboxByName(s.ctx, us.id, name)
	if err != nil {
		return nil, s.storeErr("STATUS", targetMailbox, err)
	}
	if mb.NoSelect {
		return nil, s.storeErr("STATUS", targetMailbox, store.ErrNoSelect)
	}
	return s.statusData(us, mb, options)
}

// statusData computes the STATUS items of options for mb.
func (s *session) statusData(us *userState, mb store.Mailbox, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: mb.Name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity}
	if options.NumMessages || options.NumUnseen || options.NumDeleted || options.Size {
		c, err := s.srv.opts.Store.Counts(s.ctx, us.id, mb.ID)
		if err != nil {
			return nil, s.storeErr("STATUS", targetMailbox, err)
		}
		data.NumMessages = &c.Messages
		data.NumUnseen = &c.Unseen
		data.NumDeleted = &c.Deleted
		data.Size = &c.Size
	}
	recent := uint32(s.srv.recent.count(mb.ID))
	data.NumRecent = &recent
	limit := s.srv.limit
	data.AppendLimit = &limit
	return data, nil
}

// listEntry is one mailbox LIST may report.
type listEntry struct {
	name       string
	mb         *store.Mailbox // nil: subscribed but nonexistent
	subscribed bool
	children   bool
	subChild   bool // a descendant is subscribed (RECURSIVEMATCH)
}

// joinListRef joins the LIST reference and pattern like imapserver.MatchList:
// a pattern starting with the delimiter ignores the reference, and a
// reference gets a delimiter appended.
func joinListRef(ref, pattern string) string {
	d := string(store.Delimiter)
	if strings.HasPrefix(pattern, d) {
		return strings.TrimPrefix(pattern, d)
	}
	if ref != "" && !strings.HasSuffix(ref, d) {
		ref += d
	}
	return ref + pattern
}

// List implements imapserver.Session: LIST with patterns (listMatch),
// LIST-EXTENDED selection and return options (RFC 5258), SPECIAL-USE (RFC
// 6154), CHILDREN and LIST-STATUS (RFC 5819), and LSUB.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("LIST", &err)
	us, err := s.requireUser()
	if err != nil {
		return err
	}
	if options == nil {
		options = &imap.ListOptions{}
	}
	if options.ReturnStatus != nil && options.ReturnStatus.DeletedStorage {
		return errStatusItem
	}
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: store.Delimiter, Mailbox: ""})
	}
	st := s.srv.opts.Store
	mboxes, err := st.Mailboxes(s.ctx, us.id)
	if err != nil {
		return s.storeErr("LIST", targetMailbox, err)
	}
	subs, err := st.Subscriptions(s.ctx, us.id)
	if err != nil {
		return s.storeErr("LIST", targetMailbox, err)
	}
	subscribed := make(map[string]bool, len(subs))
	for _, n := range subs {
		subscribed[n] = true
	}
	entries := make(map[string]*listEntry, len(mboxes))
	for i := range mboxes {
		mb := &mboxes[i]
		entries[mb.Name] = &listEntry{name: mb.Name, mb: mb, subscribed: subscribed[mb.Name] || mb.Subscribed}
	}
	if options.SelectSubscribed {
		for _, n := range subs {
			if entries[n] == nil {
				entries[n] = &listEntry{name: n, subscribed: true}
			}
		}
	}
	full := make([]string, len(patterns))
	for i, p := range patterns {
		full[i] = joinListRef(ref, p)
	}
	for name, e := range entries {
		for p := parentName(name); p != ""; p = parentName(p) {
			pe := entries[p]
			if pe == nil {
				continue
			}
			if e.mb != nil {
				pe.children = true
			}
			if e.subscribed && options.SelectRecursiveMatch && !listedApart(name, p, full) {
				pe.subChild = true
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		matched := false
		for _, p := range full {
			if listMatch(n, p) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		data, ok := s.listData(us, e, options)
		if !ok {
			continue
		}
		if err := w.WriteList(data); err != nil {
			return wrapErr("write list response", err)
		}
	}
	return nil
}

// listedApart reports whether the subscribed mailbox child is returned by
// a pattern that does not match its parent: the parent then needs no
// CHILDINFO for it (RFC 5258 section 3.5 says the server SHOULD NOT return
// such a redundant parent; Dovecot does not).
func listedApart(child, parent string, patterns []string) bool {
	for _, p := range patterns {
		if listMatch(child, p) && !listMatch(parent, p) {
			return true
		}
	}
	return false
}

// listData builds the LIST response of e, or reports that the selection
// options exclude it.
func (s *session) listData(us *userState, e *listEntry, options *imap.ListOptions) (*imap.ListData, bool) {
	data := &imap.ListData{Delim: store.Delimiter, Mailbox: e.name}
	if options.SelectSubscribed && !e.subscribed {
		if !options.SelectRecursiveMatch || !e.subChild {
			return nil, false
		}
		data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
	}
	if options.SelectSpecialUse && (e.mb == nil || e.mb.SpecialUse == "") {
		return nil, false
	}
	switch {
	case e.mb == nil:
		data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
	case e.mb.NoSelect:
		data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
	}
	if e.mb != nil {
		if e.children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if e.mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(e.mb.SpecialUse))
		}
	}
	if e.subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
		data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
	}
	if options.ReturnStatus != nil && e.mb != nil && !e.mb.NoSelect {
		st, err := s.statusData(us, *e.mb, options.ReturnStatus)
		if err == nil {
			data.Status = st
		}
	}
	return data, true
}

// parentName returns the name of the parent level of name, "" at the top.
func parentName(name string) string {
	i := strings.LastIndexByte(name, store.Delimiter)
	if i < 0 {
		return ""
	}
	return name[:i]
}
