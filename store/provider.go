package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// States of a [ProviderUser].
const (
	// ProviderActive: the user's mail is fetched.
	ProviderActive = "active"
	// ProviderNeedsLogin: the POP server refused the kept credential;
	// nothing is fetched until the user logs in again.
	ProviderNeedsLogin = "needs_login"
)

// ProviderUser is a user of provider mode: an IMAP login checked against a
// POP3 service. The store knows no cryptography: Credential is opaque bytes
// sealed by the caller, nil when none is kept.
type ProviderUser struct {
	// Name is the IMAP login, also the store user's name.
	Name string
	// Credential is the sealed POP3 password, or nil.
	Credential []byte
	// State is ProviderActive or ProviderNeedsLogin.
	State string
	// Created is when the user first logged in.
	Created time.Time
	// LastLogin is the last successful IMAP login checked with the POP
	// server (zero: none recorded).
	LastLogin time.Time
	// StateChanged is when State last changed (zero: never).
	StateChanged time.Time
}

// PutProviderUser creates or replaces the provider user u.Name. Created is
// kept from an existing row; a zero Created on a new row is now.
func (s *Store) PutProviderUser(ctx context.Context, u ProviderUser) error {
	if err := s.writable("put provider user"); err != nil {
		return err
	}
	if u.State == "" {
		u.State = ProviderActive
	}
	if u.State != ProviderActive && u.State != ProviderNeedsLogin {
		return fmt.Errorf("put provider user: unknown state %q", u.State)
	}
	if u.Created.IsZero() {
		u.Created = s.now()
	}
	return s.write(ctx, "put provider user", func(w *writeTx) error {
		_, err := w.ExecContext(w.ctx, `INSERT INTO provider_users (name, credential, state, created, last_login, state_changed)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, state = excluded.state,
				last_login = excluded.last_login, state_changed = excluded.state_changed`,
			u.Name, u.Credential, u.State, fmtTime(u.Created.UTC()), nullTime(u.LastLogin), nullTime(u.StateChanged))
		if err != nil {
			return fmt.Errorf("upsert provider user: %w", err)
		}
		return nil
	})
}

// SetProviderUserState sets the state of provider user name, dropping its
// credential when dropCredential is set. It returns ErrNotFound for an
// unknown name.
func (s *Store) SetProviderUserState(ctx context.Context, name, state string, dropCredential bool) error {
	if err := s.writable("set provider user state"); err != nil {
		return err
	}
	if state != ProviderActive && state != ProviderNeedsLogin {
		return fmt.Errorf("set provider user state: unknown state %q", state)
	}
	return s.write(ctx, "set provider user state", func(w *writeTx) error {
		q := `UPDATE provider_users SET state = ?, state_changed = ? WHERE name = ?`
		if dropCredential {
			q = `UPDATE provider_users SET state = ?, state_changed = ?, credential = NULL WHERE name = ?`
		}
		res, err := w.ExecContext(w.ctx, q, state, fmtTime(s.now().UTC()), name)
		if err != nil {
			return fmt.Errorf("update provider user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("provider user %q: %w", name, ErrNotFound)
		}
		return nil
	})
}

// DropProviderCredentials removes every kept credential (a switch to
// credentials = "session") and returns how many there were.
func (s *Store) DropProviderCredentials(ctx context.Context) (int, error) {
	if err := s.writable("drop provider credentials"); err != nil {
		return 0, err
	}
	var n int64
	err := s.write(ctx, "drop provider credentials", func(w *writeTx) error {
		res, err := w.ExecContext(w.ctx, `UPDATE provider_users SET credential = NULL WHERE credential IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("update provider users: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// ProviderUsers returns every provider user, ascending by name.
func (s *Store) ProviderUsers(ctx context.Context) ([]ProviderUser, error) {
	var out []ProviderUser
	err := s.read(ctx, "list provider users", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT name, credential, state, created, last_login, state_changed
			FROM provider_users ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanProviderUser(rows)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, err
}

// ProviderUserByName returns the provider user called name, or ErrNotFound.
func (s *Store) ProviderUserByName(ctx context.Context, name string) (ProviderUser, error) {
	var u ProviderUser
	err := s.read(ctx, "provider user by name", func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, `SELECT name, credential, state, created, last_login, state_changed
			FROM provider_users WHERE name = ?`, name)
		var err error
		u, err = scanProviderUser(row)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("provider user %q: %w", name, ErrNotFound)
		}
		return err
	})
	return u, err
}

func scanProviderUser(row interface{ Scan(...any) error }) (ProviderUser, error) {
	var (
		u                  ProviderUser
		created            string
		lastLogin, changed sql.NullString
	)
	if err := row.Scan(&u.Name, &u.Credential, &u.State, &created, &lastLogin, &changed); err != nil {
		return ProviderUser{}, err
	}
	var err error
	if u.Created, err = parseTime(created); err != nil {
		return ProviderUser{}, err
	}
	if u.LastLogin, err = parseNullTime(lastLogin); err != nil {
		return ProviderUser{}, err
	}
	if u.StateChanged, err = parseNullTime(changed); err != nil {
		return ProviderUser{}, err
	}
	return u, nil
}

// DeleteUser deletes the user called name with all their mail (every
// mailbox, message and subscription), the ledger and status of accounts
// (the accounts that delivered to them) and their provider_users row. It
// changes nothing upstream. It returns ErrNotFound when neither the user
// nor a provider_users row exists.
func (s *Store) DeleteUser(ctx context.Context, name string, accounts []string) error {
	if err := s.writable("delete user"); err != nil {
		return err
	}
	return s.write(ctx, "delete user", func(w *writeTx) error {
		found := false
		u, err := userByName(w.ctx, w, name)
		switch {
		case err == nil:
			found = true
			if err := s.deleteUserMail(w, u.ID); err != nil {
				return err
			}
			if _, err := w.ExecContext(w.ctx, `DELETE FROM users WHERE id = ?`, u.ID); err != nil {
				return fmt.Errorf("delete user row: %w", err)
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		res, err := w.ExecContext(w.ctx, `DELETE FROM provider_users WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete provider user: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			found = true
		}
		if !found {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		for _, a := range accounts {
			if _, err := w.ExecContext(w.ctx, `DELETE FROM pop_ledger WHERE account = ?`, a); err != nil {
				return fmt.Errorf("delete ledger of %q: %w", a, err)
			}
			if _, err := w.ExecContext(w.ctx, `DELETE FROM account_status WHERE account = ?`, a); err != nil {
				return fmt.Errorf("delete status of %q: %w", a, err)
			}
		}
		return nil
	})
}

// deleteUserMail expunges every message of user u's mailboxes (their
// bytes go when no other mailbox refers to them) and deletes the
// mailboxes.
func (s *Store) deleteUserMail(w *writeTx, u UserID) error {
	rows, err := w.QueryContext(w.ctx, `SELECT name FROM mailboxes WHERE user_id = ?`, u)
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		mb, err := mailboxByName(w.ctx, w, u, n)
		if err != nil {
			return err
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
		if _, err := w.ExecContext(w.ctx, `DELETE FROM mailboxes WHERE id = ?`, mb.ID); err != nil {
			return fmt.Errorf("delete mailbox row: %w", err)
		}
		w.emit(Change{Kind: ChangeMailboxDeleted, User: u, Mailbox: mb.ID, MailboxName: mb.Name, ModSeq: mb.HighestModSeq + 1})
	}
	return nil
}
