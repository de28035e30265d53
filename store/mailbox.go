package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
)

const mailboxColumns = `m.id, m.user_id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use, m.noselect,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = m.user_id AND s.name = m.name)`

func scanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var (
		mb        Mailbox
		uidnext   int64
		uidv      int64
		modseq    int64
		noselect  int64
		subscribe int64
	)
	if err := sc.Scan(&mb.ID, &mb.User, &mb.Name, &uidv, &uidnext, &modseq, &mb.SpecialUse, &noselect, &subscribe); err != nil {
		return Mailbox{}, err
	}
	mb.UIDValidity = uint32(uidv)
	mb.UIDNext = UID(uidnext)
	mb.HighestModSeq = uint64(modseq)
	mb.NoSelect = noselect != 0
	mb.Subscribed = subscribe != 0
	return mb, nil
}

func mailboxByID(ctx context.Context, q execer, u UserID, id MailboxID) (Mailbox, error) {
	mb, err := scanMailbox(q.QueryRowContext(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.id = ? AND m.user_id = ?`, id, u))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("query mailbox: %w", err)
	}
	return mb, nil
}

// selectableByID is mailboxByID refusing \Noselect placeholders.
func selectableByID(ctx context.Context, q execer, u UserID, id MailboxID) (Mailbox, error) {
	mb, err := mailboxByID(ctx, q, u, id)
	if err == nil && mb.NoSelect {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", mb.Name, ErrNoSelect)
	}
	return mb, err
}

// mailboxByName looks up a canonical name.
func mailboxByName(ctx context.Context, q execer, u UserID, name string) (Mailbox, error) {
	mb, err := scanMailbox(q.QueryRowContext(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.user_id = ? AND m.name = ?`, u, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("query mailbox: %w", err)
	}
	return mb, nil
}

func userExists(ctx context.Context, q execer, u UserID) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE id = ?`, u).Scan(&n); err != nil {
		return fmt.Errorf("query user: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("user %d: %w", u, ErrNotFound)
	}
	return nil
}

// Mailboxes returns the user's mailboxes, \Noselect placeholders included,
// ascending by name.
func (s *Store) Mailboxes(ctx context.Context, u UserID) ([]Mailbox, error) {
	var out []Mailbox
	err := s.read(ctx, "list mailboxes", func(tx *sql.Tx) error {
		if err := userExists(ctx, tx, u); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.user_id = ? ORDER BY m.name`, u)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			mb, err := scanMailbox(rows)
			if err != nil {
				return err
			}
			out = append(out, mb)
		}
		return rows.Err()
	})
	return out, err
}

// MailboxByName returns the user's mailbox called name (any case for
// INBOX), or ErrNotFound.
func (s *Store) MailboxByName(ctx context.Context, u UserID, name string) (Mailbox, error) {
	canon, err := ValidateMailboxName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox by name: %w", err)
	}
	var mb Mailbox
	err = s.read(ctx, "mailbox by name", func(tx *sql.Tx) error {
		mb, err = mailboxByName(ctx, tx, u, canon)
		return err
	})
	return mb, err
}

// MailboxByID returns the user's mailbox id, or ErrNotFound (also when it
// belongs to another user).
func (s *Store) MailboxByID(ctx context.Context, u UserID, id MailboxID) (Mailbox, error) {
	var mb Mailbox
	err := s.read(ctx, "mailbox by id", func(tx *sql.Tx) error {
		var err error
		mb, err = mailboxByID(ctx, tx, u, id)
		return err
	})
	return mb, err
}

// nextUIDValidity issues a UIDVALIDITY strictly greater than every one
// issued before by this store (and at least the current Unix time, so a
// store rebuilt from scratch does not repeat old values).
func (s *Store) nextUIDValidity(w *writeTx) (uint32, error) {
	var last int64
	err := w.QueryRowContext(w.ctx, `SELECT value FROM counters WHERE name = 'uidvalidity'`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read uidvalidity counter: %w", err)
	}
	next := max(last+1, s.now().Unix())
	if next > math.MaxUint32 || next < 1 {
		return 0, fmt.Errorf("uidvalidity counter exhausted at %d", last)
	}
	if _, err := w.ExecContext(w.ctx, `INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, next); err != nil {
		return 0, fmt.Errorf("write uidvalidity counter: %w", err)
	}
	return uint32(next), nil
}

// insertMailbox creates a mailbox row with a fresh UIDVALIDITY. The caller
// has checked that the name is free.
func (s *Store) insertMailbox(w *writeTx, u UserID, name, specialUse string, noselect bool) (Mailbox, error) {
	uidv, err := s.nextUIDValidity(w)
	if err != nil {
		return Mailbox{}, err
	}
	ns := 0
	if noselect {
		ns = 1
	}
	var id MailboxID
	if err := w.QueryRowContext(w.ctx, `INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, highestmodseq, special_use, noselect)
		VALUES (?, ?, ?, 1, 1, ?, ?) RETURNING id`, u, name, uidv, specialUse, ns).Scan(&id); err != nil {
		return Mailbox{}, fmt.Errorf("insert mailbox %q: %w", name, err)
	}
	mb, err := mailboxByID(w.ctx, w, u, id)
	if err != nil {
		return Mailbox{}, err
	}
	w.emit(Change{Kind: ChangeMailboxCreated, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq})
	return mb, nil
}

// ensureParents creates the missing ancestors of name as \Noselect
// placeholders.
func (s *Store) ensureParents(w *writeTx, u UserID, name string) error {
	for _, p := range parentNames(name) {
		_, err := mailboxByName(w.ctx, w, u, p)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := s.insertMailbox(w, u, p, "", true); err != nil {
			return err
		}
	}
	return nil
}

// createMailbox creates name (canonical) and its missing parents. A \Noselect
// placeholder of the same name is replaced by a new, selectable mailbox (new
// MailboxID and UIDVALIDITY).
func (s *Store) createMailbox(w *writeTx, u UserID, name, specialUse string) (Mailbox, error) {
	old, err := mailboxByName(w.ctx, w, u, name)
	switch {
	case err == nil && !old.NoSelect:
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrExists)
	case err == nil:
		if _, err := w.ExecContext(w.ctx, `DELETE FROM mailboxes WHERE id = ?`, old.ID); err != nil {
			return Mailbox{}, fmt.Errorf("replace placeholder %q: %w", name, err)
		}
		w.emit(Change{Kind: ChangeMailboxDeleted, User: u, Mailbox: old.ID, MailboxName: old.Name, ModSeq: old.HighestModSeq + 1})
	case !errors.Is(err, ErrNotFound):
		return Mailbox{}, err
	}
	if err := s.ensureParents(w, u, name); err != nil {
		return Mailbox{}, err
	}
	return s.insertMailbox(w, u, name, specialUse, false)
}

// CreateMailbox creates the user's mailbox name with the given special-use
// attribute ("" for none), creating missing parents as \Noselect
// placeholders. It returns ErrExists if a selectable mailbox of that name
// exists; creating over a \Noselect placeholder makes it a new selectable
// mailbox.
func (s *Store) CreateMailbox(ctx context.Context, u UserID, name, specialUse string) (Mailbox, error) {
	if err := s.writable("create mailbox"); err != nil {
		return Mailbox{}, err
	}
	canon, err := ValidateMailboxName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("create mailbox: %w", err)
	}
	if !validSpecialUse(specialUse) {
		return Mailbox{}, fmt.Errorf("create mailbox: %w: unknown special-use %q", ErrInvalidName, specialUse)
	}
	var mb Mailbox
	err = s.write(ctx, "create mailbox", func(w *writeTx) error {
		if err := userExists(w.ctx, w, u); err != nil {
			return err
		}
		mb, err = s.createMailbox(w, u, canon, specialUse)
		return err
	})
	return mb, err
}

// DeleteMailbox deletes the user's mailbox name following RFC 3501 section
// 6.3.4: INBOX cannot be deleted (ErrInboxDelete); a mailbox with children
// has its messages expunged and becomes a \Noselect placeholder; a
// placeholder with children cannot be deleted (ErrHasChildren). Its
// subscription is kept.
func (s *Store) DeleteMailbox(ctx context.Context, u UserID, name string) error {
	if err := s.writable("delete mailbox"); err != nil {
		return err
	}
	canon, err := ValidateMailboxName(name)
	if err != nil {
		return fmt.Errorf("delete mailbox: %w", err)
	}
	if canon == Inbox {
		return fmt.Errorf("delete mailbox: %w", ErrInboxDelete)
	}
	return s.write(ctx, "delete mailbox", func(w *writeTx) error {
		mb, err := mailboxByName(w.ctx, w, u, canon)
		if err != nil {
			return err
		}
		lo, hi := childRange(canon)
		var children int
		if err := w.QueryRowContext(w.ctx, `SELECT count(*) FROM mailboxes WHERE user_id = ? AND name >= ? AND name < ?`,
			u, lo, hi).Scan(&children); err != nil {
			return fmt.Errorf("count children: %w", err)
		}
		if children > 0 && mb.NoSelect {
			return fmt.Errorf("mailbox %q: %w", canon, ErrHasChildren)
		}
		ents, err := selectEntries(w.ctx, w, mb.ID, nil, false)
		if err != nil {
			return err
		}
		if len(ents) > 0 {
			if err := s.expungeEntries(w, &mb, ents); err != nil {
				return err
			}
		}
		mb.HighestModSeq++
		if children > 0 {
			if _, err := w.ExecContext(w.ctx, `UPDATE mailboxes SET noselect = 1, special_use = '', highestmodseq = ? WHERE id = ?`,
				int64(mb.HighestModSeq), mb.ID); err != nil {
				return fmt.Errorf("mark placeholder: %w", err)
			}
		} else if _, err := w.ExecContext(w.ctx, `DELETE FROM mailboxes WHERE id = ?`, mb.ID); err != nil {
			return fmt.Errorf("delete mailbox row: %w", err)
		}
		w.emit(Change{Kind: ChangeMailboxDeleted, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq})
		return nil
	})
}

// RenameMailbox renames the user's mailbox oldName to newName. Children move
// with it and every mailbox keeps its MailboxID and UIDVALIDITY; missing
// parents of newName are created as \Noselect placeholders. Renaming INBOX
// (RFC 3501 section 6.3.5) creates newName, moves every INBOX message into
// it (with new UIDs) and leaves INBOX empty; INBOX's children stay. It
// returns ErrNotFound if oldName does not exist, ErrExists if newName does,
// and ErrInvalidName when renaming a mailbox under itself.
func (s *Store) RenameMailbox(ctx context.Context, u UserID, oldName, newName string) error {
	if err := s.writable("rename mailbox"); err != nil {
		return err
	}
	oldCanon, err := ValidateMailboxName(oldName)
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	newCanon, err := ValidateMailboxName(newName)
	if err != nil {
		return fmt.Errorf("rename mailbox: %w", err)
	}
	return s.write(ctx, "rename mailbox", func(w *writeTx) error {
		mb, err := mailboxByName(w.ctx, w, u, oldCanon)
		if err != nil {
			return err
		}
		if _, err := mailboxByName(w.ctx, w, u, newCanon); err == nil {
			return fmt.Errorf("mailbox %q: %w", newCanon, ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if oldCanon == Inbox {
			return s.renameInbox(w, u, mb, newCanon)
		}
		if newCanon == oldCanon || strings.HasPrefix(newCanon, oldCanon+string(Delimiter)) {
			return fmt.Errorf("%w: cannot rename %q under itself", ErrInvalidName, oldCanon)
		}
		lo, hi := childRange(oldCanon)
		rows, err := w.QueryContext(w.ctx, `SELECT `+mailboxColumns+` FROM mailboxes m WHERE m.user_id = ? AND m.name >= ? AND m.name < ? ORDER BY m.name`, u, lo, hi)
		if err != nil {
			return fmt.Errorf("list children: %w", err)
		}
		moving := []Mailbox{mb}
		for rows.Next() {
			c, err := scanMailbox(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("list children: %w", err)
			}
			moving = append(moving, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list children: %w", err)
		}
		targets := make([]string, len(moving))
		for i, m := range moving {
			t := newCanon + m.Name[len(oldCanon):]
			if _, err := ValidateMailboxName(t); err != nil {
				return err
			}
			if _, err := mailboxByName(w.ctx, w, u, t); err == nil {
				return fmt.Errorf("mailbox %q: %w", t, ErrExists)
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
			targets[i] = t
		}
		if err := s.ensureParents(w, u, newCanon); err != nil {
			return err
		}
		for i, m := range moving {
			modseq := m.HighestModSeq + 1
			if _, err := w.ExecContext(w.ctx, `UPDATE mailboxes SET name = ?, highestmodseq = ? WHERE id = ?`,
				targets[i], int64(modseq), m.ID); err != nil {
				return fmt.Errorf("rename %q: %w", m.Name, err)
			}
			w.emit(Change{Kind: ChangeMailboxRenamed, User: u, Mailbox: m.ID, MailboxName: targets[i], OldName: m.Name, ModSeq: modseq})
		}
		return nil
	})
}

func (s *Store) renameInbox(w *writeTx, u UserID, inbox Mailbox, newName string) error {
	if err := s.ensureParents(w, u, newName); err != nil {
		return err
	}
	dst, err := s.insertMailbox(w, u, newName, "", false)
	if err != nil {
		return err
	}
	ents, err := selectEntries(w.ctx, w, inbox.ID, nil, false)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	if _, err := s.copyEntries(w, &dst, ents); err != nil {
		return err
	}
	return s.expungeEntries(w, &inbox, ents)
}

// SetSubscribed subscribes or unsubscribes the user to name. The mailbox
// need not exist.
func (s *Store) SetSubscribed(ctx context.Context, u UserID, name string, subscribed bool) error {
	if err := s.writable("set subscribed"); err != nil {
		return err
	}
	canon, err := ValidateMailboxName(name)
	if err != nil {
		return fmt.Errorf("set subscribed: %w", err)
	}
	return s.write(ctx, "set subscribed", func(w *writeTx) error {
		if err := userExists(w.ctx, w, u); err != nil {
			return err
		}
		var res sql.Result
		if subscribed {
			res, err = w.ExecContext(w.ctx, `INSERT INTO subscriptions (user_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING`, u, canon)
		} else {
			res, err = w.ExecContext(w.ctx, `DELETE FROM subscriptions WHERE user_id = ? AND name = ?`, u, canon)
		}
		if err != nil {
			return fmt.Errorf("update subscription: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		c := Change{Kind: ChangeSubscription, User: u, MailboxName: canon}
		mb, err := mailboxByName(w.ctx, w, u, canon)
		switch {
		case err == nil:
			mb.HighestModSeq++
			if err := saveMailboxCounters(w, &mb); err != nil {
				return err
			}
			c.Mailbox, c.ModSeq = mb.ID, mb.HighestModSeq
		case !errors.Is(err, ErrNotFound):
			return err
		}
		w.emit(c)
		return nil
	})
}

// Subscriptions returns the user's subscribed names, ascending. They may
// name mailboxes that no longer exist.
func (s *Store) Subscriptions(ctx context.Context, u UserID) ([]string, error) {
	var out []string
	err := s.read(ctx, "list subscriptions", func(tx *sql.Tx) error {
		if err := userExists(ctx, tx, u); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT name FROM subscriptions WHERE user_id = ? ORDER BY name`, u)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			out = append(out, n)
		}
		return rows.Err()
	})
	return out, err
}

// Counts returns the figures STATUS and SELECT report for the mailbox.
func (s *Store) Counts(ctx context.Context, u UserID, id MailboxID) (MailboxCounts, error) {
	var c MailboxCounts
	err := s.read(ctx, "count messages", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT count(*),
			coalesce(sum(CASE WHEN mm.flags & ? = 0 THEN 1 ELSE 0 END), 0),
			coalesce(sum(CASE WHEN mm.flags & ? != 0 THEN 1 ELSE 0 END), 0),
			coalesce(sum(m.size), 0)
			FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
			WHERE mm.mailbox_id = ?`, bitSeen, bitDeleted, id).Scan(&c.Messages, &c.Unseen, &c.Deleted, &c.Size)
	})
	return c, err
}
