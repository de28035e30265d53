package bridge

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/popbridge/popbridge/store"
)

// TestPollCounting checks that status writes are turned into poll counts:
// one per advance of LastSuccess or LastErrorAt, however often the poller
// writes its status, and none for the state found at start.
func TestPollCounting(t *testing.T) {
	m := newMetrics(New(DefaultConfig(), nil))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.last["a"] = store.AccountStatus{Account: "a", LastSuccess: t0} // persisted before start
	steps := []store.AccountStatus{
		{Account: "a", LastAttempt: t0.Add(time.Minute), LastSuccess: t0},                                                                                // poll started: nothing
		{Account: "a", LastAttempt: t0.Add(time.Minute), LastSuccess: t0.Add(2 * time.Minute)},                                                           // ok
		{Account: "a", LastAttempt: t0.Add(time.Minute), LastSuccess: t0.Add(2 * time.Minute)},                                                           // same again: nothing
		{Account: "a", LastAttempt: t0.Add(3 * time.Minute), LastSuccess: t0.Add(2 * time.Minute), LastErrorAt: t0.Add(4 * time.Minute), LastError: "x"}, // error
		{Account: "b", LastAttempt: t0, LastErrorAt: t0, LastError: "refused"},                                                                           // first write of a new account: error
	}
	for _, st := range steps {
		m.observeStatus(st)
	}
	for _, tt := range []struct {
		account, result string
		want            float64
	}{{"a", "ok", 1}, {"a", "error", 1}, {"b", "error", 1}, {"b", "ok", 0}} {
		var d dto.Metric
		if err := m.polls.WithLabelValues(tt.account, tt.result).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetCounter().GetValue(); got != tt.want {
			t.Errorf("polls{%s,%s} = %v, want %v", tt.account, tt.result, got, tt.want)
		}
	}
}
