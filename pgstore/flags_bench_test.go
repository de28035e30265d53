package pgstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// BenchmarkUpdateFlags10k measures UID STORE 1:* +FLAGS (\Seen) and
// -FLAGS (\Seen) over a 10,000-message mailbox as imapfront sends it: in
// batches of 1,000 UIDs, each one UpdateFlags call (one transaction); an
// op is the whole range, alternately adding and removing \Seen. A
// subscriber takes the changes, as imapfront's feed does.
func BenchmarkUpdateFlags10k(b *testing.B) {
	e := benchEnv(b)
	s := benchOpen(b, e, "a")
	ctx := context.Background()
	const total, batch = 10000, 1000
	u, mb, _ := benchInbox(b, s, total, func(i int) []byte { return msg(fmt.Sprint("flags ", i), "a short body\n") })
	snap, err := s.Snapshot(ctx, u, mb.ID)
	if err != nil || len(snap.Entries) != total {
		b.Fatal(len(snap.Entries), err)
	}
	all := uidsOf(snap.Entries)
	sub := s.Subscribe(func(store.Change) {})
	defer sub.Cancel()
	for _, tc := range []struct {
		name string
		op   store.FlagOp
		undo store.FlagOp
	}{{"remove", store.FlagsRemove, store.FlagsAdd}, {"add", store.FlagsAdd, store.FlagsRemove}} {
		b.Run(tc.name, func(b *testing.B) {
			run := func(op store.FlagOp) {
				for i := 0; i < total; i += batch {
					got, err := s.UpdateFlags(ctx, u, mb.ID, all[i:i+batch], op, []string{store.FlagSeen})
					if err != nil || len(got) != batch {
						b.Fatalf("UpdateFlags: %d, %v", len(got), err)
					}
				}
			}
			// Every op changes all 10,000: the undo between runs is
			// not timed.
			for b.Loop() {
				b.StopTimer()
				run(tc.undo)
				b.StartTimer()
				run(tc.op)
			}
		})
	}
}
