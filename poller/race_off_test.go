//go:build !race

package poller

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = false
