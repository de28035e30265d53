//go:build unix

package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFileName is the advisory lock file inside the data directory.
const lockFileName = "popbridge.lock"

// dirLock is the exclusive advisory lock (flock) on dir/popbridge.lock that
// a Store holds from Open to Close. flock locks belong to the open file
// description, so a second Open in the same process conflicts just like one
// in another process, and the kernel drops the lock when the holder dies
// (kill -9 included): a stale lock file never blocks a restart.
type dirLock struct {
	f *os.File
}

// lockDir creates dir (0700) if missing and takes the lock without
// blocking. The lock file (0600) holds the holder's pid, for the message a
// second opener gets. It fails with a *lockedError (wrapping ErrLocked)
// when the lock is held.
func lockDir(dir string, log *slog.Logger) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	// O_CLOEXEC (set by os.OpenFile) keeps child processes from inheriting
	// the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &lockedError{dir: dir, pid: readPid(f)}
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	// The pid only serves a second opener's error message: the lock is
	// held, so failing to record it is logged, not fatal.
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		log.Warn("cannot record pid in lock file", "path", path, "err", err)
	}
	return &dirLock{f: f}, nil
}

// flock calls flock(2), retrying on EINTR.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// release drops the lock. The file is left in place: removing it would let
// a concurrent opener lock a file that a third opener no longer sees.
func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := flock(l.f, syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("release data dir lock: %w", err)
	}
	return nil
}

// readPid returns the pid recorded in the lock file, or 0 if it cannot be
// read (the holder may not have written it yet).
func readPid(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// lockedError reports a data directory held by another Store.
type lockedError struct {
	dir string
	pid int // 0: unknown
}

func (e *lockedError) Error() string {
	var sb strings.Builder
	sb.WriteString("data directory " + e.dir + " is in use by another popbridge ")
	switch {
	case e.pid == os.Getpid():
		sb.WriteString("store in this process (pid " + strconv.Itoa(e.pid) + ")")
	case e.pid > 0:
		sb.WriteString("process (pid " + strconv.Itoa(e.pid) + ")")
	default:
		sb.WriteString("process")
	}
	return sb.String()
}

func (e *lockedError) Unwrap() error { return ErrLocked }
