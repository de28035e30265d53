package store

import (
	"path/filepath"
	"testing"
)

// hooked registers h for the store in dir (replacing earlier hooks of that
// directory) until the test ends, and returns dir.
func hooked(tb testing.TB, dir string, h testHooks) string {
	tb.Helper()
	key := filepath.Clean(dir)
	hookRegistry.m.Store(key, &h)
	hookRegistry.any.Store(true)
	tb.Cleanup(func() { hookRegistry.m.Delete(key) })
	return dir
}
