package pgstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
)

// TestCompression checks that a large message's texts are stored
// lz4-compressed (migration 0003) on a server that has lz4 (and the
// default elsewhere), and its bytes in uncompressed chunks of
// messageChunkSize bytes inline (migration 0005), with no TOAST.
func TestCompression(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	e := newEnv(t, srv)
	s := e.open(t, "a")
	u := mustUser(t, s, "alice")
	mb := mustMailbox(t, s, u.ID, "INBOX")
	// 200 KB of compressible text: PostgreSQL compresses values over 2 KB.
	body := strings.Repeat("The quarterly schedule is attached below, as agreed.\n", 4000)
	ent := mustAppend(t, s, u.ID, mb.ID, msg("big", body))
	id := strconv.FormatInt(int64(ent.Message), 10)

	want := "pglz"
	if srv.Psql(t, e.db, "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)") == "1" {
		want = "lz4"
	}
	if got := srv.Psql(t, e.db, "SELECT pg_column_compression(body_text) FROM message_text WHERE message_id = "+id); got != want {
		t.Errorf("compression of body_text = %q, want %s", got, want)
	}
	size := srv.Psql(t, e.db, "SELECT size FROM messages WHERE id = "+id)
	n, _ := strconv.Atoi(size)
	wantChunks := (n + messageChunkSize - 1) / messageChunkSize
	got := srv.Psql(t, e.db, "SELECT count(*), count(*) FILTER (WHERE pg_column_compression(data) IS NOT NULL), "+
		"count(*) FILTER (WHERE octet_length(data) = "+strconv.Itoa(messageChunkSize)+"), max(seq) FROM message_data WHERE message_id = "+id)
	if got != fmt.Sprintf("%d|0|%d|%d", wantChunks, wantChunks-1, wantChunks-1) {
		t.Errorf("chunks of a %s-byte message (count|compressed|full|max seq) = %s, want %d uncompressed", size, got, wantChunks)
	}
	if got := srv.Psql(t, e.db, "SELECT count(*) FROM pg_class c JOIN pg_class m ON m.reltoastrelid = c.oid WHERE m.relname = 'message_data'"+
		" AND pg_relation_size(c.oid) > 0"); got != "0" {
		t.Errorf("message_data's TOAST table has pages: %s", got)
	}
	if raw, err := s.RawBytes(t.Context(), ent.Message); err != nil || !strings.Contains(string(raw), "as agreed.\r\n") || len(raw) < len(body) {
		t.Errorf("RawBytes after compression: %d bytes, %v", len(raw), err)
	}
}
