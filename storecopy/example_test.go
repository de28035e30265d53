package storecopy_test

import (
	"context"
	"fmt"
	"log"

	"github.com/popbridge/popbridge/pgstore"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/storecopy"
)

// Both backends are a Source and a Dest.
var (
	_ storecopy.Dest = (*store.Store)(nil)
	_ storecopy.Dest = (*pgstore.Store)(nil)
)

// Moving the embedded store of a stopped popbridge into an empty
// PostgreSQL database.
func ExampleCopy() {
	ctx := context.Background()
	src, err := store.Open(ctx, "/var/lib/popbridge", store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	dst, err := pgstore.Open(ctx, "postgres://popbridge@db.internal/popbridge", pgstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close()
	rep, err := storecopy.Copy(ctx, src, dst, storecopy.Options{
		Progress: func(p storecopy.Progress) { fmt.Printf("\r%s: %d messages", p.Stage, p.Messages) },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n%d users, %d mailboxes, %d messages (%d bytes), %d ledger rows copied and verified\n",
		rep.Users, rep.Mailboxes, rep.Messages, rep.Bytes, rep.LedgerRows)
	for _, d := range rep.Damaged {
		for _, m := range d.Moved {
			fmt.Printf("damaged: %s %s UID %d is now %s UID %d\n", m.User, m.Mailbox, m.UID, store.DamagedMailbox, m.DamagedUID)
		}
	}
}
