package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) verify(ctx context.Context, args []string) int {
	f := a.newFlags("verify", "-config FILE [-repair]", "Check the store: the database, every pack record's checksum, every message's bytes; "+
		"report damaged messages by user, mailbox and UID")
	config := f.String("config", "", "configuration `file` (required)")
	repair := f.Bool("repair", false, "fetch damaged messages again from their upstream accounts, move the rest to the Damaged mailbox (serve must be stopped)")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	cfg, ok := a.loadConfig("verify", *config, log)
	if !ok {
		return exitFailure
	}
	res, err := bridge.Verify(ctx, cfg, log, bridge.VerifyOptions{Repair: *repair})
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge verify: %v\n", err)
		return exitFailure
	}
	a.printVerify(&res.Report)
	for _, r := range res.Repairs {
		where := entries(r.Entries)
		if r.Err != nil {
			fmt.Fprintf(a.stdout, "repair failed: message %d (%s): %v\n", r.Message, where, r.Err)
			continue
		}
		fmt.Fprintf(a.stdout, "repaired: message %d (%s): %s\n", r.Message, where, r.Done)
	}
	if res.After != nil {
		fmt.Fprintln(a.stdout, "after repair:")
		a.printVerify(res.After)
	}
	if !res.OK() {
		if !*repair && len(res.Report.Damaged) > 0 {
			fmt.Fprintln(a.stdout, "stop popbridge serve and run popbridge verify -repair to repair damaged messages")
		}
		return exitFailure
	}
	return exitOK
}

// printVerify prints a verify report.
func (a *app) printVerify(r *bridge.VerifyReport) {
	for _, l := range r.Integrity {
		fmt.Fprintf(a.stdout, "database: %s\n", l)
	}
	if len(r.Integrity) > 0 {
		fmt.Fprintln(a.stdout, "database: damaged; restore data_dir from a backup (docs/OPERATIONS.md)")
	}
	for _, p := range r.Packs {
		fmt.Fprintf(a.stdout, "pack: %s\n", p)
	}
	if r.Unpacked > 0 {
		fmt.Fprintf(a.stdout, "messages: %d not moved into packs yet (run popbridge serve once)\n", r.Unpacked)
	}
	for _, d := range r.Damaged {
		what := "search texts"
		if d.Bytes {
			what = "message bytes"
		}
		fmt.Fprintf(a.stdout, "damaged: %s: %s of message %d (%d bytes): %v\n", entries(d.Entries), what, d.Message, d.Size, d.Err)
	}
	status := "ok"
	if !r.OK() {
		status = "DAMAGED"
	}
	fmt.Fprintf(a.stdout, "verify: %s: %d messages checked, %d damaged, %d pack problems, %d database problems\n",
		status, r.Messages, len(r.Damaged), len(r.Packs), len(r.Integrity))
}

// entries formats where a message is filed: "alice INBOX UID 3, …".
func entries(es []bridge.MailboxEntry) string {
	if len(es) == 0 {
		return "in no mailbox"
	}
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("user %s mailbox %q UID %d", e.User, e.Mailbox, e.UID))
	}
	return strings.Join(parts, ", ")
}
