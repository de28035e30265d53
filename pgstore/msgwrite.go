package pgstore

import (
	"fmt"
	"time"

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

// insertUnindexedSQL is insertMessageSQL for a message stored unindexed
// (Deliver): its row with NULL envelope and structure and its bytes, from
// $1..$4: size, internal date, zone offset, chunks of the bytes. The
// indexer (index.go) adds the rest.
func insertUnindexedSQL(more string) string {
	q := `WITH m AS (
			INSERT INTO messages (size, internal_date, internal_zone) VALUES ($1, $2, $3) RETURNING id
		), ` + insertDataSQL(4)
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
