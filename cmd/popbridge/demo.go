package main

import (
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/internal/demo"
)

func (a *app) demo(ctx context.Context, args []string) int {
	f := a.newFlags("demo", "[-listen ADDR] [-data DIR] [-every DURATION]",
		"Run a sample POP3 server with a few dozen messages and popbridge in front of it; no configuration needed")
	listen := f.String("listen", "127.0.0.1:1143", "IMAP listen `address`")
	data := f.String("data", "", "keep the store in this `directory` (default: a temporary directory removed on exit)")
	every := f.Duration("every", 30*time.Second, "drop a new message upstream this often (0: never)")
	httpListen := f.String("http", "", "serve /healthz and /metrics on this `address` (default: off)")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	if *every == 0 {
		*every = -1 // demo.Options: negative means never
	}
	err := demo.Run(ctx, demo.Options{
		Listen: *listen, HTTPListen: *httpListen, DataDir: *data, Every: *every,
		Out: a.stdout, Logger: log, Started: a.started,
	})
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}
