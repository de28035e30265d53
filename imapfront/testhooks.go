package imapfront

import (
	"sync"
	"sync/atomic"
	"time"
)

// testHooks are the seams the package's tests use: fault points that can
// be made to panic, counters of recovered panics and password checks, and
// a shorter idle memory release. They live outside Server, in the manner of
// net/http's testHook variables, so that Server holds only what a running
// server needs. Only tests register hooks (export_test.go); a server without
// hooks pays one atomic load per hook point.
type testHooks struct {
	// fault is called at named points of session methods ("fetch",
	// "fetch-load", "fetch-response", "fetch-end").
	fault func(point string)
	// releaseAfter and freeMemory replace idleMemoryRelease and
	// debug.FreeOSMemory when set.
	releaseAfter time.Duration
	freeMemory   func()
	// Counters: panics recovered (in session methods or by imapserver),
	// password verifications, and verifications against the dummy hash.
	panics, verifies, dummyVerifies atomic.Int64
}

// hookRegistry maps a *Server to its *testHooks; any says whether a test
// has registered one at all.
var hookRegistry struct {
	any atomic.Bool
	m   sync.Map
}

// hooks returns the server's test hooks, or nil (always nil outside tests).
func (s *Server) hooks() *testHooks {
	if !hookRegistry.any.Load() {
		return nil
	}
	h, _ := hookRegistry.m.Load(s)
	th, _ := h.(*testHooks)
	return th
}

// countPanic counts a recovered panic for the tests that assert none
// happened (the log line and SERVERBUG answer are the production record).
func (s *Server) countPanic() {
	if h := s.hooks(); h != nil {
		h.panics.Add(1)
	}
}

// fault calls the test fault hook at point, if one is set.
func (s *session) fault(point string) {
	if h := s.srv.hooks(); h != nil && h.fault != nil {
		h.fault(point)
	}
}
