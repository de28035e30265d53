package store

import (
	"path/filepath"
	"sync"
	"sync/atomic"
)

// testHooks are the seams the package's tests use: a smaller pack size,
// callbacks after each background compaction and indexing run, no
// background indexer, and a shorter change-feed queue. They live outside Options and Store, so that those
// hold only what a running store needs: tests register hooks for a
// directory before Open (hooks_test.go), and Open looks them up. Outside
// tests the lookup is one atomic load that finds none.
type testHooks struct {
	packMaxBytes int64
	onCompacted  func(retired int, err error)
	onIndexed    func(indexed int, err error)
	noIndexer    bool
	feedQueue    int // overrides DefaultFeedQueue
}

// hookRegistry maps a cleaned directory to its *testHooks; any says
// whether a test has registered one at all.
var hookRegistry struct {
	any atomic.Bool
	m   sync.Map
}

// hooksFor returns the test hooks registered for dir, or nil.
func hooksFor(dir string) *testHooks {
	if !hookRegistry.any.Load() {
		return nil
	}
	h, _ := hookRegistry.m.Load(filepath.Clean(dir))
	th, _ := h.(*testHooks)
	return th
}
