package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) serve(ctx context.Context, args []string) int {
	f := a.newFlags("serve", "-config FILE", "Run the service: poll the upstream accounts, serve IMAP, health and metrics")
	config := f.String("config", "", "configuration `file` (required)")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	cfg, ok := a.loadConfig("serve", *config, log)
	if !ok {
		return exitFailure
	}
	b := bridge.New(cfg, log)
	reload := func() {
		next, err := bridge.Load(*config, log)
		if err != nil {
			log.Error("reload refused; keeping the running configuration", "file", *config, "err", err)
			b.ReloadRefused(err)
			return
		}
		// Reload logs what it changed, or why it refused.
		b.Reload(ctx, next)
	}
	if err := a.runBridge(ctx, b, log, reload); err != nil {
		fmt.Fprintf(a.stderr, "popbridge serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// runBridge runs b until ctx is cancelled, handling SIGHUP with reload and
// SIGUSR1 with an early poll of every account.
func (a *app) runBridge(ctx context.Context, b *bridge.Bridge, log *slog.Logger, reload func()) error {
	sigc := make(chan os.Signal, 4)
	a.notify(sigc, syscall.SIGHUP, syscall.SIGUSR1)
	defer a.stopNotify(sigc)

	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	select {
	case err := <-errc:
		return err // failed to start
	case <-b.Ready():
	}
	if a.started != nil {
		a.started(b)
	}
	return a.signals(sigc, errc, b, log, reload)
}

func (a *app) signals(sigc <-chan os.Signal, errc <-chan error, b *bridge.Bridge, log *slog.Logger, reload func()) error {
	for {
		select {
		case err := <-errc:
			return err
		case sig := <-sigc:
			switch sig {
			case syscall.SIGHUP:
				log.Info("SIGHUP: reloading configuration")
				if reload != nil {
					reload()
				}
			case syscall.SIGUSR1:
				log.Info("SIGUSR1: polling every account now")
				b.PollNow("")
			}
		}
	}
}
