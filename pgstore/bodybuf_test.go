package pgstore

import "testing"

// TestBodyPool checks the buffers kept across Bodies calls: a buffer put
// back is handed out again (same memory) when large enough, a request it
// cannot hold gets a new buffer of its size, at least bodiesBufMin; what
// is kept stays within bodyPoolBytes, and oversized buffers are dropped.
func TestBodyPool(t *testing.T) {
	var p bodyPool
	b := p.get(100)
	if len(b) != 0 || cap(b) < bodiesBufMin {
		t.Fatalf("new buffer: len %d cap %d; want 0 and at least %d", len(b), cap(b), bodiesBufMin)
	}
	b = append(b, "dirty"...)
	p.put(b)
	if p.bytes != cap(b) || len(p.free) != 1 {
		t.Fatalf("after put: %d bytes in %d buffers", p.bytes, len(p.free))
	}
	big := p.get(bodiesBufMin + 1)
	if cap(big) < bodiesBufMin+1 || len(p.free) != 1 {
		t.Fatalf("a larger request: cap %d, %d kept; want a new buffer, the kept one left", cap(big), len(p.free))
	}
	again := p.get(10)
	if len(again) != 0 || &again[:1][0] != &b[:1][0] || p.bytes != 0 || len(p.free) != 0 {
		t.Fatalf("reuse: len %d, same memory %v, %d bytes kept", len(again), &again[:1][0] == &b[:1][0], p.bytes)
	}

	p.put(make([]byte, 0, bodyPoolMaxBuf+1))
	if p.bytes != 0 {
		t.Fatalf("an oversized buffer was kept (%d bytes)", p.bytes)
	}
	for range 2 * bodyPoolBytes / bodiesBufMin {
		p.put(make([]byte, 0, bodiesBufMin))
	}
	if p.bytes != bodyPoolBytes || len(p.free) != bodyPoolBytes/bodiesBufMin {
		t.Fatalf("kept %d bytes in %d buffers; want the bound, %d bytes", p.bytes, len(p.free), bodyPoolBytes)
	}
	p.put(nil)
	if p.bytes != bodyPoolBytes {
		t.Fatalf("a nil buffer changed the pool: %d bytes", p.bytes)
	}
}
