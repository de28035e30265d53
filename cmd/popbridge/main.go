// Command popbridge turns POP3-only mailboxes into an IMAP service.
//
// Usage:
//
//	popbridge serve  -config FILE                  the service
//	popbridge demo   [-listen ADDR] [-data DIR]    sample upstream + bridge, no config needed
//	popbridge check  -config FILE                  validate config, try each upstream login
//	popbridge poll   -config FILE [-account NAME]  one fetch pass
//	popbridge status -config FILE [-json]          per account and per user state
//	popbridge hash-password [-bcrypt] [-stdin]     read a password, print an argon2id (or bcrypt) hash
//	popbridge import -config FILE -user NAME PATH  a Maildir or mbox into a user's mailboxes
//	popbridge export -config FILE -user NAME DIR   a user's mailboxes as Maildir++
//	popbridge version                              version, VCS revision, Go version (also -version)
//
// Every subcommand takes -log-format text|json and -log-level, and prints
// its flags with -h. Signals (serve, demo): SIGINT/SIGTERM stop gracefully,
// SIGHUP reloads the configuration, SIGUSR1 polls every account now.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/popbridge/popbridge/bridge"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// gcPercent is the garbage collector's target when GOGC is not set: the
// heap is mostly message buffers that live for one group commit, and at
// the default of 100 a full fetch spent about a seventh of its CPU in the
// collector. 200 halves the collections for some 50 MB more peak RSS on a
// 10,000-message first poll (docs/BENCHMARKS.md).
const gcPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default: a second Ctrl-C during
	// the graceful stop ends the process at once.
	context.AfterFunc(ctx, stop)
	a := &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		notify: signal.Notify, stopNotify: signal.Stop,
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is the program with its environment, so tests can run it in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// notify and stopNotify are signal.Notify and signal.Stop; tests
	// inject their own to send SIGHUP and SIGUSR1 without real signals.
	notify     func(c chan<- os.Signal, sig ...os.Signal)
	stopNotify func(c chan<- os.Signal)
	// started, when set, is called with the bridge once serve or demo is
	// running (tests read the listening addresses from it).
	started func(*bridge.Bridge)
}

type command struct {
	name, args, summary string
	run                 func(a *app, ctx context.Context, args []string) int
}

var commands = []command{
	{"serve", "-config FILE", "run the service", (*app).serve},
	{"demo", "[-listen ADDR] [-data DIR] [-every DURATION]", "sample POP3 upstream + bridge, no config needed", (*app).demo},
	{"check", "-config FILE", "validate the config and try every upstream login", (*app).check},
	{"poll", "-config FILE [-account NAME]", "one fetch pass over all or one account", (*app).poll},
	{"status", "-config FILE [-json]", "per account: what it does now (when serve runs), last poll, result, counts; mailbox counts per user", (*app).status},
	{"users", "-config FILE [-json] [-remove NAME -yes]", "list provider users ([provider]), or remove one's local data", (*app).users},
	{"verify", "-config FILE [-repair]", "check the store; -repair re-fetches or quarantines damaged mail", (*app).verify},
	{"hash-password", "[-bcrypt] [-stdin]", "read a password, print an argon2id (or bcrypt) hash for password_hash", (*app).hashPassword},
	{"import", "-config FILE -user NAME [-folder F] PATH", "import a Maildir or an mbox into a user's mailboxes", (*app).importMail},
	{"export", "-config FILE -user NAME DIR", "export a user's mailboxes as a Maildir++ tree", (*app).exportMail},
	{"store-copy", "-from OLD.toml -to NEW.toml", "copy a whole store into an empty one (SQLite <-> PostgreSQL), keeping UIDs and the ledger", (*app).storeCopy},
	{"version", "", "print the version, VCS revision and Go version", (*app).version},
}

func (a *app) usage() {
	fmt.Fprintln(a.stderr, "popbridge: POP3 accounts served as IMAP")
	fmt.Fprintln(a.stderr, "\nUsage:")
	for _, c := range commands {
		fmt.Fprintf(a.stderr, "  popbridge %-14s %-45s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(a.stderr, "\nRun 'popbridge COMMAND -h' for a command's flags.")
}

// run dispatches to a subcommand and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.usage()
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		a.usage()
		return exitOK
	case "-version", "--version":
		return a.version(ctx, args[1:])
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(a, ctx, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "popbridge: unknown command %q\n\n", args[0])
	a.usage()
	return exitUsage
}

// flags is a subcommand's FlagSet with the common logging flags.
type flags struct {
	*flag.FlagSet
	logFormat *string
	logLevel  *string
}

func (a *app) newFlags(name, args, summary string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: popbridge %s %s\n\n%s.\n\nFlags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return &flags{
		FlagSet:   fs,
		logFormat: fs.String("log-format", "text", "log format: text or json"),
		logLevel:  fs.String("log-level", "info", "log level: debug, info, warn or error"),
	}
}

// parse parses args; ok is false when the command should exit with code.
func (f *flags) parse(args []string) (code int, ok bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if f.NArg() > 0 {
		fmt.Fprintf(f.Output(), "popbridge %s: unexpected argument %q\n", f.Name(), f.Arg(0))
		f.Usage()
		return exitUsage, false
	}
	return 0, true
}

// logger builds the slog logger the flags ask for, writing to w.
func (f *flags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*f.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %q is not one of debug, info, warn, error", *f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(*f.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is not one of text, json", *f.logFormat)
}

// setup parses the flags and builds the logger; ok is false when the
// command should exit with code.
func (a *app) setup(f *flags, args []string) (log *slog.Logger, code int, ok bool) {
	if code, ok := f.parse(args); !ok {
		return nil, code, false
	}
	log, err := f.logger(a.stderr)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge %s: %v\n", f.Name(), err)
		return nil, exitUsage, false
	}
	return log, 0, true
}

// loadConfig loads and validates the -config file, printing every problem.
func (a *app) loadConfig(cmd, path string, log *slog.Logger) (*bridge.Config, bool) {
	if path == "" {
		fmt.Fprintf(a.stderr, "popbridge %s: -config FILE is required (start from config.toml.example)\n", cmd)
		return nil, false
	}
	cfg, err := bridge.Load(path, log)
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge %s: configuration is not valid:\n", cmd)
		if ces := bridge.ConfigErrors(err); len(ces) > 0 {
			for _, ce := range ces {
				fmt.Fprintf(a.stderr, "  %v\n", ce)
			}
		} else {
			fmt.Fprintf(a.stderr, "  %v\n", err)
		}
		return nil, false
	}
	return cfg, true
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
