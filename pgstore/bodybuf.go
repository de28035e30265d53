package pgstore

import "sync"

// Body buffers kept across calls of Bodies. imapfront reads a large FETCH
// through many Bodies calls (one per 16 MiB of response), and each call
// used to make its own buffers (bodiesAhead+2 of at least bodiesBufMin):
// some 140 MB allocated for a 500 MB FETCH, each new buffer's pages
// faulted in and, once the garbage collector had reused the span, zeroed.
// After a pause the Go runtime had returned the freed pages to the OS, so
// the next FETCH faulted them all in again. A store keeps a few MiB of
// buffers instead (bodyPoolBytes), shared by its concurrent Bodies calls.
const (
	// bodyPoolBytes bounds the capacity a Store keeps: room for the
	// buffers of two Bodies calls reading ahead at once.
	bodyPoolBytes = 2 * (bodiesAhead + 2) * bodiesBufMin
	// bodyPoolMaxBuf is the largest buffer kept: one made for a larger
	// message is left to the garbage collector.
	bodyPoolMaxBuf = 4 * bodiesBufMin
)

// bodyPool is a bounded free list of body buffers. The zero value is an
// empty pool, ready for use; it is safe for concurrent use.
type bodyPool struct {
	mu    sync.Mutex
	free  [][]byte
	bytes int // total capacity of free
}

// get returns an empty buffer with a capacity of at least n: a kept one
// when one is large enough, else a new one of at least bodiesBufMin (so
// that most messages fit a buffer that is reused afterwards).
func (p *bodyPool) get(n int) []byte {
	p.mu.Lock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; cap(b) >= n {
			last := len(p.free) - 1
			p.free[i] = p.free[last]
			p.free[last] = nil
			p.free = p.free[:last]
			p.bytes -= cap(b)
			p.mu.Unlock()
			return b[:0]
		}
	}
	p.mu.Unlock()
	return make([]byte, 0, max(n, bodiesBufMin))
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
