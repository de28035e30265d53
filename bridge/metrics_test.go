package bridge

import (
	"errors"
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/popbridge/popbridge/poller"
	"github.com/popbridge/popbridge/store"
)

// TestPollCounting checks that every finished poll of an account is
// counted once by its result, and that a poll that found the store
// unreachable (not the account's failure) is not counted.
func TestPollCounting(t *testing.T) {
	m := newMetrics(New(DefaultConfig(), nil))
	a, b := poller.Account{Name: "a"}, poller.Account{Name: "b"}
	m.afterPoll(a, poller.Result{}, nil)
	m.afterPoll(a, poller.Result{}, nil)
	m.afterPoll(a, poller.Result{}, errors.New("login refused"))
	m.afterPoll(b, poller.Result{}, fmt.Errorf("deliver: %w", store.ErrUnavailable))
	m.afterPoll(b, poller.Result{}, errors.New("connection reset"))
	for _, tt := range []struct {
		account, result string
		want            float64
	}{{"a", "ok", 2}, {"a", "error", 1}, {"b", "error", 1}, {"b", "ok", 0}} {
		var d dto.Metric
		if err := m.polls.WithLabelValues(tt.account, tt.result).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetCounter().GetValue(); got != tt.want {
			t.Errorf("polls{%s,%s} = %v, want %v", tt.account, tt.result, got, tt.want)
		}
	}
}
