package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/popbridge/popbridge/store"
)

// PutProviderUser creates or replaces the provider user u.Name (see
// store.Store.PutProviderUser). Created is kept from an existing row; a
// zero Created on a new row is now.
func (s *Store) PutProviderUser(ctx context.Context, u store.ProviderUser) error {
	if u.State == "" {
		u.State = store.ProviderActive
	}
	if u.State != store.ProviderActive && u.State != store.ProviderNeedsLogin {
		return fmt.Errorf("put provider user: unknown state %q", u.State)
	}
	if u.Created.IsZero() {
		u.Created = s.now()
	}
	return s.write(ctx, "put provider user", func(w *wtx) error {
		_, err := w.Exec(w.ctx, `INSERT INTO provider_users (name, credential, state, created, last_login, state_changed)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, state = excluded.state,
				last_login = excluded.last_login, state_changed = excluded.state_changed`,
			u.Name, u.Credential, u.State, micro(u.Created), nullTime(u.LastLogin), nullTime(u.StateChanged))
		if err != nil {
			return fmt.Errorf("upsert provider user: %w", err)
		}
		return nil
	})
}

// SetProviderUserState sets the state of provider user name, dropping its
// credential when dropCredential is set. It returns store.ErrNotFound for
// an unknown name.
func (s *Store) SetProviderUserState(ctx context.Context, name, state string, dropCredential bool) error {
	if state != store.ProviderActive && state != store.ProviderNeedsLogin {
		return fmt.Errorf("set provider user state: unknown state %q", state)
	}
	return s.write(ctx, "set provider user state", func(w *wtx) error {
		q := `UPDATE provider_users SET state = $1, state_changed = $2 WHERE name = $3`
		if dropCredential {
			q = `UPDATE provider_users SET state = $1, state_changed = $2, credential = NULL WHERE name = $3`
		}
		tag, err := w.Exec(w.ctx, q, state, micro(s.now()), name)
		if err != nil {
			return fmt.Errorf("update provider user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("provider user %q: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

// DropProviderCredentials removes every kept credential (a switch to
// credentials = "session") and returns how many there were.
func (s *Store) DropProviderCredentials(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, "drop provider credentials", func(w *wtx) error {
		tag, err := w.Exec(w.ctx, `UPDATE provider_users SET credential = NULL WHERE credential IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("update provider users: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}

const providerColumns = `name, credential, state, created, last_login, state_changed`

// ProviderUsers returns every provider user, ascending by name.
func (s *Store) ProviderUsers(ctx context.Context) ([]store.ProviderUser, error) {
	var out []store.ProviderUser
	err := s.read(ctx, "list provider users", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+providerColumns+` FROM provider_users ORDER BY name`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ProviderUser, error) { return scanProviderUser(r) })
		return err
	})
	return out, err
}

// ProviderUserByName returns the provider user called name, or
// store.ErrNotFound.
func (s *Store) ProviderUserByName(ctx context.Context, name string) (store.ProviderUser, error) {
	var u store.ProviderUser
	err := s.read(ctx, "provider user by name", func(tx pgx.Tx) error {
		var err error
		u, err = scanProviderUser(tx.QueryRow(ctx, `SELECT `+providerColumns+` FROM provider_users WHERE name = $1`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("provider user %q: %w", name, store.ErrNotFound)
		}
		return err
	})
	return u, err
}

func scanProviderUser(row pgx.Row) (store.ProviderUser, error) {
	var u store.ProviderUser
	var lastLogin, changed *time.Time
	if err := row.Scan(&u.Name, &u.Credential, &u.State, &u.Created, &lastLogin, &changed); err != nil {
		return store.ProviderUser{}, err
	}
	u.LastLogin, u.StateChanged = fromNull(lastLogin), fromNull(changed)
	return u, nil
}

// DeleteUser deletes the user called name with all their mail (every
// mailbox, message and subscription), the ledger and status of accounts
// and their provider_users row; nothing upstream (see
// store.Store.DeleteUser). It returns store.ErrNotFound when neither the
// user nor a provider_users row exists.
func (s *Store) DeleteUser(ctx context.Context, name string, accounts []string) error {
	return s.write(ctx, "delete user", func(w *wtx) error {
		found := false
		u, err := userByName(w.ctx, w, name)
		switch {
		case err == nil:
			found = true
			if err := deleteUserMail(w, u.ID); err != nil {
				return err
			}
			if _, err := w.Exec(w.ctx, `DELETE FROM users WHERE id = $1`, u.ID); err != nil {
				return fmt.Errorf("delete user row: %w", err)
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		tag, err := w.Exec(w.ctx, `DELETE FROM provider_users WHERE name = $1`, name)
		if err != nil {
			return fmt.Errorf("delete provider user: %w", err)
		}
		if tag.RowsAffected() > 0 {
			found = true
		}
		if !found {
			return fmt.Errorf("user %q: %w", name, store.ErrNotFound)
		}
		if len(accounts) > 0 {
			if _, err := w.Exec(w.ctx, `DELETE FROM pop_ledger WHERE account = ANY ($1)`, accounts); err != nil {
				return fmt.Errorf("delete ledgers: %w", err)
			}
			if _, err := w.Exec(w.ctx, `DELETE FROM account_status WHERE account = ANY ($1)`, accounts); err != nil {
				return fmt.Errorf("delete statuses: %w", err)
			}
		}
		return nil
	})
}

// deleteUserMail expunges every message of user u's mailboxes (a message
// goes with its last entry) and deletes the mailboxes, announcing each.
func deleteUserMail(w *wtx, u store.UserID) error {
	rows, err := w.Query(w.ctx, `SELECT id FROM mailboxes WHERE user_id = $1 ORDER BY id FOR UPDATE`, u)
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	for _, id := range ids {
		mb, err := mailboxByID(w.ctx, w, u, store.MailboxID(id), true)
		if err != nil {
			return err
		}
		if err := expungeAll(w, &mb); err != nil {
			return err
		}
		if _, err := w.Exec(w.ctx, `DELETE FROM mailboxes WHERE id = $1`, mb.ID); err != nil {
			return fmt.Errorf("delete mailbox row: %w", err)
		}
		w.emit(store.Change{Kind: store.ChangeMailboxDeleted, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq + 1})
	}
	return nil
}
