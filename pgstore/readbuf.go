package pgstore

import (
	"bufio"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// readBufferSize is the read buffer of every connection to PostgreSQL.
// pgx reads the server's messages into an 8 KB buffer of its own, and a
// body fetch is a stream of 8 KB rows (message_data's chunks): one read
// from the socket for every 4 KB on average (a FETCH of 500 MB made
// 115,000 read system calls). Read through this buffer instead, whatever
// the server has sent is taken in one call (46,000–67,000 for the same
// FETCH: as many as the server's sends when the reader keeps up).
const readBufferSize = 64 << 10

// bufferedFrontend is pgconn's BuildFrontend with the connection read
// through a readBufferSize buffer. Nothing in pgstore takes a connection
// over from pgx (Hijack, SyncConn), the one use that must see every byte
// pgx has read.
func bufferedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
}
