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
		cancel := s.opts.Store.Subscribe(s.onChange)
		s.feedMu.Lock()
		s.feedCancel = cancel
		s.feedMu.Unlock()
	})
}

// onChange is the store's change feed. It runs synchronously in the
// writer's goroutine with the store's writer lock held, so it only takes
// in-memory locks and appends to queues.
func (s *Server) onChange(c store.Change) {
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
