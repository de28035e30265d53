package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
	"github.com/popbridge/popbridge/store"
)

// TestIndex covers deferred parsing: delivered messages are stored
// unindexed, answered by on-demand parsing exactly as after indexing, and
// indexed once by indexers on several nodes.
func TestIndex(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	t.Run("OnDemandAndTwoIndexers", func(t *testing.T) { testIndexTwoNodes(t, newEnv(t, srv)) })
	t.Run("Background", func(t *testing.T) { testIndexBackground(t, newEnv(t, srv)) })
	t.Run("MigrateIndexedRows", func(t *testing.T) { testIndexMigration(t, newEnv(t, srv)) })
}

// multipart is a message whose structure and texts parsing must get right:
// a quoted-printable text part and a base64 attachment.
func multipart(n int) []byte {
	return []byte(fmt.Sprintf("From: Carol <carol@example.org>\nTo: bob@example.org\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9_%d?=\n"+
		"Date: Tue, 3 Jan 2023 11:00:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n"+
		"--b%d\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9 needle-%d-end\n"+
		"--b%d\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n--b%d--\n", n, n, n, n, n, n))
}

func testIndexTwoNodes(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.openWith(t, Options{NodeName: "a", PollInterval: time.Hour, DisableIndexer: true})
	b := e.openWith(t, Options{NodeName: "b", PollInterval: time.Hour, DisableIndexer: true})
	u := mustUser(t, a, "bob").ID
	const n = 100
	var ds []store.Delivery
	for i := range n {
		raw := msg(fmt.Sprint("plain ", i), fmt.Sprint("text needle-", i, "-end"))
		if i%2 == 1 {
			raw = multipart(i)
		}
		ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: fmt.Sprint("d", i), User: "bob", Raw: raw})
	}
	if _, err := a.Deliver(ctx, ds); err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, a, u, store.Inbox)
	app := mustAppend(t, a, u, inbox.ID, msg("appended", "appended needle-x"))
	if got := e.srv.Psql(t, e.db, "SELECT count(*) FILTER (WHERE envelope IS NULL), count(*) FROM messages"); got != fmt.Sprintf("%d|%d", n, n+1) {
		t.Fatalf("unindexed|all messages: %s, want %d|%d (deliveries unindexed, the APPEND indexed)", got, n, n+1)
	}
	if got := e.srv.Psql(t, e.db, "SELECT count(*) FROM message_text"); got != "1" {
		t.Fatalf("%s text rows before indexing, want 1", got)
	}

	// On demand, on node b (nothing cached there).
	before, err := b.Meta(ctx, u, inbox.ID, nil)
	if err != nil || len(before) != n+1 {
		t.Fatalf("meta before indexing: %d, %v", len(before), err)
	}
	if s := before[0].Envelope.Subject; s != "plain 0" {
		t.Errorf("subject of UID 1: %q", s)
	}
	if s := before[1].Envelope.Subject; s != "Résumé 1" {
		t.Errorf("subject of UID 2: %q", s)
	}
	if st := before[1].Structure; st == nil || st.Type != "multipart" || len(st.Children) != 2 {
		t.Errorf("structure of UID 2: %+v", st)
	}
	type query struct {
		q    store.TextQuery
		want []store.UID
	}
	queries := []query{
		{store.TextQuery{Kind: store.TextBody, Needle: "needle-7-end"}, []store.UID{8}},
		{store.TextQuery{Kind: store.TextBody, Needle: "CAFÉ NEEDLE-9-END"}, []store.UID{10}},
		{store.TextQuery{Kind: store.TextHeader, Needle: "résumé 11"}, []store.UID{12}},
		{store.TextQuery{Kind: store.TextHeader, Needle: "needle-7"}, nil},
		{store.TextQuery{Kind: store.TextAll, Needle: "needle-x"}, []store.UID{app.UID}},
		{store.TextQuery{Kind: store.TextAll, Needle: "plain 4"}, nil}, // filled in below
	}
	// "plain 4" is in the subjects "plain 4" and "plain 40".."plain 48":
	// the expectation taken from the subjects themselves.
	for i := range n + 1 {
		if strings.Contains(before[i].Envelope.Subject, "plain 4") {
			queries[5].want = append(queries[5].want, store.UID(i+1))
		}
	}
	if len(queries[5].want) != 6 {
		t.Fatalf("subjects with \"plain 4\": %v", queries[5].want)
	}
	search := func(s *Store, when string) {
		t.Helper()
		for _, q := range queries {
			got, err := s.SearchText(ctx, u, inbox.ID, q.q, nil)
			if err != nil || !slices.Equal(got, q.want) {
				t.Errorf("%s: search %+v = %v, %v; want %v", when, q.q, got, err, q.want)
			}
		}
	}
	search(b, "before indexing")

	// Both nodes index at once: every message is claimed by one of them.
	var (
		wg     sync.WaitGroup
		counts [2]int
		errs   [2]error
	)
	for i, s := range []*Store{a, b} {
		wg.Go(func() { counts[i], errs[i] = s.indexPending(ctx) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || counts[0]+counts[1] != n {
		t.Fatalf("indexed %v (errors %v), want %d in all", counts, errs, n)
	}
	if got := e.srv.Psql(t, e.db, "SELECT count(*) FILTER (WHERE envelope IS NULL), (SELECT count(*) FROM message_text) FROM messages"); got != fmt.Sprintf("0|%d", n+1) {
		t.Fatalf("after indexing, unindexed|text rows: %s", got)
	}
	if k, err := a.indexPending(ctx); k != 0 || err != nil {
		t.Errorf("indexing again: %d, %v", k, err)
	}

	// A new node reads the stored metadata: the same as on demand.
	c := e.openWith(t, Options{NodeName: "c", PollInterval: time.Hour, DisableIndexer: true})
	after, err := c.Meta(ctx, u, inbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		for i := range before {
			if !reflect.DeepEqual(before[i], after[i]) {
				t.Errorf("UID %d: on demand %+v, indexed %+v", before[i].UID, before[i], after[i])
				break
			}
		}
	}
	search(c, "after indexing")
	if rep, err := c.Verify(ctx, nil); err != nil || !rep.OK() {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// testIndexBackground: with the indexer running, delivered messages get
// indexed without anyone asking.
func testIndexBackground(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.open(t, "a")
	mustUser(t, s, "bob")
	var ds []store.Delivery
	for i := range 40 {
		ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: "d", User: "bob", Raw: multipart(i)})
	}
	if _, err := s.Deliver(ctx, ds); err != nil {
		t.Fatal(err)
	}
	// Wait for the indexer (a deadline against a hang, not a delay).
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := e.srv.Psql(t, e.db, "SELECT count(*) FILTER (WHERE envelope IS NULL), (SELECT count(*) FROM message_text) FROM messages")
		if got == "0|40" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not indexed in the background: unindexed|text rows %s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testIndexMigration: rows written before migration 0005 (indexed at
// delivery, with their texts) read the same after it.
func testIndexMigration(t *testing.T, e *env) {
	ctx := context.Background()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var sql strings.Builder
	sql.WriteString("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());\n")
	for _, m := range ms[:3] {
		fmt.Fprintf(&sql, "%s;\nINSERT INTO schema_migrations (version, name) VALUES (%d, '%s');\n", m.sql, m.version, m.name)
	}
	raw := multipart(7)
	pm := store.ParseMessage(raw)
	env, st := store.EncodeMeta(pm.Envelope, pm.Structure)
	fmt.Fprintf(&sql, `INSERT INTO counters VALUES ('uidvalidity', 1);
		INSERT INTO users (name, created) VALUES ('bob', now());
		INSERT INTO mailboxes (user_id, name, uidvalidity, uid_next, highest_modseq) VALUES (1, 'INBOX', 1, 2, 1);
		INSERT INTO messages (size, internal_date, internal_zone, envelope, structure) VALUES (%d, '2023-01-03 11:00:00+00', 0, '\x%x', '\x%x');
		INSERT INTO message_data VALUES (1, '\x%x');
		INSERT INTO message_text VALUES (1, '\x%x', '\x%x');
		INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, modseq) VALUES (1, 1, 1, '{}', 1);`,
		len(pm.Raw), env, st, pm.Raw, pm.HeaderText, pm.BodyText)
	// More messages, of sizes around the chunk boundaries (the bytes
	// alone matter here: their metadata is that of message 1).
	for i, n := range chunkSizes {
		fmt.Fprintf(&sql, `INSERT INTO messages (size, internal_date, internal_zone, envelope, structure) VALUES (%d, now(), 0, '\x%x', '\x%x');
			INSERT INTO message_data VALUES (%d, '\x%x');
			INSERT INTO message_text VALUES (%d, '', '');
			INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, modseq) VALUES (1, %d, %d, '{}', 1);`,
			n, env, st, i+2, rawOfSize(n, uint64(i)), i+2, i+2, i+2)
	}
	fmt.Fprintf(&sql, "UPDATE mailboxes SET uid_next = %d;", len(chunkSizes)+2)
	e.srv.Psql(t, e.db, sql.String())

	s := e.openWith(t, Options{NodeName: "a", PollInterval: time.Hour, DisableIndexer: true})
	if got := e.srv.Psql(t, e.db, "SELECT max(version) FROM schema_migrations"); got != fmt.Sprint(len(ms)) {
		t.Fatalf("schema version %s after Open, want %d", got, len(ms))
	}
	u := mustUser(t, s, "bob").ID
	inbox := mustMailbox(t, s, u, store.Inbox)
	for i, n := range chunkSizes {
		if body, err := s.Body(ctx, u, inbox.ID, store.UID(i+2)); err != nil || !bytes.Equal(body, rawOfSize(n, uint64(i))) {
			t.Errorf("body of the migrated %d-byte message: %d bytes, %v", n, len(body), err)
		}
	}
	meta, err := s.Meta(ctx, u, inbox.ID, []store.UID{1})
	if err != nil || len(meta) != 1 || meta[0].Envelope.Subject != "Résumé 7" || meta[0].Size != int64(len(pm.Raw)) {
		t.Fatalf("meta of the migrated message: %+v, %v", meta, err)
	}
	if body, err := s.Body(ctx, u, inbox.ID, 1); err != nil || string(body) != string(pm.Raw) {
		t.Errorf("body of the migrated message: %q, %v", body, err)
	}
	if got, err := s.SearchText(ctx, u, inbox.ID, store.TextQuery{Kind: store.TextBody, Needle: "café needle-7-end"}, nil); err != nil || !slices.Equal(got, []store.UID{1}) {
		t.Errorf("search in the migrated message: %v, %v", got, err)
	}
	if n, err := s.indexPending(ctx); n != 0 || err != nil {
		t.Errorf("indexing migrated rows: %d, %v (they are indexed)", n, err)
	}
	if rep, err := s.Verify(ctx, nil); err != nil || !rep.OK() || rep.Messages != 1+len(chunkSizes) {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}
