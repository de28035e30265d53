package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// defaultMailboxes are created, subscribed, for every new user.
var defaultMailboxes = []struct{ name, specialUse string }{
	{store.Inbox, ""},
	{"Drafts", store.SpecialDrafts},
	{"Sent", store.SpecialSent},
	{"Trash", store.SpecialTrash},
	{"Junk", store.SpecialJunk},
	{"Archive", store.SpecialArchive},
}

// EnsureUser returns the user called name, creating it if missing together
// with INBOX and the special-use mailboxes Drafts, Sent, Trash, Junk and
// Archive, all subscribed. Two nodes creating the same user at once get
// the same user.
func (s *Store) EnsureUser(ctx context.Context, name string) (store.User, error) {
	if err := store.ValidateUserName(name); err != nil {
		return store.User{}, fmt.Errorf("ensure user: %w", err)
	}
	if u, err := s.UserByName(ctx, name); err == nil || !errors.Is(err, store.ErrNotFound) {
		return u, err
	}
	var u store.User
	err := s.write(ctx, "ensure user", func(w *wtx) error {
		u = store.User{Name: name, Created: micro(s.now())}
		err := w.QueryRow(w.ctx, `INSERT INTO users (name, created) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id`,
			name, u.Created).Scan(&u.ID)
		if errors.Is(err, pgx.ErrNoRows) {
			u, err = userByName(w.ctx, w, name) // created meanwhile
			return err
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		for _, d := range defaultMailboxes {
			if _, err := s.insertMailbox(w, u.ID, d.name, d.specialUse, false); err != nil {
				return err
			}
			if _, err := w.Exec(w.ctx, `INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, u.ID, d.name); err != nil {
				return fmt.Errorf("subscribe %s: %w", d.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return store.User{}, err
	}
	u.Created = u.Created.UTC()
	return u, nil
}

// UserByName returns the user called name, or store.ErrNotFound.
func (s *Store) UserByName(ctx context.Context, name string) (store.User, error) {
	var u store.User
	err := s.read(ctx, "user by name", func(tx pgx.Tx) error {
		var err error
		u, err = userByName(ctx, tx, name)
		return err
	})
	return u, err
}

func userByName(ctx context.Context, q querier, name string) (store.User, error) {
	var u store.User
	err := q.QueryRow(ctx, `SELECT id, name, created FROM users WHERE name = $1`, name).Scan(&u.ID, &u.Name, &u.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("query user: %w", err)
	}
	u.Created = u.Created.UTC()
	return u, nil
}

// Users returns every user, ascending by name.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	var out []store.User
	err := s.read(ctx, "list users", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, created FROM users ORDER BY name COLLATE "C"`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) {
			var u store.User
			err := r.Scan(&u.ID, &u.Name, &u.Created)
			u.Created = u.Created.UTC()
			return u, err
		})
		return err
	})
	return out, err
}

func userExists(ctx context.Context, q querier, u store.UserID) error {
	var ok bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, u).Scan(&ok); err != nil {
		return fmt.Errorf("query user: %w", err)
	}
	if !ok {
		return fmt.Errorf("user %d: %w", u, store.ErrNotFound)
	}
	return nil
}
