package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// staged is a batch prepared by Stage: validated, line ends normalised,
// waiting for its transaction.
type staged struct {
	s       *Store
	ds      []store.Delivery
	folders []string
	dates   []time.Time
	raws    [][]byte // the bytes as stored (store.NormalizeCRLF)
	mu      sync.Mutex
	done    bool
}

// Stage prepares ds for delivery: it checks the folder names and
// normalises every message's line ends, outside any transaction. It does
// not parse them: the messages are stored unindexed, for the background
// indexer (index.go), and reads parse them on demand until it has run.
// Nothing is stored until Commit. Stage then Commit is what Deliver does; a caller that
// runs several batches at once commits them in its own order (local UIDs
// follow it) while their preparation overlaps.
func (s *Store) Stage(ctx context.Context, ds []store.Delivery) (Staged, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("deliver: %w", store.ErrClosed)
	}
	b := &staged{s: s, ds: ds, folders: make([]string, len(ds)), dates: make([]time.Time, len(ds)), raws: make([][]byte, len(ds))}
	now := s.now()
	for i, d := range ds {
		folder := d.Folder
		if folder == "" {
			folder = store.Inbox
		}
		canon, err := store.ValidateMailboxName(folder)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		b.folders[i] = canon
		b.dates[i] = d.InternalDate
		if b.dates[i].IsZero() {
			b.dates[i] = now
		}
		b.raws[i] = store.NormalizeCRLF(d.Raw)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return b, nil
}

// Release gives up the batch; it is a no-op after Commit.
func (b *staged) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		b.raws = nil
	}
}

// Deliver stores every delivery and its ledger row in one durable
// transaction and returns one Delivered per Delivery, in order: it is
// Stage followed by Commit. A missing Folder ("" means INBOX) is created.
// If any Delivery names an unknown user the whole batch fails with
// store.ErrNotFound and nothing is stored.
//
// The ledger key (Account, UIDL, Digest) guards against duplicates, on
// every node: a delivery whose key is already in the ledger with a stored
// message is not stored again and reports the existing message; one whose
// message has since been expunged locally is not stored again either and
// reports a zero Delivered. A key previously recorded as skipped is
// stored now and the ledger row updated.
func (s *Store) Deliver(ctx context.Context, ds []store.Delivery) ([]store.Delivered, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("deliver: %w", store.ErrClosed)
	}
	if len(ds) == 0 {
		return nil, nil
	}
	b, err := s.Stage(ctx, ds)
	if err != nil {
		return nil, err
	}
	defer b.Release()
	return b.Commit(ctx)
}

// Commit runs the batch's transaction (see Deliver). A batch commits once:
// a second Commit, or a Commit after Release, fails. A Commit that failed
// (e.g. with ErrUnavailable) may be tried again, or the batch released.
func (b *staged) Commit(ctx context.Context) ([]store.Delivered, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil, fmt.Errorf("deliver: %w", ErrStagedDone)
	}
	if len(b.ds) == 0 {
		b.done = true
		return nil, nil
	}
	s := b.s
	out := make([]store.Delivered, len(b.ds))
	now := micro(s.now())
	err := s.write(ctx, "deliver", func(w *wtx) error {
		clear(out)
		return b.commit(w, out, now)
	})
	if err != nil {
		// Nothing was stored (or, if the connection was lost during
		// COMMIT, perhaps everything: the ledger then makes a second
		// Commit report the messages instead of storing them again).
		return nil, err
	}
	b.done, b.raws = true, nil
	s.indexer.Poke()
	return out, nil
}

// existingDelivered finds an entry of msg in the user's mailboxes,
// preferring folder.
func existingDelivered(w *wtx, u store.UserID, msg store.MessageID, folder string) (store.Delivered, error) {
	var (
		dl  store.Delivered
		uid int64
	)
	err := w.QueryRow(w.ctx, `SELECT mm.mailbox_id, mm.uid FROM mailbox_messages mm JOIN mailboxes m ON m.id = mm.mailbox_id
		WHERE mm.message_id = $1 AND m.user_id = $2 ORDER BY (m.name = $3) DESC, mm.mailbox_id, mm.uid LIMIT 1`,
		msg, u, folder).Scan(&dl.Mailbox, &uid)
	if errors.Is(err, pgx.ErrNoRows) {
		// The message lives on only in another user's mailbox (the
		// account was reassigned): report it as not stored.
		return store.Delivered{}, nil
	}
	if err != nil {
		return store.Delivered{}, fmt.Errorf("find delivered entry: %w", err)
	}
	dl.UID, dl.Message = store.UID(uid), msg
	return dl, nil
}

// commit is the transaction of Commit, in two passes. The first checks
// the ledger (locking the rows it finds) and stores the new messages and
// their ledger rows; the second locks the target mailboxes, in ascending
// id order (so concurrent batches cannot deadlock on them, and the locks
// are held only for the end of the transaction), and adds the entries:
// one ChangeAdd per mailbox, UIDs in delivery order.
func (b *staged) commit(w *wtx, out []store.Delivered, now time.Time) error {
	s := b.s
	type mbKey struct {
		u    store.UserID
		name string
	}
	type pending struct {
		rows []entryRow
		idx  []int // indexes into out
	}
	users := map[string]store.UserID{}
	var order []mbKey
	adds := map[mbKey]*pending{}
	// A key delivered twice in the batch is stored once: the later ones
	// report the first one's message.
	type ledgerKey struct{ account, uidl, digest string }
	firstOf := map[ledgerKey]int{}
	dups := map[int]int{}
	type ledgerRow struct {
		id      int64
		msg     *int64
		skipped string
	}
	var (
		accts, uidls, digests []string
		firsts                []int
	)
	for i, d := range b.ds {
		lk := ledgerKey{d.Account, d.UIDL, d.Digest}
		if j, ok := firstOf[lk]; ok {
			dups[i] = j
			continue
		}
		firstOf[lk] = i
		if _, ok := users[d.User]; !ok {
			u, err := userByName(w.ctx, w, d.User)
			if err != nil {
				return err
			}
			users[d.User] = u.ID
		}
		accts, uidls, digests = append(accts, d.Account), append(uidls, d.UIDL), append(digests, d.Digest)
		firsts = append(firsts, i)
	}
	// The batch's known keys, in one query, locked until commit.
	rows, err := w.Query(w.ctx, `SELECT t.i, l.id, l.message_id, l.skipped
		FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(a, u, d, i)
		JOIN pop_ledger l ON l.account = t.a AND l.uidl = t.u AND l.digest = t.d FOR UPDATE OF l`, accts, uidls, digests)
	if err != nil {
		return fmt.Errorf("query ledger: %w", err)
	}
	known := map[int]ledgerRow{}
	for rows.Next() {
		var (
			ord int64
			r   ledgerRow
		)
		if err := rows.Scan(&ord, &r.id, &r.msg, &r.skipped); err != nil {
			rows.Close()
			return fmt.Errorf("query ledger: %w", err)
		}
		known[firsts[ord-1]] = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query ledger: %w", err)
	}
	// The new messages, then their ledger rows: a few statements for the
	// whole batch (insertUnindexed).
	var (
		stored         []int
		ums            []unindexedMsg
		updIDs         []int64
		updAt          []int
		newAt          []int
		na, nu, nd     []string
		newSize, updSz []int64
	)
	for _, i := range firsts {
		r, isKnown := known[i]
		if isKnown && r.msg != nil {
			dl, err := existingDelivered(w, users[b.ds[i].User], store.MessageID(*r.msg), b.folders[i])
			if err != nil {
				return err
			}
			out[i] = dl
			continue
		}
		if isKnown && r.skipped == "" {
			continue // stored before and expunged locally since
		}
		d := b.ds[i]
		j := len(stored)
		stored = append(stored, i)
		ums = append(ums, unindexedMsg{raw: b.raws[i], date: b.dates[i]})
		if isKnown {
			updIDs, updAt, updSz = append(updIDs, r.id), append(updAt, j), append(updSz, int64(len(d.Raw)))
		} else {
			newAt = append(newAt, j)
			na, nu, nd, newSize = append(na, d.Account), append(nu, d.UIDL), append(nd, d.Digest), append(newSize, int64(len(d.Raw)))
		}
	}
	msgs, err := insertUnindexed(w.ctx, w.Tx, ums)
	if err != nil {
		return err
	}
	pick := func(at []int) []int64 {
		ids := make([]int64, len(at))
		for k, j := range at {
			ids[k] = int64(msgs[j])
		}
		return ids
	}
	if len(updIDs) > 0 {
		if _, err := w.Exec(w.ctx, `UPDATE pop_ledger SET message_id = x.m, skipped = '', size = x.s, stored_at = $4
			FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS x(id, m, s) WHERE pop_ledger.id = x.id`,
			updIDs, pick(updAt), updSz, now); err != nil {
			return fmt.Errorf("update ledger: %w", err)
		}
	}
	if len(newAt) > 0 {
		// A concurrent insert of the same key fails this one on the
		// unique key; write then retries and finds the row.
		if _, err := w.Exec(w.ctx, `INSERT INTO pop_ledger (account, uidl, digest, size, stored_at, message_id, last_seen)
			SELECT a, u, d, s, $5::timestamptz, m, $5::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $6::bigint[]) AS x(a, u, d, s, m)`,
			na, nu, nd, newSize, now, pick(newAt)); err != nil {
			return fmt.Errorf("insert ledger: %w", err)
		}
	}
	for j, i := range stored {
		key := mbKey{users[b.ds[i].User], b.folders[i]}
		p := adds[key]
		if p == nil {
			p = &pending{}
			adds[key] = p
			order = append(order, key)
		}
		p.rows = append(p.rows, entryRow{msg: msgs[j], flags: []string{}})
		p.idx = append(p.idx, i)
	}
	// Find or create the target mailboxes, then lock them in id order.
	ids := make(map[mbKey]store.MailboxID, len(order))
	owner := map[store.MailboxID]store.UserID{}
	for _, k := range order {
		m, err := mailboxByName(w.ctx, w, k.u, k.name, false)
		if err != nil || m.NoSelect {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if m, err = s.createMailbox(w, k.u, k.name, ""); err != nil {
				return err
			}
		}
		ids[k], owner[m.ID] = m.ID, k.u
	}
	locked := make(map[store.MailboxID]*store.Mailbox, len(order))
	for _, id := range slices.Sorted(maps.Keys(owner)) {
		m, err := mailboxByID(w.ctx, w, owner[id], id, true)
		if err != nil {
			return err
		}
		if m.NoSelect { // made a placeholder since the lookup
			return fmt.Errorf("mailbox %q: %w", m.Name, store.ErrNoSelect)
		}
		locked[id] = &m
	}
	for _, k := range order {
		p, mb := adds[k], locked[ids[k]]
		ents, err := addEntries(w, mb, p.rows)
		if err != nil {
			return err
		}
		for j, e := range ents {
			out[p.idx[j]] = store.Delivered{Mailbox: mb.ID, UID: e.UID, Message: e.Message}
		}
	}
	for i, j := range dups {
		out[i] = out[j]
	}
	return nil
}
