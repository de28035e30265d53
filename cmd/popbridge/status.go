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

func (a *app) status(ctx context.Context, args []string) int {
	f := a.newFlags("status", "-config FILE [-json]", "Show per account what it does now (asked of a running serve through [http] listen), its last poll, result and counts, and mailbox counts per user")
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
	// The running serve, if any, says what each account does right now.
	live, liveErr := bridge.LiveStatus(ctx, cfg)
	now := time.Now()
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tUSER\tNOW\tLAST POLL\tRESULT\tFETCHED\tBYTES\tSKIPPED\tON SERVER")
	for _, r := range rep.Accounts {
		user := r.User
		if user == "" {
			user = "(not configured)"
		}
		state := "-"
		if h, ok := live[r.Name]; ok {
			state = h.State
			if state == "idle" && !h.NextPoll.IsZero() {
				state = "next poll in " + h.NextPoll.Sub(now).Round(time.Second).String()
			}
		}
		if !r.Polled {
			fmt.Fprintf(tw, "%s\t%s\t%s\tnever\t-\t0\t0\t0\t-\n", r.Name, user, state)
			continue
		}
		s := r.Status
		result := "ok"
		if failing(s) {
			result = "error (below)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", r.Name, user, state, ago(s.LastAttempt, now), result,
			s.Fetched, formatBytes(s.FetchedBytes), s.Skipped, s.UpstreamCount)
	}
	tw.Flush()
	for _, r := range rep.Accounts {
		if r.Polled && failing(r.Status) {
			fmt.Fprintf(a.stdout, "\n%s: last poll failed %s:\n  %s\n", r.Name, ago(r.Status.LastErrorAt, now), r.Status.LastError)
		}
	}
	if liveErr != nil {
		fmt.Fprintf(a.stdout, "NOW: no running serve answered (%v)\n", liveErr)
	}
	printAnomalies(a, rep)
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

// printAnomalies lists the accounts whose server did not keep its UIDL
// promises (counts all time), if any.
func printAnomalies(a *app, rep *bridge.StatusReport) {
	header := false
	for _, r := range rep.Accounts {
		an := r.Status.Anomalies
		if an.UIDLReused+an.Renumbered+an.Twins+an.Unproven == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(a.stdout)
			fmt.Fprintln(a.stdout, "Identity anomalies (UIDLs that did not match content; told apart by content, nothing lost):")
			header = true
		}
		fmt.Fprintf(a.stdout, "  %s: UIDL reused %d, renumbered %d, twins %d, kept on server unproven %d\n",
			r.Name, an.UIDLReused, an.Renumbered, an.Twins, an.Unproven)
	}
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
	// Anomalies counts, all time, messages whose UIDL did not match their
	// content (see printAnomalies).
	Anomalies jsonAnomalies `json:"anomalies"`
}

type jsonAnomalies struct {
	UIDLReused int64 `json:"uidl_reused"`
	Renumbered int64 `json:"renumbered"`
	Twins      int64 `json:"twins"`
	Unproven   int64 `json:"unproven"`
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
			Anomalies: jsonAnomalies{s.Anomalies.UIDLReused, s.Anomalies.Renumbered, s.Anomalies.Twins, s.Anomalies.Unproven},
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
func failing(s bridge.AccountStatus) bool {
	return s.LastError != "" && !s.LastErrorAt.Before(s.LastSuccess)
}

// ago formats t as "2026-11-26 04:00:00 (3m ago)".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), now.Sub(t).Round(time.Second))
}
