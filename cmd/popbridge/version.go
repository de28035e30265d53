package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildVersion describes the binary from its build information: the
// module version (a tag when installed with `go install ...@v1.2.3`,
// "(devel)" for a build from a checkout), the VCS revision and time when
// built from a git checkout (with "+dirty" for uncommitted changes), and
// the Go version.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(bi)
}

// formatVersion is buildVersion for the build information bi (nil when
// the binary has none).
func formatVersion(bi *debug.BuildInfo) string {
	version, revision, when, dirty := "(unknown)", "", "", false
	goVersion := runtime.Version()
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := "popbridge " + version
	if revision != "" {
		out += " revision " + revision
		if dirty {
			out += "+dirty"
		}
		if when != "" {
			out += " (" + when + ")"
		}
	}
	return out + " " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func (a *app) version(_ context.Context, args []string) int {
	f := a.newFlags("version", "", "Print the version, VCS revision and Go version of this binary")
	if code, ok := f.parse(args); !ok {
		return code
	}
	fmt.Fprintln(a.stdout, buildVersion())
	return exitOK
}
