package authlimit_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/popbridge/popbridge/internal/lib/authlimit"
)

// The recommended login flow: take the address's turn, wait out any penalty before checking the
// password (so a fast answer never reveals a right guess), and on failure
// record it and wait again before answering NO.
func Example() {
	// A simulated clock that sleeping advances; leave Now and Sleep nil in
	// production.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := authlimit.New(authlimit.Options{
		Now: func() time.Time { return now },
		Sleep: func(_ context.Context, d time.Duration) error {
			fmt.Println("sleep", d)
			now = now.Add(d)
			return nil
		},
	})
	fp := authlimit.NewFingerprinter()
	errBadLogin := errors.New("invalid credentials")

	login := func(ctx context.Context, addr netip.Addr, user, password string) error {
		release, err := lim.Acquire(ctx, addr) // one attempt per address at a time
		if err != nil {
			return err
		}
		defer release()
		if err := lim.Wait(ctx, addr, user); err != nil {
			return err // client gone or server shutting down
		}
		if password != "right" { // the real password check goes here
			lim.Failure(addr, user, fp.Fingerprint(password))
			if err := lim.Wait(ctx, addr, user); err != nil {
				return err
			}
			return errBadLogin
		}
		lim.Success(addr, user)
		return nil
	}

	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.1")
	fmt.Println(login(ctx, addr, "bob", "guess1"))
	fmt.Println(login(ctx, addr, "bob", "guess2"))
	fmt.Println(login(ctx, addr, "bob", "right"))
	// Output:
	// sleep 2s
	// invalid credentials
	// sleep 4s
	// invalid credentials
	// <nil>
}
