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
	failed := 0
	for _, r := range bridge.Check(ctx, cfg, log) {
		if r.Err != nil {
			failed++
			fmt.Fprintf(a.stdout, "FAIL  %s  %s (%s): %v\n", r.Account, r.Server, r.TLS, r.Err)
			continue
		}
		fmt.Fprintf(a.stdout, "ok    %s  %s (%s) login ok in %s\n", r.Account, r.Server, r.TLS, r.Elapsed.Round(time.Millisecond))
	}
	if failed > 0 {
		fmt.Fprintf(a.stdout, "%d of %d accounts failed\n", failed, len(cfg.Accounts))
		return exitFailure
	}
	return exitOK
}
