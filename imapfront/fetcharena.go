package imapfront

import (
	"sync"
	"sync/atomic"
)

// Body arenas kept from one FETCH to the next. A FETCH of bodies copies
// every section into fetchArenas arenas (fetchPipelined) that grow to
// bodyChunkBytes each; made fresh for every FETCH, a client reading a
// mailbox a few hundred messages per FETCH had 2×bodyChunkBytes allocated, faulted in
// and collected again each time. The server keeps up to arenaPoolBytes of
// them instead, shared by all sessions; the idle memory release
// (idlemem.go) drops them with the rest.

// arenaPoolBytes bounds the capacity the server keeps: one FETCH's arenas.
const arenaPoolBytes = fetchArenas * bodyChunkBytes

// arenaPool is a bounded free list of body arenas. The zero value is an
// empty pool, ready for use; it is safe for concurrent use.
type arenaPool struct {
	mu    sync.Mutex
	free  []*bodyArena
	bytes int // total capacity of free's buffers

	// made counts the arenas get had to make, lent those handed out and
	// not given back (the tests' view of reuse and of leaks).
	made, lent atomic.Int64
}

// get returns a kept arena (the largest), or a new empty one. The caller
// owns it until it hands it to put.
func (p *arenaPool) get() *bodyArena {
	p.lent.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		p.made.Add(1)
		return new(bodyArena)
	}
	best := 0
	for i, a := range p.free {
		if cap(a.buf) > cap(p.free[best].buf) {
			best = i
		}
	}
	a := p.free[best]
	last := len(p.free) - 1
	p.free[best] = p.free[last]
	p.free[last] = nil
	p.free = p.free[:last]
	p.bytes -= cap(a.buf)
	return a
}

// put gives a back for a later FETCH. The caller must hold no slice of its
// bytes any more (every response using them has been written or dropped).
// An arena that would take the pool over arenaPoolBytes, or beyond
// 2×fetchArenas arenas, is left to the garbage collector.
func (p *arenaPool) put(a *bodyArena) {
	if a == nil {
		return
	}
	p.lent.Add(-1)
	a.buf = a.buf[:0]
	// Nothing kept alive through a kept arena: its responses hold the
	// messages' metadata.
	clear(a.got[:cap(a.got)])
	clear(a.secs[:cap(a.secs)])
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+cap(a.buf) > arenaPoolBytes || len(p.free) >= 2*fetchArenas {
		return
	}
	p.free = append(p.free, a)
	p.bytes += cap(a.buf)
}

// reset drops every kept arena (the idle memory release).
func (p *arenaPool) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.free)
	p.free = p.free[:0]
	p.bytes = 0
}

// kept returns how many arenas the pool holds.
func (p *arenaPool) kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
