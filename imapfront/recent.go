package imapfront

import (
	"slices"
	"strings"
	"sync"

	"github.com/popbridge/popbridge/store"
)

// \Recent with IMAP4rev1 semantics (RFC 3501 section 2.3.2): a message is
// recent in exactly one session, the first to see it in a mailbox it has
// selected read-write. New mail (delivered, APPENDed, COPYed or MOVEd in) is
// claimed at once by the oldest read-write session that has the mailbox
// selected; when none has, it waits, unclaimed, for the next SELECT, which
// takes it all. EXAMINE shows unclaimed messages as recent without taking
// them. STATUS RECENT counts the unclaimed ones.
//
// The unclaimed messages are remembered in memory, per mailbox, from the
// feed's additions: messages that arrived before the process started are
// not recent, as none of them was ever delivered to a session of this
// process. At most maxUnclaimed are kept per mailbox (the newest).

// maxUnclaimed bounds the unclaimed recent UIDs kept for one mailbox.
const maxUnclaimed = 100_000

// recentTracker holds the unclaimed recent messages of every mailbox.
type recentTracker struct {
	mu        sync.Mutex
	unclaimed map[store.MailboxID][]store.UID // ascending
}

// add records uids (ascending) as unclaimed in mailbox id.
func (r *recentTracker) add(id store.MailboxID, uids []store.UID) {
	if len(uids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unclaimed == nil {
		r.unclaimed = make(map[store.MailboxID][]store.UID)
	}
	u := append(r.unclaimed[id], uids...)
	if len(u) > maxUnclaimed {
		u = slices.Clone(u[len(u)-maxUnclaimed:])
	}
	r.unclaimed[id] = u
}

// take returns the unclaimed UIDs of mailbox id and forgets them (SELECT);
// with keep, it only returns them (EXAMINE).
func (r *recentTracker) take(id store.MailboxID, keep bool) []store.UID {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.unclaimed[id]
	if keep {
		return slices.Clone(u)
	}
	delete(r.unclaimed, id)
	return u
}

// count returns the number of unclaimed UIDs of mailbox id.
func (r *recentTracker) count(id store.MailboxID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unclaimed[id])
}

// expunge forgets uids of mailbox id.
func (r *recentTracker) expunge(id store.MailboxID, uids []store.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.unclaimed[id]
	if !ok {
		return
	}
	gone := make(map[store.UID]bool, len(uids))
	for _, uid := range uids {
		gone[uid] = true
	}
	u = slices.DeleteFunc(u, func(uid store.UID) bool { return gone[uid] })
	if len(u) == 0 {
		delete(r.unclaimed, id)
		return
	}
	r.unclaimed[id] = u
}

// claimerLocked returns the view that claims new messages of m: the oldest
// read-write view, nil when there is none. Must be called with m.mu held.
func (m *mailboxState) claimerLocked() *view {
	var c *view
	for v := range m.views {
		if !v.readOnly && (c == nil || v.seq < c.seq) {
			c = v
		}
	}
	return c
}

// isRecent reports whether uid is recent in the session's view. Only the
// owning session calls it.
func (v *view) isRecent(uid store.UID) bool {
	_, ok := v.recent[uid]
	return ok
}

// withRecent returns flags with \Recent added when uid is recent in v.
func (v *view) withRecent(uid store.UID, flags []string) []string {
	if v == nil || !v.isRecent(uid) {
		return flags
	}
	return append([]string{flagRecent}, flags...)
}

// learnKeywords records the keywords of a FLAGS list the client is told.
func (v *view) learnKeywords(flags []string) {
	if v.known == nil {
		v.known = make(map[string]struct{})
	}
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			v.known[strings.ToLower(f)] = struct{}{}
		}
	}
}

// replyFlags returns the flags a FETCH or STORE reply gives for uid: its
// flags with \Recent when it is recent in v, without the keywords the
// client has not been told about in FLAGS yet (another session added them;
// the FLAGS waits in v's queue). A message whose keywords were left out is
// remembered, and requeueHidden sends its full flags after that FLAGS
// (ImapTest: "Keyword used without being in FLAGS").
func (v *view) replyFlags(uid store.UID, flags []string) []string {
	unknown := func(f string) bool {
		if strings.HasPrefix(f, `\`) {
			return false
		}
		_, ok := v.known[strings.ToLower(f)]
		return !ok
	}
	if slices.ContainsFunc(flags, unknown) {
		flags = slices.DeleteFunc(slices.Clone(flags), unknown)
		v.hidden = append(v.hidden, uid)
	}
	return v.withRecent(uid, flags)
}

// requeueHidden queues the current flags of the messages whose keywords a
// reply left out, behind the FLAGS that announces them, for the poll that
// follows the command.
func (v *view) requeueHidden() {
	if len(v.hidden) == 0 {
		return
	}
	m := v.mbox
	m.mu.Lock()
	for _, uid := range v.hidden {
		// Usually the change that added the keyword is queued already.
		queued := slices.ContainsFunc(v.pending, func(u update) bool { return u.kind == updFlags && u.uid == uid })
		if i, ok := m.indexLocked(uid); ok && !queued {
			v.push(update{kind: updFlags, uid: uid, flags: m.entries[i].flags})
		}
	}
	m.mu.Unlock()
	v.hidden = v.hidden[:0]
	v.wake()
}

// flagRecent is the \Recent flag as popbridge writes it.
const flagRecent = `\Recent`
