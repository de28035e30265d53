package store

import (
	"errors"
	"time"
)

// ErrLeaseLost is wrapped by the error of a lease renewal when the lease
// lapsed (and may have been taken by another node) or was released.
var ErrLeaseLost = errors.New("store: lease lost")

// Lease is a named lease held by one node until Expires: "one poller per
// upstream account, cluster-wide" holds a lease named after the account
// ("account:NAME"). A store shared by several nodes (package pgstore)
// grants them; the embedded SQLite store, on one node, needs none. Expiry
// is judged by the database's clock, so the nodes' clocks need not agree.
type Lease struct {
	Name string
	// Holder is the node name of the store that holds it ("" once
	// released).
	Holder string
	// Expires is when the lease lapses unless renewed (database clock).
	Expires time.Time
	// Left is how long the lease had to run when it was read, by the
	// database's clock (0 when it had already lapsed): how long another
	// node waits before trying to take it, whatever its own clock says.
	Left time.Duration
	// Token increases every time the lease changes hands: a fencing
	// token that tells a holder's writes from a former holder's.
	Token int64
}
