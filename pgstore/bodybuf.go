package pgstore

import "sync"

// Body buffers kept across calls of Bodies. imapfront reads a large FETCH
// through many Bodies calls (one per 8 MiB of response), and each call
// used to make its own buffers (bodiesAhead+2 of at least bodiesBufMin,
// and one to measure for every larger message): on the benchmark's mail
// (10,000 messages, 500 MB, half of it in 228 messages over 256 KiB) a
// FETCH of all bodies allocated 240 MB, every new buffer zeroed or its
// pages faulted in, and after a pause (imapfront returns free memory to
// the OS when its last client has gone) all faulted in again. A store
// keeps up to bodyPoolBytes of buffers instead, shared by its concurrent
// Bodies calls, and hands out the smallest that fits.
const (
	// bodyPoolBytes bounds the capacity a Store keeps: the buffers of two
	// Bodies calls reading ahead at once and a few large messages'.
	bodyPoolBytes = 16 << 20
	// bodyPoolMaxBuf is the largest buffer kept: one made for a larger
	// message is left to the garbage collector.
	bodyPoolMaxBuf = 8 << 20
)

// bodyPool is a bounded free list of body buffers. The zero value is an
// empty pool, ready for use; it is safe for concurrent use.
type bodyPool struct {
	mu    sync.Mutex
	free  [][]byte
	bytes int // total capacity of free
}

// get returns an empty buffer with a capacity of at least n: the smallest
// kept one that is large enough, else a new one of n rounded up to a
// multiple of bodiesBufMin (so that most messages fit a buffer that is
// reused afterwards, and a large one fits messages of about its size).
func (p *bodyPool) get(n int) []byte {
	p.mu.Lock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		last := len(p.free) - 1
		p.free[best] = p.free[last]
		p.free[last] = nil
		p.free = p.free[:last]
		p.bytes -= cap(b)
		p.mu.Unlock()
		return b[:0]
	}
	p.mu.Unlock()
	return make([]byte, 0, (max(n, 1)+bodiesBufMin-1)/bodiesBufMin*bodiesBufMin)
}

// put gives b back for a later get. The caller must not use b afterwards.
// A buffer larger than bodyPoolMaxBuf, or one that would take the pool
// over bodyPoolBytes, is dropped.
func (p *bodyPool) put(b []byte) {
	c := cap(b)
	if c == 0 || c > bodyPoolMaxBuf {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+c > bodyPoolBytes {
		return
	}
	p.free = append(p.free, b[:0])
	p.bytes += c
}
