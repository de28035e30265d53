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
	"github.com/popbridge/popbridge/store"
)

func (a *app) status(ctx context.Context, args []string) int {
	f := a.newFlags("status", "-config FILE [-json]", "Show the last poll, its result and counts per account, and mailbox counts per user")
	config := f.String("config", "", "configuration `file` (required)")
	asJSON := f.Bool("json", false, "print JSON (for scripts and monitoring) instead of tables")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	cfg, ok := a.loadConfig("status", *config, log)
	if !ok {
		return exitFailure
	}
	// ReadStatus opens the store read-only: it works while serve runs.
	rep, err := bridge.ReadStatus(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge status: %v\n", err)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(a.stderr, "popbridge status: no data in %s yet: run popbridge serve or popbridge poll first\n", cfg.Path(cfg.DataDir))
		}
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statusJSON(rep)); err != nil {
			fmt.Fprintf(a.stderr, "popbridge status: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tUSER\tLAST POLL\tRESULT\tFETCHED\tBYTES\tSKIPPED\tON SERVER")
	for _, r := range rep.Accounts {
		user := r.User
		if user == "" {
			user = "(not configured)"
		}
		if !r.Polled {
			fmt.Fprintf(tw, "%s\t%s\tnever\t-\t0\t0\t0\t-\n", r.Name, user)
			continue
		}
		s := r.Status
		result := "ok"
		if failing(s) {
			result = "error (below)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", r.Name, user, ago(s.LastAttempt, now), result,
			s.Fetched, formatBytes(s.FetchedBytes), s.Skipped, s.UpstreamCount)
	}
	tw.Flush()
	for _, r := range rep.Accounts {
		if r.Polled && failing(r.Status) {
			fmt.Fprintf(a.stdout, "\n%s: last poll failed %s:\n  %s\n", r.Name, ago(r.Status.LastErrorAt, now), r.Status.LastError)
		}
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tMAILBOX\tMESSAGES\tUNSEEN\tSIZE")
	for _, u := range rep.Users {
		if len(u.Mailboxes) == 0 {
			fmt.Fprintf(tw, "%s\t(no mailboxes yet)\t\t\t\n", u.Name)
		}
		for _, mb := range u.Mailboxes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", u.Name, mb.Name, mb.Counts.Messages, mb.Counts.Unseen, formatBytes(mb.Counts.Size))
		}
	}
	tw.Flush()
	return exitOK
}

// jsonStatus is the shape of `popbridge status -json`.
type jsonStatus struct {
	Accounts []jsonAccount `json:"accounts"`
	Users    []jsonUser    `json:"users"`
}

type jsonAccount struct {
	Name string `json:"name"`
	// User is "" for an account found in the store but not configured.
	User         string    `json:"user"`
	Polled       bool      `json:"polled"`
	Failing      bool      `json:"failing"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	Fetched      int64     `json:"fetched"`
	FetchedBytes int64     `json:"fetched_bytes"`
	Skipped      int64     `json:"skipped"`
	OnServer     int64     `json:"on_server"`
}

type jsonUser struct {
	Name      string        `json:"name"`
	Mailboxes []jsonMailbox `json:"mailboxes"`
}

type jsonMailbox struct {
	Name     string `json:"name"`
	Messages uint32 `json:"messages"`
	Unseen   uint32 `json:"unseen"`
	Size     int64  `json:"size"`
}

func statusJSON(rep *bridge.StatusReport) jsonStatus {
	out := jsonStatus{Accounts: []jsonAccount{}, Users: []jsonUser{}}
	for _, r := range rep.Accounts {
		s := r.Status
		out.Accounts = append(out.Accounts, jsonAccount{
			Name: r.Name, User: r.User, Polled: r.Polled, Failing: r.Polled && failing(s),
			LastAttempt: s.LastAttempt, LastSuccess: s.LastSuccess, LastError: s.LastError, LastErrorAt: s.LastErrorAt,
			Fetched: s.Fetched, FetchedBytes: s.FetchedBytes, Skipped: s.Skipped, OnServer: s.UpstreamCount,
		})
	}
	for _, u := range rep.Users {
		ju := jsonUser{Name: u.Name, Mailboxes: []jsonMailbox{}}
		for _, mb := range u.Mailboxes {
			ju.Mailboxes = append(ju.Mailboxes, jsonMailbox{Name: mb.Name, Messages: mb.Counts.Messages, Unseen: mb.Counts.Unseen, Size: mb.Counts.Size})
		}
		out.Users = append(out.Users, ju)
	}
	return out
}

// failing reports whether the account's last poll failed.
func failing(s store.AccountStatus) bool {
	return s.LastError != "" && !s.LastErrorAt.Before(s.LastSuccess)
}

// ago formats t as "2026-11-26 04:00:00 (3m ago)".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), now.Sub(t).Round(time.Second))
}
