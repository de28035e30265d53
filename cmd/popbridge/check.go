package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) check(ctx context.Context, args []string) int {
	f := a.newFlags("check", "-config FILE", "Validate the configuration and try every upstream login (connect, TLS, authenticate, QUIT)")
	config := f.String("config", "", "configuration `file` (required)")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	cfg, ok := a.loadConfig("check", *config, log)
	if !ok {
		return exitFailure
	}
	fmt.Fprintf(a.stdout, "config %s: ok (%d users, %d accounts)\n", *config, len(cfg.Users), len(cfg.Accounts))
	if probs, err := bridge.CheckDataPerms(cfg.Path(cfg.DataDir)); err == nil {
		for _, p := range probs {
			fmt.Fprintf(a.stdout, "warn  data: %s is mode %#o, readable by group or others; fix: %s\n", p.Path, p.Mode, p.Fix)
		}
	}
	if cfg.IMAP.TLSAuto() {
		info, err := cfg.AutoCertificate(log)
		if err != nil {
			fmt.Fprintf(a.stdout, "FAIL  imap tls: %v\n", err)
			return exitFailure
		}
		verb := "self-signed"
		if info.Created {
			verb = "generated self-signed"
		}
		fmt.Fprintf(a.stdout, "imap tls: %s certificate %s (%s, until %s)\n  SHA-256 fingerprint %s\n",
			verb, info.CertFile, strings.Join(info.Names, ", "), info.NotAfter.Format(time.DateOnly), info.Fingerprint)
	}
	if notes, err := bridge.LedgerNotes(ctx, cfg, log); err != nil {
		fmt.Fprintf(a.stdout, "warn  ledger: cannot read the store to check renames: %v\n", err)
	} else {
		for _, n := range notes {
			if n.Orphan() {
				fmt.Fprintf(a.stdout, "note  ledger: %d rows for account %q, which is not configured: if an [[account]] was renamed from %q, add previous_names = [%q] to it, or its mail is fetched again as new\n",
					n.Rows, n.Previous, n.Previous, n.Previous)
				continue
			}
			fmt.Fprintf(a.stdout, "note  rename: account %q takes over the %d ledger rows of %q (previous_names) at the next start; its mail is not fetched again\n",
				n.Account, n.Rows, n.Previous)
		}
	}
	results := bridge.Check(ctx, cfg, log)
	nameW, serverW := 0, 0
	for _, r := range results {
		nameW = max(nameW, len(r.Account))
		serverW = max(serverW, len(r.Server)+len(r.TLS)+3)
	}
	failed := 0
	for _, r := range results {
		server := fmt.Sprintf("%s (%s)", r.Server, r.TLS)
		if r.Err != nil {
			failed++
			fmt.Fprintf(a.stdout, "FAIL  %-*s  %-*s  %v\n", nameW, r.Account, serverW, server, r.Err)
			continue
		}
		what := "login ok"
		if r.Account == bridge.ProviderCheckName {
			what = "server ok (TLS and CAPA; users' logins are checked when they log in)"
		}
		fmt.Fprintf(a.stdout, "ok    %-*s  %-*s  %s in %s\n", nameW, r.Account, serverW, server, what, r.Elapsed.Round(time.Millisecond))
	}
	if failed > 0 {
		fmt.Fprintf(a.stdout, "%d of %d checks failed\n", failed, len(results))
		return exitFailure
	}
	return exitOK
}
