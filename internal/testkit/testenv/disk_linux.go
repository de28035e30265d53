package testenv

import (
	"os"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size (as mount(8) takes it: "4m") on a new
// directory and returns it, for disk-full tests. Where it cannot mount one
// (not root, no tmpfs) the test is skipped, or failed when
// POPBRIDGE_REQUIRE_DOVECOT=1 or CI=true (CI runs as root and must not skip
// it silently). The file system is unmounted after the test's later
// cleanups, so a store opened on it must be closed by then.
func SmallDisk(tb testing.TB, size string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		msg := "disk-full test needs a small tmpfs mount (root on Linux): " + err.Error()
		if os.Getenv("POPBRIDGE_REQUIRE_DOVECOT") == "1" || os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
