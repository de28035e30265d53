package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// StuckAfter is how long a poll may run, or a scheduled poll may be
// overdue, before /healthz reports the account's poller as stuck.
const StuckAfter = 15 * time.Minute

// Health is the JSON body of /healthz.
type Health struct {
	// OK is true when the store is writable and no poller is stuck.
	// Upstream failures (a wrong password, a server down) do not make the
	// bridge unhealthy; they are listed per account.
	OK       bool            `json:"ok"`
	Store    HealthCheck     `json:"store"`
	Config   ConfigHealth    `json:"config"`
	Accounts []AccountHealth `json:"accounts"`
}

// ConfigHealth is the outcome of the last configuration reload. A refused
// reload does not make the bridge unhealthy (it keeps running on the
// previous configuration) but shows here until a reload succeeds.
type ConfigHealth struct {
	LastReloadSuccessful bool      `json:"last_reload_successful"`
	LastReloadSuccess    time.Time `json:"last_reload_success,omitzero"`
	LastReloadAttempt    time.Time `json:"last_reload_attempt,omitzero"`
	LastReloadError      string    `json:"last_reload_error,omitempty"`
}

// HealthCheck is the result of one check.
type HealthCheck struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// AccountHealth is one account's line in /healthz.
type AccountHealth struct {
	Account string `json:"account"`
	Stuck   bool   `json:"stuck"`
	Polling bool   `json:"polling"`
	// State is "idle", "polling" or "waiting for a connection slot".
	State       string    `json:"state"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	NextPoll    time.Time `json:"next_poll,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

func (b *Bridge) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", b.serveHealth)
	b.mu.Lock()
	reg := b.metrics.reg
	b.mu.Unlock()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "popbridge: see /healthz and /metrics")
	})
	return mux
}

func (b *Bridge) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	h := b.Health(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(h)
}

// Health checks that the store answers, knows of no damage (database
// corruption seen since start, packs missing or truncated at start: see
// store.Store.Health) and its directory accepts durable writes, and that no
// account's poller is stuck.
func (b *Bridge) Health(ctx context.Context) Health {
	h := Health{OK: true, Store: HealthCheck{OK: true}}
	b.mu.Lock()
	rl := b.reload
	b.mu.Unlock()
	h.Config = ConfigHealth{LastReloadSuccessful: rl.ok, LastReloadSuccess: rl.lastSuccess,
		LastReloadAttempt: rl.lastAttempt, LastReloadError: rl.lastError}
	if err := b.checkStore(ctx); err != nil {
		h.OK = false
		h.Store = HealthCheck{Error: err.Error()}
	}
	now := time.Now()
	for _, s := range b.Status() {
		ah := accountHealth(s, now)
		if ah.Stuck {
			h.OK = false
		}
		h.Accounts = append(h.Accounts, ah)
	}
	return h
}

// accountHealth judges one account's poller: stuck when a poll has run for
// longer than StuckAfter, or a scheduled poll is overdue by that much.
func accountHealth(s poller.Status, now time.Time) AccountHealth {
	return AccountHealth{
		Account: s.Account, Polling: s.Polling, State: s.State(), LastAttempt: s.LastAttempt,
		LastSuccess: s.LastSuccess, NextPoll: s.NextPoll, LastError: s.LastError,
		Stuck: s.Polling && !s.LastAttempt.IsZero() && now.Sub(s.LastAttempt) > StuckAfter ||
			!s.Polling && !s.NextPoll.IsZero() && now.Sub(s.NextPoll) > StuckAfter,
	}
}

// LiveTimeout bounds LiveStatus.
const LiveTimeout = 3 * time.Second

// LiveStatus asks a running `popbridge serve` with configuration cfg for
// its accounts' live state (GET /healthz on [http] listen; an unspecified
// host such as 0.0.0.0 is reached on loopback) and returns it by account
// name. It fails when [http] is disabled or listens on port 0, or when
// nothing answers there (serve not running).
func LiveStatus(ctx context.Context, cfg *Config) (map[string]AccountHealth, error) {
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	switch {
	case cfg.HTTP.Listen == "":
		return nil, errors.New("[http] listen is disabled")
	case err != nil || port == "0":
		return nil, fmt.Errorf("[http] listen %q has no fixed port", cfg.HTTP.Listen)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, LiveTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("live status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("live status from %s: %w", url, err)
	}
	defer resp.Body.Close()
	var h Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&h); err != nil {
		return nil, fmt.Errorf("live status from %s: HTTP %d: %w", url, resp.StatusCode, err)
	}
	out := make(map[string]AccountHealth, len(h.Accounts))
	for _, a := range h.Accounts {
		out[a.Account] = a
	}
	return out, nil
}

// checkStore reads from the store and writes (and fsyncs) a probe file in
// its directory.
func (b *Bridge) checkStore(ctx context.Context) error {
	b.mu.Lock()
	st, cfg := b.store, b.cfg
	b.mu.Unlock()
	if st == nil {
		return fmt.Errorf("store not open")
	}
	if _, err := st.Users(ctx); err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("store unreachable (popbridge reconnects by itself): %w", err)
		}
		return fmt.Errorf("read store: %w", err)
	}
	if err := st.Health(); err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("store unreachable (popbridge reconnects by itself): %w", err)
		}
		return fmt.Errorf("store damaged (stop popbridge and run popbridge verify): %w", err)
	}
	f, err := os.CreateTemp(cfg.Path(cfg.DataDir), ".healthz-*")
	if err != nil {
		return fmt.Errorf("write to data_dir: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.WriteString("ok\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write to data_dir %s: %w", filepath.Dir(name), err)
	}
	return nil
}
