package poller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/popbridge/popbridge/store"
)

// statusFlushEvery is how long an account status whose only change since
// it was last saved is its poll times (LastAttempt, LastSuccess) may wait
// before it is written. A provider's 10,000 users polled every 5 minutes
// make 33 quiet polls a second; writing each one's times in its own durable
// transaction cost a sixth of the process's CPU. Every other change (mail
// fetched, an error, a different upstream count) is written before the
// pass returns, together with whatever waits.
const statusFlushEvery = 5 * time.Second

// statusWriter saves account statuses through the Sink: at once when
// something beyond the poll times changed, otherwise within
// statusFlushEvery, many in one transaction. Writes are serialised and each
// takes the newest pending status of every account, so an older status
// never overwrites a newer one.
type statusWriter struct {
	sink Sink
	log  *slog.Logger
	// every is statusFlushEvery (tests shorten it).
	every time.Duration

	// wmu serialises flushes.
	wmu sync.Mutex

	mu      sync.Mutex
	pending map[string]store.AccountStatus
	saved   map[string]store.AccountStatus // as last written, by account
	timer   *time.Timer
}

// quietChange reports whether next differs from prev in its poll times
// only.
func quietChange(prev, next store.AccountStatus) bool {
	prev.LastAttempt, prev.LastSuccess = next.LastAttempt, next.LastSuccess
	return prev == next
}

// save records st. Unless only its poll times changed since it was last
// written, it is written (with everything pending) before save returns;
// a failed write is logged, and the statuses stay pending for the next
// flush.
func (w *statusWriter) save(ctx context.Context, st store.AccountStatus) {
	w.mu.Lock()
	if w.pending == nil {
		w.pending = map[string]store.AccountStatus{}
		w.saved = map[string]store.AccountStatus{}
	}
	w.pending[st.Account] = st
	prev, ok := w.saved[st.Account]
	if ok && quietChange(prev, st) {
		if w.timer == nil {
			w.timer = time.AfterFunc(w.every, func() { w.flush(context.Background()) })
		}
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.flush(ctx)
}

// flush writes every pending status in one transaction.
func (w *statusWriter) flush(ctx context.Context) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	batch := make([]store.AccountStatus, 0, len(w.pending))
	for _, st := range w.pending {
		batch = append(batch, st)
	}
	clear(w.pending)
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
	defer cancel()
	err := w.sink.SetAccountStatuses(wctx, batch)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.log.Warn("saving account statuses", "accounts", len(batch), "err", err)
		// Kept for the next flush (the next pass's, or the last one at
		// the end of Run or PollOnce), unless a newer status came
		// meanwhile.
		for _, st := range batch {
			if _, newer := w.pending[st.Account]; !newer {
				w.pending[st.Account] = st
			}
		}
		return
	}
	for _, st := range batch {
		w.saved[st.Account] = st
	}
}

// drop forgets account (removed from the poller): a status of it still
// pending is not written, so that it cannot bring back the status of an
// account whose data is being removed or renamed.
func (w *statusWriter) drop(account string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pending, account)
	delete(w.saved, account)
}
