package store

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Messages are immutable once stored, and a MessageID is never reused
// (messages.id is AUTOINCREMENT: SQLite never hands out an id again, not
// even the largest after it was deleted), so the decoded metadata of a
// message can be cached by MessageID without any invalidation protocol: an
// entry can never become stale, only useless once its message is deleted.
// Deleted messages are dropped from the cache after commit to give the
// memory back early; a reader that races the deletion may put one back,
// which costs memory until it is evicted, never a wrong answer.

// Default bounds of the metadata cache (Options.MetaCacheEntries and
// Options.MetaCacheBytes).
// The cache speeds up repeated FETCH ENVELOPE/BODYSTRUCTURE of the same
// messages; a full scan of a large mailbox decodes its metadata anyway, so
// the bound is kept small: with the collector's target at GOGC=200 every
// byte cached costs about three of resident memory while a sync runs.
const (
	DefaultMetaCacheEntries = 32_768
	DefaultMetaCacheBytes   = 16 << 20
)

// messageInfo is the immutable metadata of one message, shared by every
// MessageMeta that refers to it.
type messageInfo struct {
	size      int64
	date      time.Time
	envelope  *Envelope
	structure *Part
	cost      int64 // approximate bytes held
	// damaged: the message's bytes could not be read to compute the
	// rest (never cached; envelope and structure are nil).
	damaged bool
}

// cacheEntryOverhead approximates the bytes the cache spends per entry
// besides the decoded metadata: the messageInfo, its slot and index entry.
const cacheEntryOverhead = int64(unsafe.Sizeof(messageInfo{})) + int64(unsafe.Sizeof(cacheSlot{})) + 32

// metaCache is a bounded map MessageID -> *messageInfo with CLOCK
// (second-chance) eviction, bounded by entry count and approximate bytes.
// Lookups share a read lock and mark entries referenced atomically; inserts
// and removals take the write lock. New entries start unreferenced, so a
// one-off scan of a large mailbox evicts its own entries before the ones
// that are being reused.
type metaCache struct {
	maxEntries int
	maxBytes   int64

	mu    sync.RWMutex
	bytes int64
	index map[MessageID]int32
	slots []cacheSlot
	free  []int32 // indexes of empty slots
	hand  int

	hits, misses atomic.Int64
}

type cacheSlot struct {
	id   MessageID
	info *messageInfo // nil: empty slot
	ref  atomic.Bool
}

// newMetaCache returns a cache bounded by maxEntries and maxBytes, or nil
// (caching disabled) if either bound is not positive.
func newMetaCache(maxEntries int, maxBytes int64) *metaCache {
	if maxEntries <= 0 || maxBytes <= 0 {
		return nil
	}
	return &metaCache{maxEntries: maxEntries, maxBytes: maxBytes, index: map[MessageID]int32{}}
}

// lookup fills infos[i] with the cached metadata of ids[i] where present
// and returns how many it found. A nil cache finds nothing.
func (c *metaCache) lookup(ids []MessageID, infos []*messageInfo) int {
	if c == nil {
		return 0
	}
	found := 0
	c.mu.RLock()
	for i, id := range ids {
		if j, ok := c.index[id]; ok {
			s := &c.slots[j]
			if !s.ref.Load() {
				s.ref.Store(true)
			}
			infos[i] = s.info
			found++
		}
	}
	c.mu.RUnlock()
	c.hits.Add(int64(found))
	c.misses.Add(int64(len(ids) - found))
	return found
}

// add caches infos[i] under ids[i], evicting as needed. An entry larger
// than the byte bound is not cached.
func (c *metaCache) add(ids []MessageID, infos []*messageInfo) {
	if c == nil || len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, id := range ids {
		info := infos[i]
		if info.cost > c.maxBytes {
			continue
		}
		if _, ok := c.index[id]; ok {
			continue
		}
		for c.bytes+info.cost > c.maxBytes || (len(c.free) == 0 && len(c.slots) >= c.maxEntries) {
			c.evictOne()
		}
		var j int32
		if n := len(c.free); n > 0 {
			j = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			c.slots = append(c.slots, cacheSlot{})
			j = int32(len(c.slots) - 1)
		}
		s := &c.slots[j]
		s.id, s.info = id, info
		s.ref.Store(false)
		c.index[id] = j
		c.bytes += info.cost
	}
}

// evictOne advances the clock hand to the first unreferenced entry,
// clearing reference bits on the way, and evicts it. Must be called with mu
// held and at least one entry cached.
func (c *metaCache) evictOne() {
	for {
		if c.hand >= len(c.slots) {
			c.hand = 0
		}
		j := c.hand
		c.hand++
		s := &c.slots[j]
		if s.info == nil {
			continue
		}
		if s.ref.Load() {
			s.ref.Store(false)
			continue
		}
		c.removeSlot(int32(j))
		return
	}
}

func (c *metaCache) removeSlot(j int32) {
	s := &c.slots[j]
	delete(c.index, s.id)
	c.bytes -= s.info.cost
	s.id, s.info = 0, nil
	s.ref.Store(false)
	c.free = append(c.free, j)
}

// remove drops the entries of ids, if cached.
func (c *metaCache) remove(ids []MessageID) {
	if c == nil || len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if j, ok := c.index[id]; ok {
			c.removeSlot(j)
		}
	}
}

// reset drops every entry and the cache's own tables, giving their memory
// back to the collector.
func (c *metaCache) reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes, c.hand = 0, 0
	c.index, c.slots, c.free = map[MessageID]int32{}, nil, nil
}

// stats reports the cache's size and hit counters.
func (c *metaCache) stats() (entries int, bytes, hits, misses int64) {
	if c == nil {
		return 0, 0, 0, 0
	}
	c.mu.RLock()
	entries, bytes = len(c.index), c.bytes
	c.mu.RUnlock()
	return entries, bytes, c.hits.Load(), c.misses.Load()
}
