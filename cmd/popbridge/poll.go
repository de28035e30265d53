package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/bridge"
)

func (a *app) poll(ctx context.Context, args []string) int {
	f := a.newFlags("poll", "-config FILE [-account NAME] [-trace]", "Fetch new mail once from all accounts, or from one, then exit")
	config := f.String("config", "", "configuration `file` (required)")
	account := f.String("account", "", "poll only the account with this `name`")
	trace := f.Bool("trace", false, "log the POP3 exchange of every account polled (passwords and message bodies left out)")
	log, code, ok := a.setup(f, args)
	if !ok {
		return code
	}
	var err error
	cfg, ok := a.loadConfig("poll", *config, log)
	if !ok {
		return exitFailure
	}
	if *trace {
		for i := range cfg.Accounts {
			cfg.Accounts[i].Trace = true
		}
	}
	var bar *progressBar
	var progress func(account string, done, total int)
	if isTerminal(a.stdout) {
		bar = &progressBar{w: a.stdout}
		progress = bar.update
		// Log lines go through the bar, which clears its line first and
		// redraws itself after, so none lands on the bar.
		if log, err = f.logger(bar.logWriter(a.stderr)); err != nil {
			fmt.Fprintf(a.stderr, "popbridge poll: %v\n", err)
			return exitUsage
		}
	}
	start := time.Now()
	results, err := bridge.PollOnce(ctx, cfg, log, *account, progress)
	if bar != nil {
		bar.finish()
	}
	for _, r := range results {
		fmt.Fprintf(a.stdout, "%s: listed %d, fetched %d (%s), skipped %d, deleted %d\n",
			r.Account, r.Listed, r.Fetched, formatBytes(r.Bytes), r.Skipped, r.Deleted)
	}
	if len(results) > 0 || err == nil {
		fmt.Fprintln(a.stdout, summary(results, time.Since(start)))
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "popbridge poll: %v\n", err)
		if hint := lockedHint(err); hint != "" {
			fmt.Fprintf(a.stderr, "popbridge poll: %s\n", hint)
		}
		return exitFailure
	}
	return exitOK
}

// lockedHint explains an error wrapping store.ErrLocked: the data directory
// belongs to a running popbridge (normally `popbridge serve`), which polls
// by itself and polls every account at once on SIGUSR1. It returns "" for
// any other error.
func lockedHint(err error) string {
	dir, pid, ok := bridge.LockHolder(err)
	if !ok {
		return ""
	}
	p := "<pid>"
	if pid > 0 {
		p = strconv.Itoa(pid)
	}
	return fmt.Sprintf("data directory %s belongs to the running popbridge service (pid %s), which polls by itself;\n"+
		"  to make it poll every account now, send it SIGUSR1: kill -USR1 %s\n"+
		"  (under systemd: systemctl kill -s USR1 popbridge)", dir, p, p)
}

// summary is the last line of `popbridge poll`.
func summary(results []bridge.PollResult, elapsed time.Duration) string {
	var t bridge.PollResult
	for _, r := range results {
		t.Fetched += r.Fetched
		t.Skipped += r.Skipped
		t.Deleted += r.Deleted
		t.Bytes += r.Bytes
	}
	return fmt.Sprintf("poll: %d account(s), fetched %d messages (%s), skipped %d, deleted %d in %s",
		len(results), t.Fetched, formatBytes(t.Bytes), t.Skipped, t.Deleted, elapsed.Round(time.Millisecond))
}

func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// progressBar draws "account [#####-----] done/total" on one terminal line.
type progressBar struct {
	w     io.Writer
	mu    sync.Mutex
	drawn bool
	last  time.Time
	line  string // the bar as last drawn, without "\r"
}

func (p *progressBar) update(account string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Redraw at most 20 times a second, and always at the end.
	if done < total && time.Since(p.last) < 50*time.Millisecond {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width
	if total > 0 {
		filled = done * width / total
	}
	p.line = fmt.Sprintf("%-16s [%s%s] %d/%d ", account, strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, total)
	fmt.Fprintf(p.w, "\r%s", p.line)
	p.drawn = true
}

// logWriter returns a writer for log output (to w, the same terminal as
// the bar): while the bar is on screen, each write first clears the bar's
// line, then the bar is drawn again below the log line.
func (p *progressBar) logWriter(w io.Writer) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.drawn || p.line == "" {
			return w.Write(b)
		}
		fmt.Fprint(p.w, "\r\x1b[K")
		n, err := w.Write(b)
		fmt.Fprintf(p.w, "\r%s", p.line)
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
	p.line = "" // log lines from now on go straight through
}
