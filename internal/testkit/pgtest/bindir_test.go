package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakePrograms creates dir holding executable files named progs.
func fakePrograms(t *testing.T, dir string, progs ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range progs {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBinDirPrefersNewestCompleteDebianVersion(t *testing.T) {
	root := t.TempDir()
	fakePrograms(t, filepath.Join(root, "9.6", "bin"), "initdb", "postgres", "psql")
	fakePrograms(t, filepath.Join(root, "13", "bin"), "initdb", "postgres", "psql")
	fakePrograms(t, filepath.Join(root, "17", "bin"), "initdb", "postgres") // server without its client
	path := filepath.Join(root, "local")
	fakePrograms(t, path, "initdb", "postgres", "psql")
	t.Setenv("PATH", path)

	debianRoot = root
	t.Cleanup(func() { debianRoot = DebianRoot })
	if got, err := BinDir(); err != nil || got != filepath.Join(root, "13", "bin") {
		t.Errorf("BinDir = %q, %v; want the 13 directory (17 lacks psql, PATH comes last)", got, err)
	}

	debianRoot = filepath.Join(root, "none")
	if got, err := BinDir(); err != nil || got != path {
		t.Errorf("without Debian's directories: BinDir = %q, %v; want %s from PATH", got, err, path)
	}

	t.Setenv("PATH", t.TempDir())
	if got, err := BinDir(); err == nil {
		t.Errorf("nothing installed: BinDir = %q, want an error", got)
	}
}

// recordTB records how Start ended the test instead of ending the real one.
type recordTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartSkipsOrFailsWhenMissing(t *testing.T) {
	debianRoot = filepath.Join(t.TempDir(), "none")
	t.Cleanup(func() { debianRoot = DebianRoot })
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		name                  string
		requirePG, requireAll string
		wantFail              bool
	}{
		{"nothing required", "", "", false},
		{"POPBRIDGE_REQUIRE_POSTGRES=1", "1", "", true},
		{"POPBRIDGE_REQUIRE_DOVECOT=1", "", "1", true},
		{"both 0", "0", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.requirePG)
			t.Setenv(RequireAllEnv, tc.requireAll)
			rec := &recordTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(rec, Options{})
				t.Errorf("Start returned a server with nothing installed")
			}()
			<-done
			if rec.failed != tc.wantFail || rec.skipped == tc.wantFail {
				t.Errorf("skipped %v, failed %v; want failed %v", rec.skipped, rec.failed, tc.wantFail)
			}
			if !strings.Contains(rec.msg, "postgresql") {
				t.Errorf("message %q does not say what to install", rec.msg)
			}
		})
	}
}
