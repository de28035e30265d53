package pgstore

import "testing"

// TestBodyPool checks the buffers kept across Bodies calls: a new buffer
// is its request rounded up to bodiesBufMin; a buffer put back is handed
// out again (same memory), the smallest kept one that fits; what is kept
// stays within bodyPoolBytes, and oversized buffers are dropped.
func TestBodyPool(t *testing.T) {
	var p bodyPool
	b := p.get(100)
	if len(b) != 0 || cap(b) != bodiesBufMin {
		t.Fatalf("new buffer: len %d cap %d; want 0 and %d", len(b), cap(b), bodiesBufMin)
	}
	b = append(b, "dirty"...)
	p.put(b)
	if p.bytes != cap(b) || len(p.free) != 1 {
		t.Fatalf("after put: %d bytes in %d buffers", p.bytes, len(p.free))
	}
	big := p.get(bodiesBufMin + 1)
	if cap(big) != 2*bodiesBufMin || len(p.free) != 1 {
		t.Fatalf("a larger request: cap %d, %d kept; want a new buffer of %d, the kept one left", cap(big), len(p.free), 2*bodiesBufMin)
	}
	p.put(big)
	same := func(x, y []byte) bool { return &x[:1][0] == &y[:1][0] }
	// Best fit: a small request takes the small buffer, not the large one.
	if again := p.get(10); len(again) != 0 || !same(again, b) {
		t.Fatalf("small request: len %d, the small kept buffer %v", len(again), same(again, b))
	}
	if again := p.get(bodiesBufMin + 100); !same(again, big) || p.bytes != 0 || len(p.free) != 0 {
		t.Fatalf("large request: the large kept buffer %v, %d bytes still kept", same(again, big), p.bytes)
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
