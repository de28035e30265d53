package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSmallDiskFills checks that the disk SmallDisk gives is as small as
// asked: writing more than its size fails with ENOSPC.
func TestSmallDiskFills(t *testing.T) {
	dir := SmallDisk(t, "1m")
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2<<20), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB to a 1 MiB disk: %v, want ENOSPC", err)
	}
}
