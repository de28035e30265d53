package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) importMail(ctx context.Context, args []string) int {
	f := a.newFlags("import", "-config FILE -user NAME [-folder F] [-mbox mboxrd|mboxo] PATH",
		"Import a Maildir tree or an mbox file into a user's mailboxes, with flags and dates; running it again stores nothing twice")
	config := f.String("config", "", "configuration `file` (required)")
	user := f.String("user", "", "the [[user]] `name` receiving the mail (required)")
	folder := f.String("folder", "", "mailbox for an mbox (default INBOX), or parent `mailbox` of a Maildir's folders")
	mbox := f.String("mbox", bridge.MboxRD, "mbox `variant`: mboxrd (>From lines quoted reversibly) or mboxo")
	if err := f.Parse(args); err != nil {
		return exitUsage
	}
	if f.NArg() != 1 || *user == "" {
		fmt.Fprintln(a.stderr, "popbridge import: need -user NAME and one PATH (a Maildir directory or an mbox file)")
		f.Usage()
		return exitUsage
	}
	log, err := f.logger(a.stderr)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge import: %v\n", err)
		return exitUsage
	}
	cfg, ok := a.loadConfig("import", *config, log)
	if !ok {
		return exitFailure
	}
	opts := bridge.ImportOptions{User: *user, Folder: *folder, Path: f.Arg(0), MboxFormat: *mbox}
	var last time.Time
	if isTerminal(a.stdout) {
		opts.Progress = func(n int) {
			if time.Since(last) > 100*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(a.stdout, "\rread %d messages", n)
			}
		}
	}
	start := time.Now()
	res, err := bridge.Import(ctx, cfg, log, opts)
	if opts.Progress != nil {
		fmt.Fprint(a.stdout, "\r\x1b[K")
	}
	fmt.Fprintf(a.stdout, "import: read %d messages, stored %d, already present %d, into %s in %s\n",
		res.Read, res.Stored, res.Present, strings.Join(res.Folders, ", "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge import: %v\n", err)
		if lockedHint(err) != "" {
			fmt.Fprintln(a.stderr, "popbridge import: the store takes one writer at a time and popbridge serve holds it;")
			fmt.Fprintln(a.stderr, "  stop the service (systemctl stop popbridge), import, then start it again:")
			fmt.Fprintln(a.stderr, "  IMAP clients see the imported mail when they next sync")
		}
		return exitFailure
	}
	return exitOK
}

func (a *app) exportMail(ctx context.Context, args []string) int {
	f := a.newFlags("export", "-config FILE -user NAME DIR",
		"Export every mailbox of a user as a Maildir++ tree with flags (works beside a running serve)")
	config := f.String("config", "", "configuration `file` (required)")
	user := f.String("user", "", "the [[user]] `name` whose mail is exported (required)")
	if err := f.Parse(args); err != nil {
		return exitUsage
	}
	if f.NArg() != 1 || *user == "" {
		fmt.Fprintln(a.stderr, "popbridge export: need -user NAME and one DIR")
		f.Usage()
		return exitUsage
	}
	log, err := f.logger(a.stderr)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge export: %v\n", err)
		return exitUsage
	}
	cfg, ok := a.loadConfig("export", *config, log)
	if !ok {
		return exitFailure
	}
	var progress func(int)
	var last time.Time
	if isTerminal(a.stdout) {
		progress = func(n int) {
			if time.Since(last) > 100*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(a.stdout, "\rwrote %d messages", n)
			}
		}
	}
	start := time.Now()
	res, err := bridge.Export(ctx, cfg, log, *user, f.Arg(0), progress)
	if progress != nil {
		fmt.Fprint(a.stdout, "\r\x1b[K")
	}
	fmt.Fprintf(a.stdout, "export: %d messages in %d mailboxes, wrote %d, renamed %d (flags changed) in %s\n",
		res.Messages, len(res.Folders), res.Written, res.Renamed, time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge export: %v\n", err)
		return exitFailure
	}
	if len(res.Damaged) > 0 {
		fmt.Fprintf(a.stderr, "popbridge export: %d damaged message(s) not written (run popbridge verify): %s\n",
			len(res.Damaged), strings.Join(res.Damaged, ", "))
		return exitFailure
	}
	return exitOK
}
