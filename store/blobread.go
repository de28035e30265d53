package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// blobReader reads records while it is open (between begin and end): no
// pack it may need is closed in that time.
type blobReader struct {
	b   *blobStore
	buf []byte
	// ahead, when set (readAhead), makes small reads fill win with the
	// pack bytes from the record on, so that the next records of a
	// sequential scan come from memory instead of one pread each.
	// derived holds the last body text derived from a message's bytes.
	derived textSink
	ahead   bool
	win     []byte // pack winPack's bytes from winOff on
	winPack int64
	winOff  int64
}

// readAheadBytes is the window a reading-ahead blobReader fills: records
// are written in delivery order, so a mailbox scan ascending by UID mostly
// reads them back to back.
const readAheadBytes = 256 << 10

// windowPool recycles the read-ahead windows: a header sync of 100,000
// messages makes a hundred readers (one per chunk of its FETCH), and a
// fresh 256 KiB window each was 25 MB of garbage per sync.
var windowPool = sync.Pool{New: func() any { b := make([]byte, readAheadBytes); return &b }}

// readAhead makes r read ahead (see blobReader.ahead). Only for a reader
// used within one read transaction: every record it then reads is named by
// a row committed before the transaction began, so its bytes were written
// (and never change again) before any window that holds them was read.
func (r *blobReader) readAhead() { r.ahead = true }

// begin starts a read. The caller must call end.
func (b *blobStore) begin() *blobReader {
	b.mu.Lock()
	b.readers++
	b.mu.Unlock()
	return &blobReader{b: b}
}

// end finishes a read; the last reader out closes the retired packs.
func (r *blobReader) end() {
	if cap(r.win) >= readAheadBytes {
		w := r.win[:0]
		r.win = nil
		windowPool.Put(&w)
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readers--
	if b.readers == 0 {
		b.closeRetired()
	}
}

// closeRetired closes the retired packs. Called with mu held and no reader.
func (b *blobStore) closeRetired() {
	for id, f := range b.retired {
		if err := f.Close(); err != nil {
			b.log.Warn("close retired pack", "pack", id, "err", err)
		}
		delete(b.retired, id)
	}
}

// file returns the open file of pack id.
func (b *blobStore) file(id int64) (*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.packs[id]; f != nil {
		return f, nil
	}
	if f := b.retired[id]; f != nil {
		return f, nil
	}
	f, err := os.Open(filepath.Join(b.dir, packName(id)))
	if err != nil {
		return nil, missingPackErr(id, err)
	}
	b.packs[id] = f
	return f, nil
}

// read returns n bytes of pack id at off, checked against crc. The result
// is only valid until the next read of r.
func (r *blobReader) read(id, off, n int64, crc uint32, what string) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if id == r.winPack && off >= r.winOff && off+n <= r.winOff+int64(len(r.win)) {
		return r.check(r.win[off-r.winOff:off-r.winOff+n], id, off, crc, what)
	}
	f, err := r.b.file(id)
	if err != nil {
		return nil, err
	}
	if r.ahead && n <= readAheadBytes/4 {
		if cap(r.win) < readAheadBytes {
			r.win = *windowPool.Get().(*[]byte)
		}
		m, err := f.ReadAt(r.win[:readAheadBytes], off)
		if int64(m) >= n && (err == nil || errors.Is(err, io.EOF)) {
			r.win, r.winPack, r.winOff = r.win[:m], id, off
			return r.check(r.win[:n], id, off, crc, what)
		}
		r.win = r.win[:0]
	}
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	buf := r.buf[:n]
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %d bytes at %d past the end of pack %d: %w", what, n, off, id, ErrCorrupt)
		}
		if errors.Is(err, syscall.EIO) {
			// A bad sector: this record is damaged, not the store.
			return nil, fmt.Errorf("%s: reading %d bytes at %d of pack %d: %w: %w", what, n, off, id, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("read pack %d: %w", id, err)
	}
	return r.check(buf, id, off, crc, what)
}

// check returns buf, the record at off of pack id, if it matches crc.
func (r *blobReader) check(buf []byte, id, off int64, crc uint32, what string) ([]byte, error) {
	if got := crc32.Checksum(buf, crcTable); got != crc {
		return nil, fmt.Errorf("%s: checksum %08x, want %08x (pack %d, offset %d): %w", what, got, crc, id, off, ErrCorrupt)
	}
	return buf, nil
}

// body returns the raw message of loc.
func (r *blobReader) body(l blobLoc) ([]byte, error) {
	return r.read(l.pack, l.off, l.size, l.bodyCRC, "message bytes")
}

// header returns the header of the raw message of loc (raw[:HeaderLen(raw)]):
// only its bytes are read and checked when their checksum is known, else
// the whole message is.
func (r *blobReader) header(l blobLoc) ([]byte, error) {
	if !l.rawHead {
		raw, err := r.body(l)
		if err != nil {
			return nil, err
		}
		return raw[:HeaderLen(raw)], nil
	}
	if l.rawHeadLen < 0 || l.rawHeadLen > l.size {
		return nil, fmt.Errorf("message header: %d bytes of a %d-byte message (pack %d, offset %d): %w", l.rawHeadLen, l.size, l.pack, l.off, ErrCorrupt)
	}
	return r.read(l.pack, l.off, l.rawHeadLen, l.rawHeadCRC, "message header")
}

// head returns the decoded header text of an indexed loc.
func (r *blobReader) head(l blobLoc) ([]byte, error) {
	return r.read(l.textPack, l.textOff, l.headLen, l.headCRC, "header text")
}

// textContains reports whether the body text of an indexed loc contains
// needle (lower-cased and white-space-collapsed, as the texts are), as
// bytes.Contains(r.text(l)) would, without deriving a derived text where
// it can tell otherwise (textform.go).
func (r *blobReader) textContains(l blobLoc, needle []byte) (bool, error) {
	if !l.textDerived {
		t, err := r.text(l)
		return bytes.Contains(t, needle), err
	}
	raw, err := r.body(l)
	if err != nil {
		return false, err
	}
	if l.textFrom > int64(len(raw)) {
		return false, fmt.Errorf("body text from offset %d of a %d-byte message: %w", l.textFrom, len(raw), ErrCorrupt)
	}
	return derivedContains(&r.derived, raw[l.textFrom:], needle), nil
}

// text returns the decoded body text of an indexed loc: stored, or
// derived from the message's bytes (textform.go).
func (r *blobReader) text(l blobLoc) ([]byte, error) {
	if !l.textDerived {
		return r.read(l.textPack, l.textOff+l.headLen, l.textLen, l.textCRC, "body text")
	}
	raw, err := r.body(l)
	if err != nil {
		return nil, err
	}
	if l.textFrom > int64(len(raw)) {
		return nil, fmt.Errorf("body text from offset %d of a %d-byte message: %w", l.textFrom, len(raw), ErrCorrupt)
	}
	r.derived.b = r.derived.b[:0]
	r.derived.space = false
	deriveBodyText(&r.derived, raw[l.textFrom:])
	return r.derived.b, nil
}
