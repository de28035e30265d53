package imapfront

import "testing"

// hooksOf registers (once) and returns the test hooks of s; they are
// dropped when the test ends.
func hooksOf(tb testing.TB, s *Server) *testHooks {
	tb.Helper()
	h := &testHooks{}
	if v, loaded := hookRegistry.m.LoadOrStore(s, h); loaded {
		return v.(*testHooks)
	}
	hookRegistry.any.Store(true)
	tb.Cleanup(func() { hookRegistry.m.Delete(s) })
	return h
}
