package imapfront

import (
	"context"
	"errors"
	"fmt"

	"sync"

	"github.com/popbridge/popbridge/store"
)

// userState is shared by every session of one user (hydroxide imap/user.go):
// the mailboxes those sessions have selected, each with its one tracker.
// refs counts sessions logged in as the user and is guarded by
// Server.usersMu; the state is dropped when it reaches zero.
type userState struct {
	id   store.UserID
	name string
	refs int

	mu     sync.Mutex
	mboxes map[store.MailboxID]*mailboxState

	// createMu serialises CREATE and RENAME of the user's sessions around
	// the mailbox-count check. It is held across store calls, so it is
	// taken before, never while holding, any other lock.
	createMu sync.Mutex
}

// acquireUser returns the shared state of the store user called name,
// creating the user (with its default mailboxes) on first login.
func (s *Server) acquireUser(ctx context.Context, name string) (*userState, error) {
	u, err := s.opts.Store.UserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		u, err = s.opts.Store.EnsureUser(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up store user: %w", err)
	}
	s.ensureFeed()
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	us := s.users[u.ID]
	if us == nil {
		us = &userState{id: u.ID, name: u.Name, mboxes: make(map[store.MailboxID]*mailboxState)}
		s.users[u.ID] = us
	}
	us.refs++
	if us.refs == 1 {
		s.notePresence(us.name, true)
	}
	return us, nil
}

// releaseUser drops one reference taken by acquireUser.
func (s *Server) releaseUser(us *userState) {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	us.refs--
	if us.refs <= 0 && s.users[us.id] == us {
		delete(s.users, us.id)
		s.notePresence(us.name, false)
	}
}

// acquireMailbox returns the loaded shared state of mailbox id, loading it
// from a store snapshot if no session has it selected yet.
func (s *Server) acquireMailbox(ctx context.Context, us *userState, id store.MailboxID) (*mailboxState, error) {
	us.mu.Lock()
	m := us.mboxes[id]
	first := m == nil
	if first {
		m = newMailboxState(id)
		us.mboxes[id] = m
	}
	m.refs++
	us.mu.Unlock()

	if first {
		m.loadErr = m.load(ctx, s.opts.Store, us.id)
		close(m.ready)
	} else {
		select {
		case <-m.ready:
		case <-ctx.Done():
			s.releaseMailbox(us, m)
			return nil, ctx.Err()
		}
	}
	if m.loadErr != nil {
		s.releaseMailbox(us, m)
		return nil, m.loadErr
	}
	return m, nil
}

// releaseMailbox drops one reference taken by acquireMailbox.
func (s *Server) releaseMailbox(us *userState, m *mailboxState) {
	us.mu.Lock()
	defer us.mu.Unlock()
	m.refs--
	if m.refs <= 0 && us.mboxes[m.id] == m {
		delete(us.mboxes, m.id)
	}
}

// ensureFeed subscribes to the store's change feed once.
func (s *Server) ensureFeed() {
	s.feedOnce.Do(func() {
		sub := s.opts.Store.Subscribe(s.onChange)
		s.feedMu.Lock()
		s.feedSub = sub
		s.feedMu.Unlock()
	})
}

// syncFeed waits until onChange has applied every change committed before
// the call (store.Subscription.Sync): a session calls it when a command
// begins and before it writes its updates, so it sees the committed state,
// its own changes included, before its tagged reply, exactly as if the
// feed were synchronous. It must not be called with a lock of the package
// held (onChange takes them). It gives up when ctx ends (the session is
// closing).
func (s *Server) syncFeed(ctx context.Context) {
	s.feedMu.Lock()
	sub := s.feedSub
	s.feedMu.Unlock()
	if sub != nil {
		_ = sub.Sync(ctx) // fails only when ctx ends, which the session sees on its own
	}
}

// onChange is the store's change feed. It runs on the feed's goroutine
// (one change at a time, in commit order) and only takes in-memory locks
// and appends to queues, so sessions waiting in syncFeed wait little.
func (s *Server) onChange(c store.Change) {
	if c.Kind == store.ChangeResync {
		s.resync()
		return
	}
	switch c.Kind {
	case store.ChangeAdd, store.ChangeFlags, store.ChangeExpunge:
	default:
		return
	}
	if c.Kind == store.ChangeExpunge {
		s.recent.expunge(c.Mailbox, c.UIDs)
	}
	claimed := false
	defer func() {
		if c.Kind == store.ChangeAdd && !claimed {
			// No session took the new messages as recent: the next
			// SELECT does (recent.go).
			uids := make([]store.UID, len(c.Entries))
			for i, e := range c.Entries {
				uids[i] = e.UID
			}
			s.recent.add(c.Mailbox, uids)
		}
	}()
	s.usersMu.Lock()
	us := s.users[c.User]
	s.usersMu.Unlock()
	if us == nil {
		return
	}
	us.mu.Lock()
	m := us.mboxes[c.Mailbox]
	us.mu.Unlock()
	if m == nil {
		return
	}
	m.mu.Lock()
	claimed = m.applyLocked(c)
	m.mu.Unlock()
}

// resync handles a store.ChangeResync: the feed dropped changes because
// this server fell too far behind, so the state of every selected mailbox
// may be stale. As when one session's queue overflows (maxPending), every
// session with a mailbox selected is disconnected at its next command (or
// at once in IDLE), so its client resynchronises, and the states are
// dropped, so the next SELECT loads a fresh snapshot. Unclaimed \Recent
// marks of the dropped additions are lost.
func (s *Server) resync() {
	s.log.Warn("imap change feed fell behind; sessions with a mailbox selected must reconnect")
	s.usersMu.Lock()
	users := make([]*userState, 0, len(s.users))
	for _, us := range s.users {
		users = append(users, us)
	}
	s.usersMu.Unlock()
	for _, us := range users {
		us.mu.Lock()
		states := make([]*mailboxState, 0, len(us.mboxes))
		for _, m := range us.mboxes {
			states = append(states, m)
		}
		clear(us.mboxes)
		us.mu.Unlock()
		for _, m := range states {
			m.mu.Lock()
			m.stale = true
			for v := range m.views {
				v.overflow, v.pending = true, nil
				v.wake()
			}
			m.mu.Unlock()
		}
	}
}
