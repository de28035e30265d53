package store

import (
	"context"
	"fmt"
	"strings"
)

// The import side of export.go. An import writes rows with the ids, UIDs,
// modseqs and times it is given, publishes no Change (nothing is serving
// the store yet) and leaves parsing to the background indexer, as
// Deliver does. Call ImportMeta first (it checks the store is empty),
// then ImportMessages, ImportEntries and ImportLedger, in that order (an
// entry names its message, a ledger row its message).

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

// checkEmpty fails with ErrNotEmpty, saying what the store holds, unless
// every table an import fills is empty.
func checkEmpty(ctx context.Context, q execer) error {
	var found []string
	for _, c := range emptinessChecks {
		var n int64
		if err := q.QueryRowContext(ctx, `SELECT count(*) FROM `+c.table).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", c.table, err)
		}
		if n > 0 {
			found = append(found, fmt.Sprintf("%d %s", n, c.what))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: it holds %s", ErrNotEmpty, strings.Join(found, ", "))
	}
	return nil
}

// ImportMeta writes m into the store, which must be empty (else an error
// wrapping ErrNotEmpty names what it holds): users, mailboxes (with their
// IDs, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ), subscriptions, provider
// users and account statuses, in one transaction. The UIDVALIDITY counter
// becomes at least m.UIDValidity and every imported mailbox's value, so a
// mailbox created later gets a greater one; likewise the ids issued later
// are greater than m.LastIDs and every imported id.
func (s *Store) ImportMeta(ctx context.Context, m ExportMeta) error {
	if err := s.writable("import meta"); err != nil {
		return err
	}
	return s.write(ctx, "import meta", func(w *writeTx) error {
		if err := checkEmpty(w.ctx, w); err != nil {
			return err
		}
		for _, u := range m.Users {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO users (id, name, created) VALUES (?, ?, ?)`, u.ID, u.Name, fmtTime(u.Created)); err != nil {
				return fmt.Errorf("insert user %q: %w", u.Name, err)
			}
		}
		uidv := int64(m.UIDValidity)
		for _, mb := range m.Mailboxes {
			ns := 0
			if mb.NoSelect {
				ns = 1
			}
			if _, err := w.ExecContext(w.ctx, `INSERT INTO mailboxes (id, user_id, name, uidvalidity, uidnext, highestmodseq, special_use, noselect)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, mb.ID, mb.User, mb.Name, int64(mb.UIDValidity), int64(mb.UIDNext), int64(mb.HighestModSeq), mb.SpecialUse, ns); err != nil {
				return fmt.Errorf("insert mailbox %q: %w", mb.Name, err)
			}
			uidv = max(uidv, int64(mb.UIDValidity))
		}
		for _, sub := range m.Subscriptions {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO subscriptions (user_id, name) VALUES (?, ?)`, sub.User, sub.Name); err != nil {
				return fmt.Errorf("insert subscription %q: %w", sub.Name, err)
			}
		}
		if uidv > 0 {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)
				ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)`, uidv); err != nil {
				return fmt.Errorf("write uidvalidity counter: %w", err)
			}
		}
		for _, u := range m.ProviderUsers {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO provider_users (name, credential, state, created, last_login, state_changed)
				VALUES (?, ?, ?, ?, ?, ?)`, u.Name, u.Credential, u.State, fmtTime(u.Created.UTC()), nullTime(u.LastLogin), nullTime(u.StateChanged)); err != nil {
				return fmt.Errorf("insert provider user %q: %w", u.Name, err)
			}
		}
		// Inserting an id raises its table's sqlite_sequence row, never
		// lowers it: the rows imported later keep these marks.
		for i, p := range m.LastIDs.ptrs() {
			if *p <= 0 {
				continue
			}
			if _, err := w.ExecContext(w.ctx, `INSERT INTO sqlite_sequence (name, seq) SELECT ?1, 0
				WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)`, idTables[i]); err != nil {
				return fmt.Errorf("record the last id of %s: %w", idTables[i], err)
			}
			if _, err := w.ExecContext(w.ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?`, *p, idTables[i]); err != nil {
				return fmt.Errorf("record the last id of %s: %w", idTables[i], err)
			}
		}
		for _, st := range m.AccountStatuses {
			if _, err := w.ExecContext(w.ctx, `INSERT INTO account_status (account, last_attempt, last_success, last_error, last_error_at,
				fetched, fetched_bytes, skipped, upstream_count, uidl_reused, renumbered, twins, unproven)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				st.Account, nullTime(st.LastAttempt), nullTime(st.LastSuccess), st.LastError, nullTime(st.LastErrorAt),
				st.Fetched, st.FetchedBytes, st.Skipped, st.UpstreamCount,
				st.Anomalies.UIDLReused, st.Anomalies.Renumbered, st.Anomalies.Twins, st.Anomalies.Unproven); err != nil {
				return fmt.Errorf("insert account status %q: %w", st.Account, err)
			}
		}
		return nil
	})
}

// ImportMessages stores msgs with their IDs and INTERNALDATEs: their bytes
// are written to a pack and made durable, then their rows committed in one
// transaction; the background indexer parses them afterwards. A message
// with Err set is refused: the caller decides what stands in for bytes it
// could not read.
func (s *Store) ImportMessages(ctx context.Context, msgs []ExportedMessage) error {
	if err := s.writable("import messages"); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]blobRec, len(msgs))
	raws := make([][]byte, len(msgs))
	for i, m := range msgs {
		if m.Err != nil {
			return fmt.Errorf("import messages: message %d has no bytes: %w", m.ID, m.Err)
		}
		raws[i] = normalizeCRLF(m.Raw)
		recs[i] = rawRecord(raws[i])
	}
	err := s.writeRecords(ctx, "import messages", recs, func(w *writeTx, locs []recordLoc) error {
		// A rawRecord: the whole message's checksum, and its header's
		// apart (see insertMessage).
		ins, err := w.stmt(`INSERT INTO messages (id, size, internal_date, envelope, structure, indexed, pack, pack_off, body_crc, raw_head_len, raw_head_crc)
			VALUES (?, ?, ?, x'', x'', 0, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for i, m := range msgs {
			if _, err := ins.ExecContext(w.ctx, m.ID, int64(len(raws[i])), fmtTime(m.InternalDate), locs[i].pack, locs[i].off, int64(locs[i].sum), locs[i].len0, int64(locs[i].crc[0])); err != nil {
				return fmt.Errorf("insert message %d: %w", m.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.indexer.Poke()
	return nil
}

// ImportEntries stores ents, each in its mailbox with its UID, flags and
// modseq, in one transaction. The mailboxes' UIDNEXT and HIGHESTMODSEQ
// are not changed: ImportMeta wrote them.
func (s *Store) ImportEntries(ctx context.Context, ents []ExportedEntry) error {
	if err := s.writable("import entries"); err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	return s.write(ctx, "import entries", func(w *writeTx) error {
		ins, err := w.stmt(`INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, keywords, modseq) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for _, e := range ents {
			fs := parseFlags(e.Flags)
			if _, err := ins.ExecContext(w.ctx, e.Mailbox, int64(e.UID), e.Message, fs.bits, fs.keywordText(), int64(e.ModSeq)); err != nil {
				return fmt.Errorf("insert entry uid %d of mailbox %d: %w", e.UID, e.Mailbox, err)
			}
		}
		return nil
	})
}

// ImportLedger stores rows verbatim (row id, key, size, times, message,
// skip reason, pending deletion, tombstone) in one transaction. A row's
// Message, when not 0, must have been imported.
func (s *Store) ImportLedger(ctx context.Context, rows []LedgerRow) error {
	if err := s.writable("import ledger"); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	return s.write(ctx, "import ledger", func(w *writeTx) error {
		ins, err := w.stmt(`INSERT INTO pop_ledger (id, account, uidl, digest, size, stored_at, message_id, skipped, delete_pending, deleted_at, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for _, r := range rows {
			var msg any
			if r.Message != 0 {
				msg = r.Message
			}
			pending := 0
			if r.DeletePending {
				pending = 1
			}
			if _, err := ins.ExecContext(w.ctx, r.ID, r.Account, r.UIDL, r.Digest, r.Size, fmtTime(r.StoredAt.UTC()), msg, r.Skipped, pending,
				nullTime(r.DeletedAt), nullTime(r.LastSeen)); err != nil {
				return fmt.Errorf("insert ledger row %d (account %q, UIDL %q): %w", r.ID, r.Account, r.UIDL, err)
			}
		}
		return nil
	})
}
