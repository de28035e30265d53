package main

import (
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/poller"
)

func TestProgressBar(t *testing.T) {
	var b strings.Builder
	p := &progressBar{w: &b}
	p.update("work", 0, 4)
	p.update("work", 1, 4) // within 50ms of the last draw: skipped
	p.update("work", 4, 4) // the end is always drawn
	p.finish()
	got := b.String()
	want := "\rwork             [------------------------------] 0/4 " +
		"\rwork             [##############################] 4/4 \n"
	if got != want {
		t.Errorf("progress output\n%q\nwant\n%q", got, want)
	}
	// Nothing drawn, nothing finished.
	var empty strings.Builder
	(&progressBar{w: &empty}).finish()
	if empty.Len() != 0 {
		t.Errorf("finish without updates wrote %q", empty.String())
	}
}

func TestSummary(t *testing.T) {
	got := summary([]poller.Result{{Account: "a", Fetched: 3, Bytes: 2500, Skipped: 1}, {Account: "b", Fetched: 2, Bytes: 1_500_000, Deleted: 2}}, 1234*time.Millisecond)
	want := "poll: 2 account(s), fetched 5 messages (1.5 MB), skipped 1, deleted 2 in 1.234s"
	if got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}
