package pgstore

import (
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// A message's bytes and metadata never change once stored and a
// MessageID is never reused (an identity column, on every node), so the
// decoded metadata of a message can be cached by MessageID on each node
// without any invalidation: an entry can become useless (its message
// deleted), never wrong.

// DefaultMetaCacheEntries is the default of Options.MetaCacheEntries.
const DefaultMetaCacheEntries = 100_000

// metaInfo is the immutable metadata of one message.
type metaInfo struct {
	size      int64
	date      time.Time
	envelope  *store.Envelope
	structure *store.Part
}

// metaCache is a bounded map MessageID -> *metaInfo that evicts the
// oldest entry first (a ring of ids). A nil *metaCache caches nothing.
type metaCache struct {
	mu    sync.Mutex
	max   int
	index map[store.MessageID]*metaInfo
	ring  []store.MessageID
	next  int
}

func newMetaCache(entries int) *metaCache {
	if entries < 0 {
		return nil
	}
	if entries == 0 {
		entries = DefaultMetaCacheEntries
	}
	return &metaCache{max: entries, index: make(map[store.MessageID]*metaInfo)}
}

// get fills infos[i] for every ids[i] cached and returns how many it
// filled.
func (c *metaCache) get(ids []store.MessageID, infos []*metaInfo) int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for i, id := range ids {
		if m, ok := c.index[id]; ok {
			infos[i] = m
			n++
		}
	}
	return n
}

func (c *metaCache) add(id store.MessageID, m *metaInfo) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[id]; ok {
		return
	}
	if len(c.ring) < c.max {
		c.ring = append(c.ring, id)
	} else {
		delete(c.index, c.ring[c.next])
		c.ring[c.next] = id
		c.next = (c.next + 1) % c.max
	}
	c.index[id] = m
}

// reset empties the cache.
func (c *metaCache) reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index = make(map[store.MessageID]*metaInfo)
	c.ring, c.next = nil, 0
}
