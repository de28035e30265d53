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
	u, err := s.EnsureUser(ctx, "bob")
	if err != nil {
		b.Fatal(err)
	}
	const total, batch = 10000, 1000
	for start := 0; start < total; start += 500 {
		ds := make([]store.Delivery, 0, 500)
		for i := start; i < start+500; i++ {
			ds = append(ds, store.Delivery{Account: "acct", UIDL: fmt.Sprint(i), Digest: fmt.Sprint("d", i), User: "bob",
				Raw: msg(fmt.Sprint("flags ", i), "a short body\n")})
		}
		if _, err := s.Deliver(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	mb, err := s.MailboxByName(ctx, u.ID, store.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, u.ID, mb.ID)
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
					got, err := s.UpdateFlags(ctx, u.ID, mb.ID, all[i:i+batch], op, []string{store.FlagSeen})
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
