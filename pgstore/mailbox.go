package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

const mailboxColumns = `m.id, m.user_id, m.name, m.uidvalidity, m.uid_next, m.highest_modseq, m.special_use, m.noselect,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = m.user_id AND s.name = m.name)`

func scanMailbox(sc pgx.Row) (store.Mailbox, error) {
	var (
		mb               store.Mailbox
		uidv, next, mods int64
	)
	if err := sc.Scan(&mb.ID, &mb.User, &mb.Name, &uidv, &next, &mods, &mb.SpecialUse, &mb.NoSelect, &mb.Subscribed); err != nil {
		return store.Mailbox{}, err
	}
	mb.UIDValidity, mb.UIDNext, mb.HighestModSeq = uint32(uidv), store.UID(next), uint64(mods)
	return mb, nil
}

// forUpdate is appended to a mailbox query in a write transaction: the row
// stays locked until commit, so the transactions that change one mailbox
// (its UIDNEXT, HIGHESTMODSEQ or entries) run one after the other, on any
// node.
const forUpdate = ` FOR UPDATE OF m`

func mailboxByID(ctx context.Context, q querier, u store.UserID, id store.MailboxID, lock bool) (store.Mailbox, error) {
	query := `SELECT ` + mailboxColumns + ` FROM mailboxes m WHERE m.id = $1 AND m.user_id = $2`
	if lock {
		query += forUpdate
	}
	mb, err := scanMailbox(q.QueryRow(ctx, query, id, u))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Mailbox{}, fmt.Errorf("mailbox %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("query mailbox: %w", err)
	}
	return mb, nil
}

// selectableByID is mailboxByID refusing \Noselect placeholders.
func selectableByID(ctx context.Context, q querier, u store.UserID, id store.MailboxID, lock bool) (store.Mailbox, error) {
	mb, err := mailboxByID(ctx, q, u, id, lock)
	if err == nil && mb.NoSelect {
		return store.Mailbox{}, fmt.Errorf("mailbox %q: %w", mb.Name, store.ErrNoSelect)
	}
	return mb, err
}

// mailboxByName looks up a canonical name.
func mailboxByName(ctx context.Context, q querier, u store.UserID, name string, lock bool) (store.Mailbox, error) {
	query := `SELECT ` + mailboxColumns + ` FROM mailboxes m WHERE m.user_id = $1 AND m.name = $2`
	if lock {
		query += forUpdate
	}
	mb, err := scanMailbox(q.QueryRow(ctx, query, u, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Mailbox{}, fmt.Errorf("mailbox %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("query mailbox: %w", err)
	}
	return mb, nil
}

func collectMailboxes(rows pgx.Rows) ([]store.Mailbox, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Mailbox, error) { return scanMailbox(r) })
}

// Mailboxes returns the user's mailboxes, \Noselect placeholders included,
// ascending by name.
func (s *Store) Mailboxes(ctx context.Context, u store.UserID) ([]store.Mailbox, error) {
	var out []store.Mailbox
	err := s.read(ctx, "list mailboxes", func(tx pgx.Tx) error {
		if err := userExists(ctx, tx, u); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.user_id = $1 ORDER BY m.name`, u)
		if err != nil {
			return err
		}
		out, err = collectMailboxes(rows)
		return err
	})
	return out, err
}

// MailboxByName returns the user's mailbox called name (any case for
// INBOX), or store.ErrNotFound.
func (s *Store) MailboxByName(ctx context.Context, u store.UserID, name string) (store.Mailbox, error) {
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox by name: %w", err)
	}
	var mb store.Mailbox
	err = s.read(ctx, "mailbox by name", func(tx pgx.Tx) error {
		mb, err = mailboxByName(ctx, tx, u, canon, false)
		return err
	})
	return mb, err
}

// MailboxByID returns the user's mailbox id, or store.ErrNotFound (also
// when it belongs to another user).
func (s *Store) MailboxByID(ctx context.Context, u store.UserID, id store.MailboxID) (store.Mailbox, error) {
	var mb store.Mailbox
	err := s.read(ctx, "mailbox by id", func(tx pgx.Tx) error {
		var err error
		mb, err = mailboxByID(ctx, tx, u, id, false)
		return err
	})
	return mb, err
}

// nextUIDValidity issues a UIDVALIDITY strictly greater than every one
// issued before on this database (and at least the current Unix time).
// The counter row stays locked until commit.
func (s *Store) nextUIDValidity(w *wtx) (uint32, error) {
	var next int64
	err := w.QueryRow(w.ctx, `INSERT INTO counters (name, value) VALUES ('uidvalidity', $1)
		ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value + 1, $1) RETURNING value`, s.now().Unix()).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("advance uidvalidity counter: %w", err)
	}
	if next > math.MaxUint32 || next < 1 {
		return 0, fmt.Errorf("uidvalidity counter exhausted at %d", next)
	}
	return uint32(next), nil
}

// insertMailbox creates a mailbox row with a fresh UIDVALIDITY. A
// concurrent creation of the same name fails it with a unique violation,
// which makes write retry the transaction.
func (s *Store) insertMailbox(w *wtx, u store.UserID, name, specialUse string, noselect bool) (store.Mailbox, error) {
	uidv, err := s.nextUIDValidity(w)
	if err != nil {
		return store.Mailbox{}, err
	}
	var id store.MailboxID
	if err := w.QueryRow(w.ctx, `INSERT INTO mailboxes (user_id, name, uidvalidity, uid_next, highest_modseq, special_use, noselect)
		VALUES ($1, $2, $3, 1, 1, $4, $5) RETURNING id`, u, name, int64(uidv), specialUse, noselect).Scan(&id); err != nil {
		return store.Mailbox{}, fmt.Errorf("insert mailbox %q: %w", name, err)
	}
	mb, err := mailboxByID(w.ctx, w, u, id, true)
	if err != nil {
		return store.Mailbox{}, err
	}
	w.emit(store.Change{Kind: store.ChangeMailboxCreated, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq})
	return mb, nil
}

// ensureParents creates the missing ancestors of name as \Noselect
// placeholders.
func (s *Store) ensureParents(w *wtx, u store.UserID, name string) error {
	for _, p := range store.ParentNames(name) {
		_, err := mailboxByName(w.ctx, w, u, p, false)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := s.insertMailbox(w, u, p, "", true); err != nil {
			return err
		}
	}
	return nil
}

// createMailbox creates name (canonical) and its missing parents. A
// \Noselect placeholder of the same name is replaced by a new, selectable
// mailbox (new MailboxID and UIDVALIDITY).
func (s *Store) createMailbox(w *wtx, u store.UserID, name, specialUse string) (store.Mailbox, error) {
	old, err := mailboxByName(w.ctx, w, u, name, true)
	switch {
	case err == nil && !old.NoSelect:
		return store.Mailbox{}, fmt.Errorf("mailbox %q: %w", name, store.ErrExists)
	case err == nil:
		if _, err := w.Exec(w.ctx, `DELETE FROM mailboxes WHERE id = $1`, old.ID); err != nil {
			return store.Mailbox{}, fmt.Errorf("replace placeholder %q: %w", name, err)
		}
		w.emit(store.Change{Kind: store.ChangeMailboxDeleted, User: u, Mailbox: old.ID, MailboxName: old.Name, ModSeq: old.HighestModSeq + 1})
	case !errors.Is(err, store.ErrNotFound):
		return store.Mailbox{}, err
	}
	if err := s.ensureParents(w, u, name); err != nil {
		return store.Mailbox{}, err
	}
	return s.insertMailbox(w, u, name, specialUse, false)
}

// CreateMailbox creates the user's mailbox name with the given special-use
// attribute ("" for none), creating missing parents as \Noselect
// placeholders. It returns store.ErrExists if a selectable mailbox of that
// name exists (also when another node created it a moment before);
// creating over a \Noselect placeholder makes it a new selectable mailbox.
func (s *Store) CreateMailbox(ctx context.Context, u store.UserID, name, specialUse string) (store.Mailbox, error) {
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("create mailbox: %w", err)
	}
	if !store.ValidSpecialUse(specialUse) {
		return store.Mailbox{}, fmt.Errorf("create mailbox: %w: unknown special-use %q", store.ErrInvalidName, specialUse)
	}
	var mb store.Mailbox
	err = s.write(ctx, "create mailbox", func(w *wtx) error {
		if err := userExists(w.ctx, w, u); err != nil {
			return err
		}
		mb, err = s.createMailbox(w, u, canon, specialUse)
		return err
	})
	return mb, err
}

// childPattern is the LIKE pattern of the proper descendants of name.
func childPattern(name string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(name) + string(store.Delimiter) + "%"
}

// DeleteMailbox deletes the user's mailbox name following RFC 3501 section
// 6.3.4: INBOX cannot be deleted (store.ErrInboxDelete); a mailbox with
// children has its messages expunged and becomes a \Noselect placeholder;
// a placeholder with children cannot be deleted (store.ErrHasChildren).
// Its subscription is kept.
func (s *Store) DeleteMailbox(ctx context.Context, u store.UserID, name string) error {
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return fmt.Errorf("delete mailbox: %w", err)
	}
	if canon == store.Inbox {
		return fmt.Errorf("delete mailbox: %w", store.ErrInboxDelete)
	}
	return s.write(ctx, "delete mailbox", func(w *wtx) error {
		mb, err := mailboxByName(w.ctx, w, u, canon, true)
		if err != nil {
			return err
		}
		var children int
		if err := w.QueryRow(w.ctx, `SELECT count(*) FROM mailboxes WHERE user_id = $1 AND name LIKE $2`,
			u, childPattern(canon)).Scan(&children); err != nil {
			return fmt.Errorf("count children: %w", err)
		}
		if children > 0 && mb.NoSelect {
			return fmt.Errorf("mailbox %q: %w", canon, store.ErrHasChildren)
		}
		if err := expungeAll(w, &mb); err != nil {
			return err
		}
		mb.HighestModSeq++
		if children > 0 {
			if _, err := w.Exec(w.ctx, `UPDATE mailboxes SET noselect = true, special_use = '', highest_modseq = $1 WHERE id = $2`,
				int64(mb.HighestModSeq), mb.ID); err != nil {
				return fmt.Errorf("mark placeholder: %w", err)
			}
		} else if _, err := w.Exec(w.ctx, `DELETE FROM mailboxes WHERE id = $1`, mb.ID); err != nil {
			return fmt.Errorf("delete mailbox row: %w", err)
		}
		w.emit(store.Change{Kind: store.ChangeMailboxDeleted, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq})
		return nil
	})
}

// RenameMailbox renames the user's mailbox oldName to newName. Children
// move with it and every mailbox keeps its MailboxID and UIDVALIDITY;
// missing parents of newName are created as \Noselect placeholders.
// Renaming INBOX (RFC 3501 section 6.3.5) creates newName, moves every
// INBOX message into it (with new UIDs) and leaves INBOX empty; INBOX's
// children stay. It returns store.ErrNotFound if oldName does not exist,
// store.ErrExists if newName does, and store.ErrInvalidName when renaming
// a mailbox under itself.
func (s *Store) RenameMailbox(ctx context.Context, u store.UserID, oldName, newName string) error {
	oldCanon, err := store.ValidateMailboxName(oldName)
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	newCanon, err := store.ValidateMailboxName(newName)
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	return s.write(ctx, "rename mailbox", func(w *wtx) error {
		mb, err := mailboxByName(w.ctx, w, u, oldCanon, true)
		if err != nil {
			return err
		}
		if _, err := mailboxByName(w.ctx, w, u, newCanon, false); err == nil {
			return fmt.Errorf("mailbox %q: %w", newCanon, store.ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if oldCanon == store.Inbox {
			return s.renameInbox(w, u, mb, newCanon)
		}
		if newCanon == oldCanon || strings.HasPrefix(newCanon, oldCanon+string(store.Delimiter)) {
			return fmt.Errorf("%w: cannot rename %q under itself", store.ErrInvalidName, oldCanon)
		}
		rows, err := w.Query(w.ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.user_id = $1 AND m.name LIKE $2 ORDER BY m.name`+forUpdate,
			u, childPattern(oldCanon))
		if err != nil {
			return fmt.Errorf("list children: %w", err)
		}
		children, err := collectMailboxes(rows)
		if err != nil {
			return fmt.Errorf("list children: %w", err)
		}
		moving := append([]store.Mailbox{mb}, children...)
		targets := make([]string, len(moving))
		for i, m := range moving {
			t := newCanon + m.Name[len(oldCanon):]
			if _, err := store.ValidateMailboxName(t); err != nil {
				return err
			}
			if _, err := mailboxByName(w.ctx, w, u, t, false); err == nil {
				return fmt.Errorf("mailbox %q: %w", t, store.ErrExists)
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			targets[i] = t
		}
		if err := s.ensureParents(w, u, newCanon); err != nil {
			return err
		}
		for i, m := range moving {
			modseq := m.HighestModSeq + 1
			if _, err := w.Exec(w.ctx, `UPDATE mailboxes SET name = $1, highest_modseq = $2 WHERE id = $3`,
				targets[i], int64(modseq), m.ID); err != nil {
				return fmt.Errorf("rename %q: %w", m.Name, err)
			}
			w.emit(store.Change{Kind: store.ChangeMailboxRenamed, User: u, Mailbox: m.ID, MailboxName: targets[i], OldName: m.Name, ModSeq: modseq})
		}
		return nil
	})
}

func (s *Store) renameInbox(w *wtx, u store.UserID, inbox store.Mailbox, newName string) error {
	if err := s.ensureParents(w, u, newName); err != nil {
		return err
	}
	dst, err := s.insertMailbox(w, u, newName, "", false)
	if err != nil {
		return err
	}
	ents, err := selectEntries(w.ctx, w, inbox.ID, nil, false)
	if err != nil || len(ents) == 0 {
		return err
	}
	if _, err := addEntries(w, &dst, ents); err != nil {
		return err
	}
	return expungeEntries(w, &inbox, ents)
}

// SetSubscribed subscribes or unsubscribes the user to name. The mailbox
// need not exist.
func (s *Store) SetSubscribed(ctx context.Context, u store.UserID, name string, subscribed bool) error {
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return fmt.Errorf("set subscribed: %w", err)
	}
	return s.write(ctx, "set subscribed", func(w *wtx) error {
		if err := userExists(w.ctx, w, u); err != nil {
			return err
		}
		// The mailbox, if any, is locked first: its modseq changes.
		mb, mbErr := mailboxByName(w.ctx, w, u, canon, true)
		if mbErr != nil && !errors.Is(mbErr, store.ErrNotFound) {
			return mbErr
		}
		var q string
		if subscribed {
			q = `INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`
		} else {
			q = `DELETE FROM subscriptions WHERE user_id = $1 AND name = $2`
		}
		tag, err := w.Exec(w.ctx, q, u, canon)
		if err != nil {
			return fmt.Errorf("update subscription: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		c := store.Change{Kind: store.ChangeSubscription, User: u, MailboxName: canon}
		if mbErr == nil {
			mb.HighestModSeq++
			if err := saveCounters(w, &mb); err != nil {
				return err
			}
			c.Mailbox, c.ModSeq = mb.ID, mb.HighestModSeq
		}
		w.emit(c)
		return nil
	})
}

// Subscriptions returns the user's subscribed names, ascending. They may
// name mailboxes that no longer exist.
func (s *Store) Subscriptions(ctx context.Context, u store.UserID) ([]string, error) {
	var out []string
	err := s.read(ctx, "list subscriptions", func(tx pgx.Tx) error {
		if err := userExists(ctx, tx, u); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM subscriptions WHERE user_id = $1 ORDER BY name`, u)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return out, err
}

// Counts returns the figures STATUS and SELECT report for the mailbox.
func (s *Store) Counts(ctx context.Context, u store.UserID, id store.MailboxID) (store.MailboxCounts, error) {
	var c store.MailboxCounts
	err := s.read(ctx, "count messages", func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id, false); err != nil {
			return err
		}
		var n, unseen, deleted, size int64
		if err := tx.QueryRow(ctx, `SELECT count(*),
			count(*) FILTER (WHERE NOT ($2 = ANY (mm.flags))),
			count(*) FILTER (WHERE $3 = ANY (mm.flags)),
			coalesce(sum(m.size), 0)::bigint
			FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
			WHERE mm.mailbox_id = $1`, id, store.FlagSeen, store.FlagDeleted).Scan(&n, &unseen, &deleted, &size); err != nil {
			return err
		}
		c = store.MailboxCounts{Messages: uint32(n), Unseen: uint32(unseen), Deleted: uint32(deleted), Size: size}
		return nil
	})
	return c, err
}
