package pgstore

import (
	"strconv"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
)

// TestCompression checks that a large message's bytes and texts are
// stored lz4-compressed (migration 0003) on a server that has lz4, and
// that the migration leaves a server without it on its default.
func TestCompression(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	e := newEnv(t, srv)
	s := e.open(t, "a")
	u := mustUser(t, s, "alice")
	mb := mustMailbox(t, s, u.ID, "INBOX")
	// 200 KB of compressible text: PostgreSQL compresses values over 2 KB.
	body := strings.Repeat("The quarterly schedule is attached below, as agreed.\n", 4000)
	ent := mustAppend(t, s, u.ID, mb.ID, msg("big", body))

	want := "pglz"
	if srv.Psql(t, e.db, "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)") == "1" {
		want = "lz4"
	}
	got := srv.Psql(t, e.db, "SELECT pg_column_compression(d.data), pg_column_compression(x.body_text) "+
		"FROM message_data d JOIN message_text x USING (message_id) WHERE message_id = "+
		strconv.FormatInt(int64(ent.Message), 10))
	if got != want+"|"+want {
		t.Errorf("compression of data|body_text = %q, want %s for both", got, want)
	}
	if raw, err := s.RawBytes(t.Context(), ent.Message); err != nil || !strings.Contains(string(raw), "as agreed.\r\n") || len(raw) < len(body) {
		t.Errorf("RawBytes after compression: %d bytes, %v", len(raw), err)
	}
}
