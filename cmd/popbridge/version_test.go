package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var out, errb bytes.Buffer
		a := &app{stdout: &out, stderr: &errb}
		if code := a.run(context.Background(), args); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		got := strings.TrimSpace(out.String())
		if !strings.HasPrefix(got, "popbridge ") || !strings.Contains(got, runtime.Version()) || strings.Contains(got, "\n") {
			t.Errorf("%v printed %q, want one line with the Go version %s", args, got, runtime.Version())
		}
	}
}

func TestFormatVersion(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/popbridge/popbridge", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	want := "popbridge v1.2.3 revision 0123456789abcdef0123456789abcdef01234567+dirty (2026-12-01T10:00:00Z) go1.99.1 " + runtime.GOOS + "/" + runtime.GOARCH
	if got := formatVersion(bi); got != want {
		t.Errorf("formatVersion = %q\nwant            %q", got, want)
	}
	if got := formatVersion(nil); !strings.HasPrefix(got, "popbridge (unknown) "+runtime.Version()) {
		t.Errorf("without build info: %q", got)
	}
}
