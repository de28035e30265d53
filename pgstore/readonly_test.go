package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testReadOnly: a read-only Store reads what the writing nodes committed,
// refuses every write (store.ErrReadOnly, and PostgreSQL itself refuses
// a write on its connections), changes nothing when it opens — no
// migration of an older schema, no tables in an empty database (an error
// wrapping fs.ErrNotExist) — and refuses a newer schema.
func testReadOnly(t *testing.T, e *env) {
	ctx := context.Background()
	w := e.open(t, "writer")
	u := mustUser(t, w, "ro")
	inbox := mustMailbox(t, w, u.ID, store.Inbox)
	ent := mustAppend(t, w, u.ID, inbox.ID, msg("read me", "body"))

	ro := e.openWith(t, Options{NodeName: "reader", ReadOnly: true})
	metas, err := ro.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil || len(metas) != 1 || metas[0].UID != ent.UID || metas[0].Envelope.Subject != "read me" {
		t.Fatalf("read-only Meta: %+v, %v", metas, err)
	}
	if raw, err := ro.Body(ctx, u.ID, inbox.ID, ent.UID); err != nil || !strings.Contains(string(raw), "body") {
		t.Errorf("read-only Body: %q, %v", raw, err)
	}
	// Writes: refused by the Store, and by PostgreSQL for anything else.
	if _, err := ro.CreateMailbox(ctx, u.ID, "New", ""); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("read-only CreateMailbox: %v, want ErrReadOnly", err)
	}
	if _, _, err := ro.Append(ctx, u.ID, inbox.ID, msg("no", "no"), nil, time.Now()); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("read-only Append: %v, want ErrReadOnly", err)
	}
	if _, err := ro.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (999, 'x')`); err == nil || !errors.Is(ro.classify(err), store.ErrReadOnly) {
		t.Errorf("an INSERT on a read-only connection: %v", err)
	}
	if err := ro.Health(); err != nil {
		t.Errorf("read-only Health: %v", err)
	}
	sub := ro.Subscribe(func(store.Change) {})
	sub.Cancel()

	// An older schema: not migrated by a read-only open.
	version := func() int {
		var v int
		if err := w.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	latest := version()
	if _, err := w.pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, latest); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, e.dsn, Options{NodeName: "reader2", ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d is older than this program's (%d)", latest-1, latest)) {
		t.Errorf("read-only open of an older schema: %v", err)
	}
	if v := version(); v != latest-1 {
		t.Errorf("schema version %d after a read-only open, want %d untouched", v, latest-1)
	}
	// A newer one: refused.
	if _, err := w.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'x'), ($2, 'future')`, latest, latest+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, e.dsn, Options{NodeName: "reader3", ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "newer than this program's") {
		t.Errorf("read-only open of a newer schema: %v", err)
	}

	// An empty database: fs.ErrNotExist, and no table made.
	empty := e.srv.CreateDatabase(t, e.db+"_empty")
	if _, err := Open(ctx, empty, Options{NodeName: "reader4", ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no popbridge store yet") {
		t.Errorf("read-only open of an empty database: %v, want fs.ErrNotExist", err)
	}
	if n := strings.TrimSpace(e.srv.Psql(t, e.db+"_empty", `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`)); n != "0" {
		t.Errorf("%s tables in the empty database after a read-only open", n)
	}
}
