package bridge

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// PermProblem is a data file or directory that group or others can access.
type PermProblem struct {
	Path string
	Mode fs.FileMode // permission bits found
	Fix  string      // the command that fixes it, e.g. "chmod 600 /srv/data/popbridge.db"
}

// CheckDataPerms returns the entries of the data directory dir that group or
// others can access: dir itself and its blobs directory (which should be
// 0700), the database files (popbridge.db, its -wal and -shm, the lock
// file), the message packs (blobs/pack-*) and the self-signed certificate
// files (which should be 0600). Missing files are not problems.
// Paths are made absolute, so the fixes work from any directory.
func CheckDataPerms(dir string) ([]PermProblem, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	var out []PermProblem
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("check data directory permissions: %w", err)
	}
	if p := fi.Mode().Perm(); p&0o077 != 0 {
		out = append(out, PermProblem{Path: dir, Mode: p, Fix: "chmod 700 " + shellQuote(dir)})
	}
	blobs := filepath.Join(dir, "blobs")
	if fi, err := os.Lstat(blobs); err == nil && fi.IsDir() {
		if p := fi.Mode().Perm(); p&0o077 != 0 {
			out = append(out, PermProblem{Path: blobs, Mode: p, Fix: "chmod 700 " + shellQuote(blobs)})
		}
	}
	var files []string
	for _, pat := range []string{"popbridge.db*", "popbridge.lock", "blobs/pack-*", AutoCertFile, AutoKeyFile} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("check data directory permissions: %w", err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil || !fi.Mode().IsRegular() {
			continue // gone meanwhile, or not a file of ours
		}
		if p := fi.Mode().Perm(); p&0o077 != 0 {
			out = append(out, PermProblem{Path: f, Mode: p, Fix: "chmod 600 " + shellQuote(f)})
		}
	}
	return out, nil
}

// warnDataPerms logs one warning per entry of the data directory that
// group or others can access.
func warnDataPerms(log *slog.Logger, dir string) {
	probs, err := CheckDataPerms(dir)
	if err != nil {
		log.Warn("could not check data directory permissions", "err", err)
		return
	}
	for _, p := range probs {
		log.Warn("data directory or file is accessible by group or others: other local users may read the mail",
			"path", p.Path, "mode", fmt.Sprintf("%#o", p.Mode), "fix", p.Fix)
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '.' || r == '-' || r == '_') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
