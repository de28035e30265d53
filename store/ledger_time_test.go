package store

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestParseStoredTime checks the fast path against parseTime: the same
// time (== holds, location included) or an error for the same inputs.
func TestParseStoredTime(t *testing.T) {
	check := func(s string) {
		t.Helper()
		got, gerr := parseStoredTime(s)
		want, werr := parseTime(s)
		if (gerr != nil) != (werr != nil) || got != want {
			t.Errorf("parseStoredTime(%q) = %v, %v; parseTime: %v, %v", s, got, gerr, want, werr)
		}
	}
	for _, s := range []string{
		"2026-11-26T06:55:19.618013331Z", "0001-01-01T00:00:00.000000000Z", "9999-12-31T23:59:59.999999999Z",
		"2024-02-29T12:00:00.000000000Z", "2025-02-29T12:00:00.000000000Z", "2025-11-31T12:00:00.000000000Z",
		"2025-00-10T12:00:00.000000000Z", "2025-13-10T12:00:00.000000000Z", "2025-01-00T12:00:00.000000000Z",
		"2025-01-10T24:00:00.000000000Z", "2025-01-10T12:60:00.000000000Z", "2025-01-10T12:00:60.000000000Z",
		"2025-01-10T12:00:00.00000000xZ", "2025-01-10 12:00:00.000000000Z", "2025-01-10T12:00:00.000000000+01:00",
		"2025-01-10T12:00:00Z", "+025-01-10T12:00:00.000000000Z", "2025-01-10T12:00:00.000000000z", "",
	} {
		check(s)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		at := time.Unix(r.Int64N(1<<37)-1<<36, r.Int64N(1e9))
		check(at.UTC().Format(timeLayout))
	}
}
