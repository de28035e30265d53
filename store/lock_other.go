//go:build !unix

package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// On systems without flock(2) the data directory is locked against other
// Stores of the same process only; the documentation of Open says so.

var (
	openDirsMu sync.Mutex
	openDirs   = map[string]bool{}
)

// dirLock marks a data directory as open in this process.
type dirLock struct {
	key string
}

// lockDir creates dir (0700) if missing and marks it open, failing with a
// *lockedError (wrapping ErrLocked) if a Store of this process has it open.
func lockDir(dir string, _ *slog.Logger) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	openDirsMu.Lock()
	defer openDirsMu.Unlock()
	if openDirs[key] {
		return nil, &lockedError{dir: dir, pid: os.Getpid()}
	}
	openDirs[key] = true
	return &dirLock{key: key}, nil
}

func (l *dirLock) release() error {
	if l == nil || l.key == "" {
		return nil
	}
	openDirsMu.Lock()
	delete(openDirs, l.key)
	openDirsMu.Unlock()
	l.key = ""
	return nil
}

// lockedError reports a data directory held by another Store.
type lockedError struct {
	dir string
	pid int
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("data directory %s is in use by another popbridge store in this process (pid %d)", e.dir, e.pid)
}

func (e *lockedError) Unwrap() error { return ErrLocked }
