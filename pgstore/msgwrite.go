package pgstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// messageChunkSize is the size of the rows a message's bytes are stored
// in (message_data, migration 0005): seq 0, 1, ... each of this size but
// the last, inline and uncompressed (a row fits in one 8 KB page).
const messageChunkSize = 8000

// chunks cuts raw into message_data rows (sub-slices, not copies); a
// 0-byte message is one empty chunk.
func chunks(raw []byte) [][]byte {
	out := make([][]byte, 0, len(raw)/messageChunkSize+1)
	for len(raw) > messageChunkSize {
		out = append(out, raw[:messageChunkSize])
		raw = raw[messageChunkSize:]
	}
	return append(out, raw)
}

// insertDataSQL is the CTE part that stores the chunks of the message m
// from the bytea[] parameter $n (chunks of its bytes).
func insertDataSQL(n int) string {
	return fmt.Sprintf(`d AS (
			INSERT INTO message_data (message_id, seq, data) SELECT m.id, c.n - 1, c.d FROM m, unnest($%d::bytea[]) WITH ORDINALITY AS c(d, n)
		)`, n)
}

// insertMessageSQL returns the statement that stores a message (its
// row, bytes and texts) from $1..$8 and returns its id: size, internal
// date, zone offset, envelope, structure, chunks of the bytes, header
// text, body text. more, if not "", is one more data-modifying statement
// run with it, which can read the new id from the CTE m.
func insertMessageSQL(more string) string {
	q := `WITH m AS (
			INSERT INTO messages (size, internal_date, internal_zone, envelope, structure) VALUES ($1, $2, $3, $4, $5) RETURNING id
		), ` + insertDataSQL(6) + `, t AS (
			INSERT INTO message_text (message_id, header_text, body_text) SELECT id, $7, $8 FROM m
		)`
	if more != "" {
		q += `, x AS (` + more + `)`
	}
	return q + ` SELECT id FROM m`
}

// insertMessage stores a parsed message: its row, bytes and texts.
func insertMessage(w *wtx, pm *store.ParsedMessage, date time.Time) (store.MessageID, error) {
	env, st := store.EncodeMeta(pm.Envelope, pm.Structure)
	_, off := date.Zone()
	var id store.MessageID
	if err := w.QueryRow(w.ctx, insertMessageSQL(""),
		int64(len(pm.Raw)), micro(date), off, env, st, chunks(pm.Raw), []byte(pm.HeaderText), []byte(pm.BodyText)).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert message: %w", err)
	}
	return id, nil
}

// unindexedMsg is one message for insertUnindexed: its bytes as stored
// and its internal date.
type unindexedMsg struct {
	raw  []byte
	date time.Time
}

// insertUnindexed stores messages unindexed (Deliver): their rows with
// NULL envelope and structure, and their bytes, in three statements
// whatever their number: the ids are taken from the messages' identity
// sequence first, the rows inserted from arrays, and the chunks sent with
// one binary COPY, which streams the bytes to the server 64 KB at a time
// straight from the messages (pgx's parameter encoding of a bytea[]
// copied them twice, and the server materialised the array; COPY also
// inserts without a plan per row). The indexer (index.go) adds the rest.
// It returns the new ids, in the order of ms.
func insertUnindexed(ctx context.Context, tx pgx.Tx, ms []unindexedMsg) ([]store.MessageID, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	ids := make([]int64, 0, len(ms))
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1)`, len(ms))
	if err != nil {
		return nil, fmt.Errorf("allocate message ids: %w", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("allocate message ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("allocate message ids: %w", err)
	}
	if len(ids) != len(ms) {
		return nil, fmt.Errorf("allocate message ids: got %d, want %d", len(ids), len(ms))
	}
	sizes := make([]int64, len(ms))
	dates := make([]time.Time, len(ms))
	zones := make([]int32, len(ms))
	for i, m := range ms {
		_, off := m.date.Zone()
		sizes[i], dates[i], zones[i] = int64(len(m.raw)), micro(m.date), int32(off)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO messages (id, size, internal_date, internal_zone) OVERRIDING SYSTEM VALUE
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::integer[])`, ids, sizes, dates, zones); err != nil {
		return nil, fmt.Errorf("insert messages: %w", err)
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, newChunkCopy(ids, ms), `COPY message_data (message_id, seq, data) FROM STDIN (FORMAT binary)`); err != nil {
		return nil, fmt.Errorf("insert message bytes: %w", err)
	}
	out := make([]store.MessageID, len(ids))
	for i, id := range ids {
		out[i] = store.MessageID(id)
	}
	return out, nil
}

// chunkCopy is the stream of a binary COPY of message_data rows
// (message_id bigint, seq integer, data bytea) for the messages ms with
// ids ids, cut into chunks: PostgreSQL's binary COPY format (a signature
// and two zero words, then per row a field count and each field as a
// length and its bytes, big-endian, then -1). Read copies every byte of
// the messages once, into the caller's buffer.
type chunkCopy struct {
	ids  []int64
	ms   []unindexedMsg
	i    int    // the message being sent
	off  int    // the offset of its next chunk
	pend []byte // header bytes not yet read
	data []byte // chunk bytes not yet read
	hdr  [2 + 4 + 8 + 4 + 4 + 4]byte
	done bool
}

// copySignature starts a binary COPY stream: the signature, the flags
// word and the header extension's length, both zero.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

func newChunkCopy(ids []int64, ms []unindexedMsg) *chunkCopy {
	return &chunkCopy{ids: ids, ms: ms, pend: copySignature}
}

// next prepares the next row (or the trailer); it reports false at the
// end of the stream.
func (c *chunkCopy) next() bool {
	if c.i == len(c.ms) {
		if c.done {
			return false
		}
		c.done = true
		c.pend = []byte{0xff, 0xff} // -1: the end
		return true
	}
	raw := c.ms[c.i].raw
	n := min(len(raw)-c.off, messageChunkSize)
	h := c.hdr[:]
	binary.BigEndian.PutUint16(h[0:], 3)
	binary.BigEndian.PutUint32(h[2:], 8)
	binary.BigEndian.PutUint64(h[6:], uint64(c.ids[c.i]))
	binary.BigEndian.PutUint32(h[14:], 4)
	binary.BigEndian.PutUint32(h[18:], uint32(c.off/messageChunkSize))
	binary.BigEndian.PutUint32(h[22:], uint32(n))
	c.pend, c.data = h, raw[c.off:c.off+n]
	// A message ends after its last chunk; a 0-byte message has one
	// empty chunk.
	if c.off += n; c.off >= len(raw) {
		c.i, c.off = c.i+1, 0
	}
	return true
}

// Read implements io.Reader.
func (c *chunkCopy) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.pend) == 0 && len(c.data) == 0 && !c.next() {
			break
		}
		k := copy(p[n:], c.pend)
		c.pend, n = c.pend[k:], n+k
		k = copy(p[n:], c.data)
		c.data, n = c.data[k:], n+k
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
