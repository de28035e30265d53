package pgstore

import (
	"bytes"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// countingReader hands out at most max bytes per Read and counts the calls.
type countingReader struct {
	r     io.Reader
	max   int
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p[:min(len(p), c.max)])
}

// TestBufferedFrontend: a stream of 8 KB rows, as a body fetch receives
// them, decodes byte-exact through bufferedFrontend, in far fewer reads of
// the connection than pgx's own 8 KB buffer makes.
func TestBufferedFrontend(t *testing.T) {
	var stream []byte
	var rows [][]byte
	for i := range 200 {
		row := bytes.Repeat([]byte{byte(i)}, messageChunkSize-i%3)
		rows = append(rows, row)
		var err error
		if stream, err = (&pgproto3.DataRow{Values: [][]byte{row}}).Encode(stream); err != nil {
			t.Fatal(err)
		}
	}
	reads := func(build func(io.Reader, io.Writer) *pgproto3.Frontend) int {
		t.Helper()
		cr := &countingReader{r: bytes.NewReader(stream), max: 1 << 20}
		f := build(cr, io.Discard)
		for i, want := range rows {
			m, err := f.Receive()
			if err != nil {
				t.Fatalf("row %d: %v", i, err)
			}
			if dr, ok := m.(*pgproto3.DataRow); !ok || len(dr.Values) != 1 || !bytes.Equal(dr.Values[0], want) {
				t.Fatalf("row %d: got %T, differing", i, m)
			}
		}
		return cr.calls
	}
	buffered, plain := reads(bufferedFrontend), reads(pgproto3.NewFrontend)
	if limit := len(stream)/readBufferSize + 2; buffered > limit {
		t.Errorf("%d reads of %d bytes through the buffer; want at most %d", buffered, len(stream), limit)
	}
	if buffered*4 > plain {
		t.Errorf("%d reads buffered against %d with pgx's own buffer: not fewer", buffered, plain)
	}
}
