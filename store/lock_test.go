//go:build unix

package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const lockChildEnv = "POPBRIDGE_STORE_LOCK_DIR"

func TestOpenLocksDirInProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, lockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("lock file mode %o, want 600", perm)
	}
	s2, err := Open(ctx, dir, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a directory in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("open store: data directory %s is in use by another popbridge store in this process (pid %d)", dir, os.Getpid())
	if err.Error() != want {
		t.Errorf("second Open error\n got %q\nwant %q", err, want)
	}
	// The failed Open must not have disturbed the holder.
	if _, err := s.EnsureUser(ctx, "alice"); err != nil {
		t.Fatalf("holder after refused Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := s3.UserByName(ctx, "alice"); err != nil {
		t.Errorf("reopened store: %v", err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestLockChild is the child of TestOpenLockedByOtherProcess: it opens the
// store, prints "LOCKED", and holds it until its stdin closes.
func TestLockChild(t *testing.T) {
	dir := os.Getenv(lockChildEnv)
	if dir == "" {
		t.Skip("child of TestOpenLockedByOtherProcess only")
	}
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	fmt.Println("LOCKED")
	bufio.NewReader(os.Stdin).ReadString('\n') // EOF when the parent closes stdin
	if err := s.Close(); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	fmt.Println("RELEASED")
}

func TestOpenLockedByOtherProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	child := startChild(t, "TestLockChild", lockChildEnv, dir)
	child.expect("LOCKED")

	_, err := Open(ctx, dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while a child holds the directory: %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("open store: data directory %s is in use by another popbridge process (pid %d)", dir, child.pid())
	if err.Error() != want {
		t.Errorf("error\n got %q\nwant %q", err, want)
	}

	child.stdin.Close()
	child.expect("RELEASED")
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("Open after the child closed: %v", err)
	}
	s.Close()
}

// TestOpenAfterHolderKilled checks that a holder killed with SIGKILL leaves
// no stale lock (the kernel drops flocks with the process).
func TestOpenAfterHolderKilled(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, "TestLockChild", lockChildEnv, dir) // stdin kept open: the child holds on
	child.next("LOCKED")
	child.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	s.Close()
}
