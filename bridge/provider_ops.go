package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/popbridge/popbridge/store"
)

// ProviderUserReport is one provider user as `popbridge users` lists it.
type ProviderUserReport struct {
	Name string
	// State is "active" (polled), "needs_login" (the POP server refused the
	// kept password) or, with credentials = "session", "active" too: such
	// users are polled only while logged in.
	State     string
	Created   time.Time
	LastLogin time.Time
	// LastPoll and LastError come from the account's persisted status
	// (zero and "" before the first poll).
	LastPoll  time.Time
	LastError string
	// Messages and Bytes sum every mailbox of the user.
	Messages int64
	Bytes    int64
}

// ProviderUsers opens the store read-only (so it works beside a running
// serve) and lists the provider users, ascending by name.
func ProviderUsers(ctx context.Context, cfg *Config, logger *slog.Logger) ([]ProviderUserReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{readOnly: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	pus, err := st.ProviderUsers(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := st.AccountStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("read account statuses: %w", err)
	}
	byName := make(map[string]store.AccountStatus, len(sts))
	for _, s := range sts {
		byName[s.Account] = s
	}
	out := make([]ProviderUserReport, 0, len(pus))
	for _, pu := range pus {
		r := ProviderUserReport{Name: pu.Name, State: pu.State, Created: pu.Created, LastLogin: pu.LastLogin}
		if s, ok := byName[accountName(pu.Name)]; ok {
			r.LastPoll = s.LastAttempt
			if s.LastErrorAt.After(s.LastSuccess) {
				r.LastError = s.LastError
			}
		}
		u, err := st.UserByName(ctx, pu.Name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read user %q: %w", pu.Name, err)
		}
		if err == nil {
			mbs, err := st.Mailboxes(ctx, u.ID)
			if err != nil {
				return nil, fmt.Errorf("list mailboxes of %q: %w", pu.Name, err)
			}
			for _, mb := range mbs {
				if mb.NoSelect {
					continue
				}
				c, err := st.Counts(ctx, u.ID, mb.ID)
				if err != nil {
					return nil, fmt.Errorf("count %s of %q: %w", mb.Name, pu.Name, err)
				}
				r.Messages += int64(c.Messages)
				r.Bytes += c.Size
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// RemoveProviderUser deletes provider user name's local data: their mail
// and mailboxes, the ledger and status of their account, and their kept
// password. Nothing changes upstream; a later login creates the user
// afresh and fetches what the POP server still holds. It needs the data
// directory to itself (serve stopped): the store's lock says so otherwise.
// A [[user]] name is refused.
func RemoveProviderUser(ctx context.Context, cfg *Config, name string, logger *slog.Logger) error {
	for _, u := range cfg.Users {
		if u.Name == name {
			return fmt.Errorf("%q is a [[user]] in %s, not a provider user: remove it from the file instead", name, cfg.File)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.ProviderUserByName(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%q is not a provider user (see popbridge users)", name)
		}
		return err
	}
	if err := st.DeleteUser(ctx, name, []string{accountName(name)}); err != nil {
		return fmt.Errorf("remove provider user %q: %w", name, err)
	}
	logger.Info("provider user removed", LogKeyUser, name)
	return st.Close()
}
