package pgstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// TestChunkCopyStream reads the binary COPY stream of messages of sizes
// around the chunk boundaries through read buffers of several sizes
// (pgconn uses 64 KB; a row's header and bytes may be cut anywhere) and
// decodes it: the signature, each message's chunks in order with its id
// and seq, and the trailer.
func TestChunkCopyStream(t *testing.T) {
	var (
		ids []int64
		ms  []unindexedMsg
	)
	for i, n := range chunkSizes {
		ids = append(ids, int64(1000+i))
		ms = append(ms, unindexedMsg{raw: rawOfSize(n, uint64(i))})
	}
	for _, bufSize := range []int{1, 7, 26, 8000, 65531} {
		var stream bytes.Buffer
		c := newChunkCopy(ids, ms)
		buf := make([]byte, bufSize)
		for {
			n, err := c.Read(buf)
			stream.Write(buf[:n])
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil || n == 0 {
				t.Fatalf("buffer %d: Read = %d, %v", bufSize, n, err)
			}
		}
		b := stream.Bytes()
		if !bytes.HasPrefix(b, []byte("PGCOPY\n\xff\r\n\x00")) || len(b) < 19 || binary.BigEndian.Uint64(b[11:]) != 0 {
			t.Fatalf("buffer %d: stream starts %q", bufSize, b[:min(len(b), 19)])
		}
		b = b[19:]
		got := map[int64][]byte{}
		nextSeq := map[int64]uint32{}
		for {
			if int16(binary.BigEndian.Uint16(b)) == -1 {
				b = b[2:]
				break
			}
			if binary.BigEndian.Uint16(b) != 3 || binary.BigEndian.Uint32(b[2:]) != 8 || binary.BigEndian.Uint32(b[14:]) != 4 {
				t.Fatalf("buffer %d: bad row header % x", bufSize, b[:26])
			}
			id, seq, n := int64(binary.BigEndian.Uint64(b[6:])), binary.BigEndian.Uint32(b[18:]), int(binary.BigEndian.Uint32(b[22:]))
			if seq != nextSeq[id] || n > messageChunkSize {
				t.Fatalf("buffer %d: message %d chunk %d (want %d) of %d bytes", bufSize, id, seq, nextSeq[id], n)
			}
			nextSeq[id]++
			got[id] = append(got[id], b[26:26+n]...)
			b = b[26+n:]
		}
		if len(b) != 0 {
			t.Fatalf("buffer %d: %d bytes after the trailer", bufSize, len(b))
		}
		for i, m := range ms {
			if g, ok := got[ids[i]]; !ok || !bytes.Equal(g, m.raw) {
				t.Errorf("buffer %d: message %d (%d bytes): got %d bytes (present %v)", bufSize, ids[i], len(m.raw), len(g), ok)
			}
			if want := uint32(max(1, (len(m.raw)+messageChunkSize-1)/messageChunkSize)); nextSeq[ids[i]] != want {
				t.Errorf("buffer %d: message of %d bytes in %d chunks, want %d", bufSize, len(m.raw), nextSeq[ids[i]], want)
			}
		}
	}
}
