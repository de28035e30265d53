package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeaseLost is returned by RenewLease when the lease expired and
// another node took it, or it was released.
var ErrLeaseLost = errors.New("pgstore: lease lost")

// Lease is a named lease held by one node until Expires: "one poller per
// upstream account, cluster-wide" holds a lease named after the account.
// Expiry is judged by the database's clock, so the nodes' clocks need not
// agree.
type Lease struct {
	Name   string
	Holder string // the node name of the Store that holds it
	// Expires is when the lease lapses unless renewed (database clock).
	Expires time.Time
	// Token increases every time the lease changes hands: a fencing
	// token that tells a holder's writes from a former holder's.
	Token int64
}

// AcquireLease takes the lease name for this node for ttl: it succeeds
// (ok true) when nobody holds it, when it has expired, or when this node
// holds it already (then it is extended, keeping its token). Otherwise ok
// is false and the returned Lease tells who holds it until when.
func (s *Store) AcquireLease(ctx context.Context, name string, ttl time.Duration) (l Lease, ok bool, err error) {
	if ttl <= 0 {
		return Lease{}, false, fmt.Errorf("acquire lease %q: ttl must be positive, not %v", name, ttl)
	}
	err = s.write(ctx, "acquire lease", func(w *wtx) error {
		// One instant, the new expiry less the ttl, is both when the
		// lease is taken and what "expired" is judged against.
		err := w.QueryRow(w.ctx, `INSERT INTO leases AS l (name, holder, expires, token)
			VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), 1)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires,
				token = l.token + CASE WHEN l.holder = excluded.holder THEN 0 ELSE 1 END
			WHERE l.holder = excluded.holder OR l.expires <= excluded.expires - make_interval(secs => $3)
			RETURNING name, holder, expires, token`, name, s.node, ttl.Seconds()).Scan(&l.Name, &l.Holder, &l.Expires, &l.Token)
		if err == nil {
			ok = true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		ok = false
		return w.QueryRow(w.ctx, `SELECT name, holder, expires, token FROM leases WHERE name = $1`, name).Scan(&l.Name, &l.Holder, &l.Expires, &l.Token)
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("lease %q: %w", name, err)
	}
	l.Expires = l.Expires.UTC()
	return l, ok, nil
}

// RenewLease extends l, held by this node, to ttl from now. It fails with
// ErrLeaseLost when l has expired (even if nobody took it meanwhile: a
// holder that let its lease lapse must acquire it again, with a new
// token) or was released.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if ttl <= 0 {
		return Lease{}, fmt.Errorf("renew lease %q: ttl must be positive, not %v", l.Name, ttl)
	}
	out := l
	err := s.write(ctx, "renew lease", func(w *wtx) error {
		return w.QueryRow(w.ctx, `UPDATE leases SET expires = clock_timestamp() + make_interval(secs => $4)
			WHERE name = $1 AND holder = $2 AND token = $3 AND expires > clock_timestamp() RETURNING expires`,
			l.Name, s.node, l.Token, ttl.Seconds()).Scan(&out.Expires)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("renew lease %q: %w", l.Name, ErrLeaseLost)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("lease %q: %w", l.Name, err)
	}
	out.Expires = out.Expires.UTC()
	return out, nil
}

// ReleaseLease gives up l if this node still holds it (with l's token), so
// another node can take it at once. Releasing a lease that was lost is
// not an error.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	err := s.write(ctx, "release lease", func(w *wtx) error {
		_, err := w.Exec(w.ctx, `UPDATE leases SET expires = clock_timestamp() - interval '1 microsecond', holder = ''
			WHERE name = $1 AND holder = $2 AND token = $3`, l.Name, s.node, l.Token)
		return err
	})
	if err != nil {
		return fmt.Errorf("lease %q: %w", l.Name, err)
	}
	return nil
}
