package imapfront

import (
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// convCacheEntries is the number of messages whose ENVELOPE and
// BODYSTRUCTURE, converted to go-imap's types, a server keeps (a few KiB
// each at most, and each keeps the store metadata it was made from alive,
// even once the store's cache has let it go). Kept under the store's
// cache (32,768 messages by default): at 32,768 an ENVELOPE sync of
// 100,000 messages peaked at 179 MB of RSS.
const convCacheEntries = 8192

// converted is the go-imap form of one message's stored metadata. Its
// values are shared by every session writing that message and are never
// modified (imapserver only reads them).
type converted struct {
	// env and part are the store values it was made from: a cached entry
	// is used only for a MessageMeta carrying these very pointers.
	env  *store.Envelope
	part *store.Part

	envelope *imap.Envelope
	bs       imap.BodyStructure
}

// convCache keeps the converted ENVELOPE and BODYSTRUCTURE of recently
// fetched messages, so that a header sync (FETCH 1:* (ENVELOPE
// BODYSTRUCTURE)) does not rebuild them for every message every time.
//
// Keys are store.MessageIDs. The metadata of a stored message never changes,
// but an entry is only used for a MessageMeta whose Envelope and Structure
// are the very values (pointers) the entry was made from: the store hands
// them out from its own metadata cache, shared and read-only. So an entry
// can never answer for different metadata (a reused id, a store cache that
// reloaded the message, another user's message), whatever the store does
// with ids; at worst it is a miss. A user only ever reaches the metadata of
// its own messages through store.Meta, so a shared cache leaks nothing
// between users.
//
// It is bounded by two generations of at most max/2 entries each: a lookup
// that hits the old generation moves the entry to the new one, and a new
// generation that fills up replaces the old one. Entries used by a client
// that syncs again survive; a mailbox larger than the cache only costs the
// conversions it did before.
type convCache struct {
	max int // total entries (both generations); 0 disables the cache

	mu  sync.Mutex
	cur map[store.MessageID]*converted
	old map[store.MessageID]*converted
}

func newConvCache(max int) *convCache {
	c := &convCache{max: max}
	if max > 0 {
		c.cur = make(map[store.MessageID]*converted)
	}
	return c
}

// get returns the converted metadata of m, from the cache or converted now.
func (c *convCache) get(m *store.MessageMeta) *converted {
	if c.max <= 0 {
		return convert(m)
	}
	c.mu.Lock()
	e := c.cur[m.Message]
	if e == nil {
		if e = c.old[m.Message]; e != nil && e.env == m.Envelope && e.part == m.Structure {
			delete(c.old, m.Message)
			c.insertLocked(m.Message, e)
		}
	}
	c.mu.Unlock()
	if e != nil && e.env == m.Envelope && e.part == m.Structure {
		return e
	}
	e = convert(m)
	c.mu.Lock()
	c.insertLocked(m.Message, e)
	c.mu.Unlock()
	return e
}

// insertLocked adds e to the current generation. Must be called with c.mu
// held.
func (c *convCache) insertLocked(id store.MessageID, e *converted) {
	if _, ok := c.cur[id]; !ok && len(c.cur) >= max(1, c.max/2) {
		c.old = c.cur
		c.cur = make(map[store.MessageID]*converted, len(c.old))
	}
	c.cur[id] = e
}

// reset empties the cache (the server is idle: idlemem.go).
func (c *convCache) reset() {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	c.cur = make(map[store.MessageID]*converted)
	c.old = nil
	c.mu.Unlock()
}

// len returns the number of cached entries.
func (c *convCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// convert builds the go-imap form of m's metadata.
func convert(m *store.MessageMeta) *converted {
	return &converted{
		env:      m.Envelope,
		part:     m.Structure,
		envelope: toEnvelope(m.Envelope),
		bs:       toBodyStructure(m.Structure),
	}
}
