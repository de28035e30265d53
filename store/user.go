package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// defaultMailboxes are created, subscribed, for every new user.
var defaultMailboxes = []struct{ name, specialUse string }{
	{Inbox, ""},
	{"Drafts", SpecialDrafts},
	{"Sent", SpecialSent},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

// EnsureUser returns the user called name, creating it if missing together
// with INBOX and the special-use mailboxes Drafts, Sent, Trash, Junk and
// Archive, all subscribed.
func (s *Store) EnsureUser(ctx context.Context, name string) (User, error) {
	if err := s.writable("ensure user"); err != nil {
		return User{}, err
	}
	if err := validateUserName(name); err != nil {
		return User{}, fmt.Errorf("ensure user: %w", err)
	}
	if u, err := s.UserByName(ctx, name); err == nil || !errors.Is(err, ErrNotFound) {
		return u, err
	}
	var u User
	err := s.write(ctx, "ensure user", func(w *writeTx) error {
		var err error
		u, err = userByName(w.ctx, w, name)
		if err == nil {
			return nil // created meanwhile
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		u = User{Name: name, Created: s.now()}
		if err := w.QueryRowContext(w.ctx, `INSERT INTO users (name, created) VALUES (?, ?) RETURNING id`,
			name, fmtTime(u.Created)).Scan(&u.ID); err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		for _, d := range defaultMailboxes {
			if _, err := s.insertMailbox(w, u.ID, d.name, d.specialUse, false); err != nil {
				return err
			}
			if _, err := w.ExecContext(w.ctx, `INSERT OR IGNORE INTO subscriptions (user_id, name) VALUES (?, ?)`, u.ID, d.name); err != nil {
				return fmt.Errorf("subscribe %s: %w", d.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// UserByName returns the user called name, or ErrNotFound.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	var u User
	err := s.read(ctx, "user by name", func(tx *sql.Tx) error {
		var err error
		u, err = userByName(ctx, tx, name)
		return err
	})
	return u, err
}

func userByName(ctx context.Context, q execer, name string) (User, error) {
	var (
		u       User
		created string
	)
	err := q.QueryRowContext(ctx, `SELECT id, name, created FROM users WHERE name = ?`, name).Scan(&u.ID, &u.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("query user: %w", err)
	}
	if u.Created, err = parseTime(created); err != nil {
		return User{}, err
	}
	return u, nil
}

// Users returns every user, ascending by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	var out []User
	err := s.read(ctx, "list users", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, name, created FROM users ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				u       User
				created string
			)
			if err := rows.Scan(&u.ID, &u.Name, &created); err != nil {
				return err
			}
			if u.Created, err = parseTime(created); err != nil {
				return err
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, err
}
