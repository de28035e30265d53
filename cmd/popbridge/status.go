package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) status(ctx context.Context, args []string) int {
	f := a.newFlags("status", "-config FILE", "Show per account what it does now (asked of a running serve through [http] listen), its last poll, result and counts, and mailbox counts per user")
	config := f.String("config", "", "configuration `file` (required)")
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
		if s.LastError != "" && !s.LastErrorAt.Before(s.LastSuccess) {
			result = "error: " + s.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", r.Name, user, state, ago(s.LastAttempt, now), result,
			s.Fetched, formatBytes(s.FetchedBytes), s.Skipped, s.UpstreamCount)
	}
	tw.Flush()
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

// ago formats t as "2026-11-26 04:00:00 (3m ago)".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), now.Sub(t).Round(time.Second))
}
