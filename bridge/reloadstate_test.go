package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricValue returns the value of the unlabelled series name in a
// Prometheus text exposition.
func metricValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("metrics lack %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReloadVisibility: a refused reload shows in /metrics and /healthz
// (without making the bridge unhealthy) until a reload succeeds.
func TestReloadVisibility(t *testing.T) {
	cfg := testConfig(t)
	b := New(cfg, nil)
	before := time.Now()
	run(t, b)
	base := "http://" + b.Addrs().HTTP.String()
	ctx := context.Background()

	_, m := get(t, base+"/metrics")
	if v := metricValue(t, m, "popbridge_config_last_reload_successful"); v != 1 {
		t.Errorf("after start: last_reload_successful = %v, want 1", v)
	}
	startTS := metricValue(t, m, "popbridge_config_last_reload_success_timestamp_seconds")
	if startTS < float64(before.Unix()) || startTS > float64(time.Now().Unix()+1) {
		t.Errorf("after start: success timestamp %v, want the start time (~%d)", startTS, before.Unix())
	}
	if st := metricValue(t, m, "popbridge_start_time_seconds"); st != startTS {
		t.Errorf("popbridge_start_time_seconds = %v, want %v", st, startTS)
	}

	bad := testConfig(t)
	bad.DataDir = cfg.DataDir
	bad.Users = nil
	bad.Accounts = []AccountConfig{DefaultAccount()} // no name, host, user: invalid
	if _, err := b.Reload(ctx, bad); err == nil {
		t.Fatal("invalid reload accepted")
	}
	_, m = get(t, base+"/metrics")
	if v := metricValue(t, m, "popbridge_config_last_reload_successful"); v != 0 {
		t.Errorf("after a refused reload: last_reload_successful = %v, want 0", v)
	}
	if v := metricValue(t, m, "popbridge_config_last_reload_success_timestamp_seconds"); v != startTS {
		t.Errorf("after a refused reload: success timestamp moved from %v to %v", startTS, v)
	}
	code, body := get(t, base+"/healthz")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if code != 200 || !h.OK || h.Config.LastReloadSuccessful || h.Config.LastReloadError == "" {
		t.Errorf("healthz after a refused reload: %d %s", code, body)
	}

	// A file that does not load at all (serve calls ReloadRefused).
	b.ReloadRefused(fmt.Errorf("config.toml:3: bad"))
	_, body = get(t, base+"/healthz")
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Config.LastReloadError != "config.toml:3: bad" {
		t.Errorf("healthz after ReloadRefused: %s", body)
	}

	good := testConfig(t)
	good.DataDir = cfg.DataDir
	if _, err := b.Reload(ctx, good); err != nil {
		t.Fatal(err)
	}
	_, m = get(t, base+"/metrics")
	if v := metricValue(t, m, "popbridge_config_last_reload_successful"); v != 1 {
		t.Errorf("after a good reload: last_reload_successful = %v, want 1", v)
	}
	if v := metricValue(t, m, "popbridge_config_last_reload_success_timestamp_seconds"); v <= startTS {
		t.Errorf("after a good reload: success timestamp %v, want after %v", v, startTS)
	}
	_, body = get(t, base+"/healthz")
	h = Health{}
	if err := json.Unmarshal([]byte(body), &h); err != nil || !h.Config.LastReloadSuccessful || h.Config.LastReloadError != "" {
		t.Errorf("healthz after a good reload: %s", body)
	}
}

// TestReloadRelativeConfigNoRestartWarning: with -config relative (and a
// relative data_dir), reloading the same file again and again lists no
// setting as needing a restart.
func TestReloadRelativeConfigNoRestartWarning(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf("data_dir = \"./data\"\n[imap]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[user]]\nname = \"u\"\npassword_hash = %q\n", realHash(t))
	if err := os.WriteFile(filepath.Join(dir, "popbridge.toml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	cfg, err := Load("popbridge.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := New(cfg, nil)
	run(t, b)
	for i := 1; i <= 3; i++ {
		next, err := Load("popbridge.toml", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.Reload(context.Background(), next)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.NeedRestart) != 0 {
			t.Errorf("reload %d: needs restart %v, want nothing (same file)", i, res.NeedRestart)
		}
	}
}

// TestShortPollIntervalWarning: Load warns about an account polling more
// often than once a minute, naming it and the line; not about 1m.
func TestShortPollIntervalWarning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "popbridge.toml")
	conf := fmt.Sprintf("data_dir = \"data\"\n[[user]]\nname = \"u\"\npassword_hash = %q\n"+
		"[[account]]\nname = \"fast\"\nuser = \"u\"\nhost = \"127.0.0.1\"\nusername = \"a\"\npassword_command = \"echo x\"\npoll_interval = \"30s\"\n"+
		"[[account]]\nname = \"ok\"\nuser = \"u\"\nhost = \"127.0.0.2\"\nusername = \"a\"\npassword_command = \"echo x\"\npoll_interval = \"1m\"\n", realHash(t))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	if _, err := Load(path, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "poll_interval is under a minute") || !strings.Contains(out, "account=fast") ||
		!strings.Contains(out, "at="+path+":11") || strings.Contains(out, "account=ok") {
		t.Errorf("warnings:\n%s", out)
	}
}
