package imapfront

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// Connections that have not logged in yet have a budget of their own
// (Options.MaxPreLoginConns), below the total (Options.MaxConns): a flood of
// connections that never log in (or never send a byte) cannot fill the
// server. When the budget is full, or the total is, the oldest connection
// that has not logged in is closed to make room for the newcomer, as
// Dovecot's login processes do; a logged-in connection is never closed for
// room. A real client logs in within a second of connecting, so the oldest
// unauthenticated connection is the one least likely to be a real client.

// preLogin is the set of connections that have not logged in, oldest
// first.
type preLogin struct {
	max     int // -1: no cap of its own
	mu      sync.Mutex
	conns   list.List // of *connState, oldest at the front
	evicted atomic.Int64
}

// add records a new connection and returns the connection to close to
// keep within the budget, or nil.
func (p *preLogin) add(c *connState) *connState {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.preElem = p.conns.PushBack(c)
	if p.max < 0 || p.conns.Len() <= p.max {
		return nil
	}
	return p.popOldestLocked()
}

// remove forgets c (it logged in or closed); it does nothing when c is not
// in the set.
func (p *preLogin) remove(c *connState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.preElem != nil {
		p.conns.Remove(c.preElem)
		c.preElem = nil
	}
}

// oldest removes and returns the oldest connection, nil when there is
// none.
func (p *preLogin) oldest() *connState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.popOldestLocked()
}

// popOldestLocked is oldest with p.mu held.
func (p *preLogin) popOldestLocked() *connState {
	e := p.conns.Front()
	if e == nil {
		return nil
	}
	c := e.Value.(*connState)
	p.conns.Remove(e)
	c.preElem = nil
	return c
}

// len returns the number of connections that have not logged in.
func (p *preLogin) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns.Len()
}

// evictPreLogin closes c, a connection that has not logged in, to make room.
func (s *Server) evictPreLogin(c *connState) {
	n := s.pre.evicted.Add(1)
	s.log.Debug("imap connection closed to make room: not logged in", "conn", c.remote, "evicted_total", n)
	c.Close()
}

// evictOldestPreLogin is the listeners' netlimit Evict: with the total cap
// reached, it closes the oldest connection that has not logged in.
func (s *Server) evictOldestPreLogin() bool {
	c := s.pre.oldest()
	if c == nil {
		return false
	}
	s.evictPreLogin(c)
	return true
}
