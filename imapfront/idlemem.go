package imapfront

import (
	"runtime/debug"
	"time"
)

// Memory after load. A busy server grows its heap for message buffers,
// per-connection write buffers and parsed responses; once the clients have
// left, most of that is garbage, but the Go runtime gives freed pages back
// to the system only gradually, and with the collector's target raised
// (cmd/popbridge sets GOGC=200) the next collection may be far away: RSS
// stayed at its peak long after the last client left. So when the last
// connection closes and none opens for idleMemoryRelease, the server
// empties convCache (bounded by entries, not bytes; cheap to rebuild from
// the store's metadata cache, which is bounded by bytes), the FETCH body
// arenas it keeps (fetcharena.go) and the store's caches
// (Store.ReleaseMemory), collects and returns free memory to the system at
// once.

// idleMemoryRelease is how long the server must have no connection before
// it returns free memory to the system.
const idleMemoryRelease = 10 * time.Second

// noteConnsLocked arms the idle memory release when the last connection
// has closed. Must be called with s.mu held.
func (s *Server) noteConnsLocked() {
	if len(s.conns) != 0 || s.closed {
		return
	}
	s.idleGen++
	gen := s.idleGen
	after, free := idleMemoryRelease, debug.FreeOSMemory
	if h := s.hooks(); h != nil {
		if h.releaseAfter != 0 {
			after = h.releaseAfter
		}
		if h.freeMemory != nil {
			free = h.freeMemory
		}
	}
	time.AfterFunc(after, func() {
		s.mu.Lock()
		idle := len(s.conns) == 0 && s.idleGen == gen
		s.mu.Unlock()
		if !idle {
			return
		}
		s.conv.reset() // rebuilt from the store's cache on the next FETCH
		s.arenas.reset()
		s.opts.Store.ReleaseMemory()
		free()
	})
}
