package main

import (
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) storeCopy(ctx context.Context, args []string) int {
	f := a.newFlags("store-copy", "-from OLD.toml -to NEW.toml",
		"Copy the whole store of OLD.toml into the empty store of NEW.toml (SQLite to PostgreSQL or back), keeping "+
			"UIDVALIDITY, UIDs, flags, modseqs and the POP ledger, and verify the copy; stop serve on OLD first")
	from := f.String("from", "", "configuration `file` of the store to copy (required)")
	to := f.String("to", "", "configuration `file` of the empty store to copy into (required)")
	if err := f.Parse(args); err != nil {
		return exitUsage
	}
	if *from == "" || *to == "" || f.NArg() != 0 {
		fmt.Fprintln(a.stderr, "popbridge store-copy: need -from OLD.toml and -to NEW.toml")
		f.Usage()
		return exitUsage
	}
	log, err := f.logger(a.stderr)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge store-copy: %v\n", err)
		return exitUsage
	}
	src, ok := a.loadConfig("store-copy", *from, log)
	if !ok {
		return exitFailure
	}
	dst, ok := a.loadConfig("store-copy", *to, log)
	if !ok {
		return exitFailure
	}
	var progress func(bridge.StoreCopyProgress)
	var last time.Time
	if isTerminal(a.stdout) {
		progress = func(p bridge.StoreCopyProgress) {
			if time.Since(last) > 100*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(a.stdout, "\r\x1b[K%s: %d messages (%d MB), %d entries, %d ledger rows", p.Stage, p.Messages, p.Bytes>>20, p.Entries, p.LedgerRows)
			}
		}
	}
	res, err := bridge.StoreCopy(ctx, src, dst, log, progress)
	if progress != nil {
		fmt.Fprint(a.stdout, "\r\x1b[K")
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge store-copy: %v\n", err)
		if lockedHint(err) != "" {
			fmt.Fprintln(a.stderr, "popbridge store-copy: a popbridge serve holds the source's data directory; stop it (systemctl stop popbridge) and copy again")
		}
		return exitFailure
	}
	r := res.Report
	fmt.Fprintf(a.stdout, "store-copy: %s -> %s\n", res.From, res.To)
	fmt.Fprintf(a.stdout, "copied: %d users, %d mailboxes, %d messages (%d bytes), %d entries, %d ledger rows, %d provider users, %d account statuses\n",
		r.Users, r.Mailboxes, r.Messages, r.Bytes, r.Entries, r.LedgerRows, r.ProviderUsers, r.AccountStatuses)
	for _, d := range r.Damaged {
		for _, m := range d.Moved {
			fmt.Fprintf(a.stdout, "damaged: message %d (%s): %s %s UID %d moved to Damaged UID %d\n", d.Message, d.Err, m.User, m.Mailbox, m.UID, m.DamagedUID)
		}
		for _, o := range d.Origins {
			fmt.Fprintf(a.stdout, "damaged: message %d came from account %s, UIDL %q (popbridge verify -repair on the source fetches it again while the server has it)\n", d.Message, o.Account, o.UIDL)
		}
	}
	fmt.Fprintf(a.stdout, "verified: %d mailboxes equal in both stores (UIDVALIDITY, UIDs, flags, modseqs, bytes) in %s; copy took %s\n",
		len(r.PerMailbox), r.Verify.Round(time.Millisecond), r.Duration.Round(time.Millisecond))
	if res.KeyNote != "" {
		fmt.Fprintf(a.stdout, "note: %s\n", res.KeyNote)
	}
	return exitOK
}
