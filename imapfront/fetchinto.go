package imapfront

import (
	"context"
	"unsafe"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/store"
)

// Reading a FETCH's bodies straight into its arena. A store that can
// (pgstore.Store.BodiesInto) reads each message's bytes into a piece of
// the arena the responses are written from, instead of into a buffer of
// its own that loadBodies then copied into the arena: one copy of every
// byte fewer (500 MB for a FETCH of the benchmark's mailbox), and the
// store's own buffers (16 MB kept, more dropped) are never allocated and
// faulted in: on a serve's first body FETCH each new page cost about 12 µs
// (a minor fault, on this project's 2-vCPU benchmark machine).

// BodiesIntoStore is a Store that reads message bytes into buffers its
// caller hands it (pgstore.Store.BodiesInto; see there for the contract).
type BodiesIntoStore interface {
	BodiesInto(ctx context.Context, u store.UserID, mb store.MailboxID, uids []store.UID, alloc func(uid store.UID, n int) []byte,
		fn func(uid store.UID, raw []byte, damaged error) error) error
}

// rawSections reports whether every section a FETCH asks for is a slice of
// a message's bytes (the whole message, its top-level HEADER or TEXT,
// partial or not), so that responses can point into the bytes as read:
// bytesOnly without HEADER.FIELDS, whose selection is new bytes.
func rawSections(o *imap.FetchOptions) bool {
	if !bytesOnly(o) {
		return false
	}
	for _, sec := range o.BodySection {
		if len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0 {
			return false
		}
	}
	return true
}

// arenaCarver hands out consecutive pieces of an arena's free space. Only
// the store's reading goroutine calls carve; the arena's buffer is not
// changed while a store call uses it, so the session's goroutine may ask
// holds meanwhile.
type arenaCarver struct {
	buf []byte // the arena's buffer, len: its bytes before this chunk
	off int    // next free byte of buf's capacity
}

func newArenaCarver(a *bodyArena) *arenaCarver {
	return &arenaCarver{buf: a.buf, off: len(a.buf)}
}

// carve returns an empty piece of capacity n, or nil when n bytes are not
// left. Its capacity is exactly n: bytes beyond n (a message larger than
// its recorded size) are appended to a new buffer, not over the next
// piece.
func (c *arenaCarver) carve(_ store.UID, n int) []byte {
	if n < 0 || cap(c.buf)-c.off < n {
		return nil
	}
	b := c.buf[c.off : c.off : c.off+n]
	c.off += n
	return b
}

// holds reports whether b lies in the arena's buffer: its first byte's
// address is one of the buffer's. Addresses are only compared.
func (c *arenaCarver) holds(b []byte) bool {
	if len(b) == 0 || cap(c.buf) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(c.buf)))
	return p >= lo && p < lo+uintptr(cap(c.buf)) && p+uintptr(len(b)) <= lo+uintptr(cap(c.buf))
}
