package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) users(ctx context.Context, args []string) int {
	f := a.newFlags("users", "-config FILE [-json] [-remove NAME -yes]", "List the provider users ([provider]): created, last login, last poll, state, message count, bytes; or remove one user's local data")
	config := f.String("config", "", "configuration `file` (required)")
	asJSON := f.Bool("json", false, "print JSON instead of a table")
	remove := f.String("remove", "", "delete this provider `user`'s local data (mail, ledger, kept password; nothing upstream); serve must be stopped")
	yes := f.Bool("yes", false, "confirm -remove")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	cfg, ok := a.loadConfig("users", *config, log)
	if !ok {
		return exitFailure
	}
	if *remove != "" {
		if !*yes {
			fmt.Fprintf(a.stderr, "popbridge users: -remove %s deletes that user's local mail, ledger and kept password (nothing on the POP server); add -yes to do it\n", *remove)
			return exitUsage
		}
		if err := bridge.RemoveProviderUser(ctx, cfg, *remove, log); err != nil {
			fmt.Fprintf(a.stderr, "popbridge users: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(a.stdout, "removed provider user %s (local data only; a new login creates the user again)\n", *remove)
		return exitOK
	}
	users, err := bridge.ProviderUsers(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge users: %v\n", err)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(a.stderr, "popbridge users: no data in %s yet: run popbridge serve first\n", cfg.Path(cfg.DataDir))
		}
		return exitFailure
	}
	if *asJSON {
		type jsonUser struct {
			Name      string     `json:"name"`
			State     string     `json:"state"`
			Created   time.Time  `json:"created"`
			LastLogin *time.Time `json:"last_login"`
			LastPoll  *time.Time `json:"last_poll"`
			LastError string     `json:"last_error,omitempty"`
			Messages  int64      `json:"messages"`
			Bytes     int64      `json:"bytes"`
		}
		opt := func(t time.Time) *time.Time {
			if t.IsZero() {
				return nil
			}
			return &t
		}
		out := make([]jsonUser, 0, len(users))
		for _, u := range users {
			out = append(out, jsonUser{u.Name, u.State, u.Created, opt(u.LastLogin), opt(u.LastPoll), u.LastError, u.Messages, u.Bytes})
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(a.stderr, "popbridge users: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if !cfg.Provider.Enabled() && len(users) == 0 {
		fmt.Fprintln(a.stdout, "provider mode is off ([provider] host is empty) and the store has no provider users")
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSTATE\tCREATED\tLAST LOGIN\tLAST POLL\tMESSAGES\tBYTES")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.Name, u.State, u.Created.Local().Format("2006-01-02 15:04"),
			ago(u.LastLogin, now), ago(u.LastPoll, now), u.Messages, formatBytes(u.Bytes))
	}
	tw.Flush()
	for _, u := range users {
		if u.LastError != "" {
			fmt.Fprintf(a.stdout, "\n%s: last poll failed:\n  %s\n", u.Name, u.LastError)
		}
	}
	return exitOK
}
