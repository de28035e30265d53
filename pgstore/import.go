package pgstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// Import: the same methods, with the same types, as the SQLite store's
// (store/import.go). Rows are written with the ids, UIDs, modseqs and
// times they are given (COPY writes identity columns as given), and the
// identity sequences are moved past the highest id imported and the
// source's store.LastIDs, so that rows created later get ids never issued
// before. An import publishes no change. Call
// ImportMeta first (it checks the database is empty), then
// ImportMessages, ImportEntries and ImportLedger, in that order.

// emptinessChecks are the tables an importing store must have no row in,
// with what a row of each is called in ErrNotEmpty's text.
var emptinessChecks = []struct{ table, what string }{
	{"users", "users"},
	{"mailboxes", "mailboxes"},
	{"messages", "messages"},
	{"pop_ledger", "ledger rows"},
	{"account_status", "account statuses"},
	{"provider_users", "provider users"},
	{"subscriptions", "subscriptions"},
}

// checkEmpty fails with store.ErrNotEmpty, saying what the database holds,
// unless every table an import fills is empty. The tables are locked
// against concurrent writers until the transaction ends.
func checkEmpty(w *wtx) error {
	var found []string
	for _, c := range emptinessChecks {
		if _, err := w.Exec(w.ctx, `LOCK TABLE `+c.table+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock %s: %w", c.table, err)
		}
		var n int64
		if err := w.QueryRow(w.ctx, `SELECT count(*) FROM `+c.table).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", c.table, err)
		}
		if n > 0 {
			found = append(found, fmt.Sprintf("%d %s", n, c.what))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: it holds %s", store.ErrNotEmpty, strings.Join(found, ", "))
	}
	return nil
}

// advanceSequence moves the identity sequence of table.id to at least
// last and the highest id the table holds; it never moves it back.
func advanceSequence(w *wtx, table string, last int64) error {
	_, err := w.Exec(w.ctx, `WITH s AS (SELECT pg_get_serial_sequence($1, 'id')::regclass AS seq)
		SELECT setval(s.seq, v) FROM s, LATERAL (SELECT GREATEST($2::bigint, coalesce(pg_sequence_last_value(s.seq), 0),
			coalesce((SELECT max(id) FROM `+table+`), 0)) AS v) x WHERE v > 0`, table, last)
	if err != nil {
		return fmt.Errorf("advance the id sequence of %s: %w", table, err)
	}
	return nil
}

// copyRows writes rows into table with COPY.
func copyRows(w *wtx, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := w.CopyFrom(w.ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}

// ImportMeta writes m into the database, which must be empty (else an
// error wrapping store.ErrNotEmpty names what it holds): users, mailboxes
// (with their IDs, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ),
// subscriptions, provider users and account statuses, in one
// transaction. The UIDVALIDITY counter becomes at least m.UIDValidity and
// every imported mailbox's value, so a mailbox created later gets a
// greater one; likewise the ids issued later are greater than m.LastIDs
// and every imported id.
func (s *Store) ImportMeta(ctx context.Context, m store.ExportMeta) error {
	return s.write(ctx, "import meta", func(w *wtx) error {
		if err := checkEmpty(w); err != nil {
			return err
		}
		var users, mboxes, subs, provs, stats [][]any
		for _, u := range m.Users {
			users = append(users, []any{u.ID, u.Name, micro(u.Created)})
		}
		uidv := int64(m.UIDValidity)
		for _, mb := range m.Mailboxes {
			mboxes = append(mboxes, []any{mb.ID, mb.User, mb.Name, int64(mb.UIDValidity), int64(mb.UIDNext), int64(mb.HighestModSeq), mb.SpecialUse, mb.NoSelect})
			uidv = max(uidv, int64(mb.UIDValidity))
		}
		for _, sub := range m.Subscriptions {
			subs = append(subs, []any{sub.User, sub.Name})
		}
		for _, u := range m.ProviderUsers {
			provs = append(provs, []any{u.Name, u.Credential, u.State, micro(u.Created), nullTime(u.LastLogin), nullTime(u.StateChanged)})
		}
		for _, st := range m.AccountStatuses {
			stats = append(stats, []any{st.Account, nullTime(st.LastAttempt), nullTime(st.LastSuccess), st.LastError, nullTime(st.LastErrorAt),
				st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount,
				st.Anomalies.UIDLReused, st.Anomalies.Renumbered, st.Anomalies.Twins, st.Anomalies.Unproven})
		}
		for _, c := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"users", []string{"id", "name", "created"}, users},
			{"mailboxes", []string{"id", "user_id", "name", "uidvalidity", "uid_next", "highest_modseq", "special_use", "noselect"}, mboxes},
			{"subscriptions", []string{"user_id", "name"}, subs},
			{"provider_users", []string{"name", "credential", "state", "created", "last_login", "state_changed"}, provs},
			{"account_status", []string{"account", "last_attempt", "last_success", "last_error", "last_error_at",
				"fetched", "fetched_bytes", "skipped", "upstream_count", "uidl_reused", "renumbered", "twins", "unproven"}, stats},
		} {
			if err := copyRows(w, c.table, c.cols, c.rows); err != nil {
				return err
			}
		}
		for i, p := range lastIDPtrs(&m.LastIDs) {
			if err := advanceSequence(w, idTables[i], *p); err != nil {
				return err
			}
		}
		if uidv > 0 {
			if _, err := w.Exec(w.ctx, `INSERT INTO counters (name, value) VALUES ('uidvalidity', $1)
				ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, excluded.value)`, uidv); err != nil {
				return fmt.Errorf("write uidvalidity counter: %w", err)
			}
		}
		return nil
	})
}

// ImportMessages stores msgs with their IDs and INTERNALDATEs (zone
// offsets kept), parsed (in parallel, before the transaction) into their
// envelope, structure and search texts as Deliver parses, in one
// transaction. A message with Err set is refused: the caller decides what
// stands in for bytes it could not read.
func (s *Store) ImportMessages(ctx context.Context, msgs []store.ExportedMessage) error {
	if s.closed.Load() {
		return fmt.Errorf("import messages: %w", store.ErrClosed)
	}
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		if m.Err != nil {
			return fmt.Errorf("import messages: message %d has no bytes: %w", m.ID, m.Err)
		}
	}
	pms := make([]store.ParsedMessage, len(msgs))
	store.ParallelEach(len(msgs), func(i int) { pms[i] = s.parse(msgs[i].Raw) })
	rows := make([][]any, len(msgs))
	var data [][]any
	texts := make([][]any, len(msgs))
	for i, m := range msgs {
		pm := &pms[i]
		env, st := store.EncodeMeta(pm.Envelope, pm.Structure)
		_, off := m.InternalDate.Zone()
		rows[i] = []any{m.ID, int64(len(pm.Raw)), micro(m.InternalDate), int32(off), env, st}
		for seq, c := range chunks(pm.Raw) {
			data = append(data, []any{m.ID, int32(seq), c})
		}
		texts[i] = []any{m.ID, []byte(pm.HeaderText), []byte(pm.BodyText)}
	}
	return s.write(ctx, "import messages", func(w *wtx) error {
		if err := copyRows(w, "messages", []string{"id", "size", "internal_date", "internal_zone", "envelope", "structure"}, rows); err != nil {
			return err
		}
		if err := copyRows(w, "message_data", []string{"message_id", "seq", "data"}, data); err != nil {
			return err
		}
		if err := copyRows(w, "message_text", []string{"message_id", "header_text", "body_text"}, texts); err != nil {
			return err
		}
		return advanceSequence(w, "messages", 0)
	})
}

// ImportEntries stores ents, each in its mailbox with its UID, flags and
// modseq, in one transaction. The mailboxes' UIDNEXT and HIGHESTMODSEQ
// are not changed: ImportMeta wrote them.
func (s *Store) ImportEntries(ctx context.Context, ents []store.ExportedEntry) error {
	if len(ents) == 0 {
		return nil
	}
	rows := make([][]any, len(ents))
	for i, e := range ents {
		rows[i] = []any{e.Mailbox, int64(e.UID), e.Message, store.CanonicalFlags(e.Flags), int64(e.ModSeq)}
	}
	return s.write(ctx, "import entries", func(w *wtx) error {
		return copyRows(w, "mailbox_messages", []string{"mailbox_id", "uid", "message_id", "flags", "modseq"}, rows)
	})
}

// ImportLedger stores rows verbatim (row id, key, size, times, message,
// skip reason, pending deletion, tombstone) in one transaction. A row's
// Message, when not 0, must have been imported.
func (s *Store) ImportLedger(ctx context.Context, rows []store.LedgerRow) error {
	if len(rows) == 0 {
		return nil
	}
	vals := make([][]any, len(rows))
	for i, r := range rows {
		var msg any
		if r.Message != 0 {
			msg = int64(r.Message)
		}
		vals[i] = []any{r.ID, r.Account, r.UIDL, r.Digest, r.Size, micro(r.StoredAt).UTC(), msg, r.Skipped, r.DeletePending, nullTime(r.DeletedAt), nullTime(r.LastSeen)}
	}
	return s.write(ctx, "import ledger", func(w *wtx) error {
		if err := copyRows(w, "pop_ledger", []string{"id", "account", "uidl", "digest", "size", "stored_at", "message_id", "skipped", "delete_pending", "deleted_at", "last_seen"}, vals); err != nil {
			return err
		}
		return advanceSequence(w, "pop_ledger", 0)
	})
}
