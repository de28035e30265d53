package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// ErrLeaseLost is returned by RenewLease when the lease expired and
// another node took it, or it was released. It is store.ErrLeaseLost.
var ErrLeaseLost = store.ErrLeaseLost

// leftSQL is how long lease row l has to run by the database's clock, in
// seconds (0 once lapsed).
const leftSQL = `EXTRACT(EPOCH FROM GREATEST(l.expires - clock_timestamp(), interval '0'))::float8`

// AcquireLease takes the lease name for this node for ttl: it succeeds
// (ok true) when nobody holds it, when it has expired, or when this node
// holds it already (then it is extended, keeping its token). Otherwise ok
// is false and the returned Lease tells who holds it until when, and how
// long it has left.
func (s *Store) AcquireLease(ctx context.Context, name string, ttl time.Duration) (l store.Lease, ok bool, err error) {
	if ttl <= 0 {
		return store.Lease{}, false, fmt.Errorf("acquire lease %q: ttl must be positive, not %v", name, ttl)
	}
	var left float64
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
			left = ttl.Seconds()
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		ok = false
		return w.QueryRow(w.ctx, `SELECT name, holder, expires, token, `+leftSQL+` FROM leases AS l WHERE name = $1`,
			name).Scan(&l.Name, &l.Holder, &l.Expires, &l.Token, &left)
	})
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("lease %q: %w", name, err)
	}
	l.Expires = l.Expires.UTC()
	l.Left = time.Duration(left * float64(time.Second))
	return l, ok, nil
}

// RenewLease extends l, held by this node, to ttl from now. It fails with
// ErrLeaseLost when l has expired (even if nobody took it meanwhile: a
// holder that let its lease lapse must acquire it again, with a new
// token) or was released.
func (s *Store) RenewLease(ctx context.Context, l store.Lease, ttl time.Duration) (store.Lease, error) {
	if ttl <= 0 {
		return store.Lease{}, fmt.Errorf("renew lease %q: ttl must be positive, not %v", l.Name, ttl)
	}
	out := l
	err := s.write(ctx, "renew lease", func(w *wtx) error {
		return w.QueryRow(w.ctx, `UPDATE leases SET expires = clock_timestamp() + make_interval(secs => $4)
			WHERE name = $1 AND holder = $2 AND token = $3 AND expires > clock_timestamp() RETURNING expires`,
			l.Name, s.node, l.Token, ttl.Seconds()).Scan(&out.Expires)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Lease{}, fmt.Errorf("renew lease %q: %w", l.Name, ErrLeaseLost)
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("lease %q: %w", l.Name, err)
	}
	out.Expires = out.Expires.UTC()
	out.Left = ttl
	return out, nil
}

// RenewLeases extends every lease of ls that this node still holds (same
// name and token, not lapsed) to ttl from now, in one statement: a node
// holding the leases of thousands of accounts renews them all at once. It
// returns the renewed leases; a lease of ls missing from them is lost
// (lapsed, taken by another node, or released). An error means none was
// renewed.
func (s *Store) RenewLeases(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]store.Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew leases: ttl must be positive, not %v", ttl)
	}
	if len(ls) == 0 {
		return nil, nil
	}
	names, tokens := leaseKeys(ls)
	var out []store.Lease
	err := s.write(ctx, "renew leases", func(w *wtx) error {
		out = out[:0]
		rows, err := w.Query(w.ctx, `UPDATE leases AS l SET expires = clock_timestamp() + make_interval(secs => $4)
			FROM unnest($1::text[], $2::bigint[]) AS r(name, token)
			WHERE l.name = r.name AND l.token = r.token AND l.holder = $3 AND l.expires > clock_timestamp()
			RETURNING l.name, l.holder, l.expires, l.token`, names, tokens, s.node, ttl.Seconds())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l store.Lease
			if err := rows.Scan(&l.Name, &l.Holder, &l.Expires, &l.Token); err != nil {
				return err
			}
			l.Expires = l.Expires.UTC()
			l.Left = ttl
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%d leases: %w", len(ls), err)
	}
	return out, nil
}

// ReleaseLease gives up l if this node still holds it (with l's token), so
// another node can take it at once. Releasing a lease that was lost is
// not an error.
func (s *Store) ReleaseLease(ctx context.Context, l store.Lease) error {
	if err := s.ReleaseLeases(ctx, []store.Lease{l}); err != nil {
		return fmt.Errorf("lease %q: %w", l.Name, err)
	}
	return nil
}

// ReleaseLeases gives up, in one statement, every lease of ls this node
// still holds (with its token), so other nodes can take them at once (a
// node stopping cleanly hands its accounts over without waiting for the
// leases to lapse). Leases already lost are skipped.
func (s *Store) ReleaseLeases(ctx context.Context, ls []store.Lease) error {
	if len(ls) == 0 {
		return nil
	}
	names, tokens := leaseKeys(ls)
	return s.write(ctx, "release leases", func(w *wtx) error {
		_, err := w.Exec(w.ctx, `UPDATE leases AS l SET expires = clock_timestamp() - interval '1 microsecond', holder = ''
			FROM unnest($1::text[], $2::bigint[]) AS r(name, token)
			WHERE l.name = r.name AND l.token = r.token AND l.holder = $3`, names, tokens, s.node)
		return err
	})
}

// LookLeases tells who holds each lease of names and how long it has
// left, in one read-only statement (no transaction, no row locked): a node
// waiting for the leases of thousands of accounts other nodes poll asks
// once for all of them, and tries to acquire only those that have lapsed.
// It returns one Lease per name, in the order of names; a name nobody ever
// held comes back with an empty Holder and Left 0, as a lapsed or released
// lease does (Left is by the database's clock, 0 once lapsed).
func (s *Store) LookLeases(ctx context.Context, names []string) ([]store.Lease, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("look leases: %w", store.ErrClosed)
	}
	rows, err := s.pool.Query(ctx, `SELECT r.name, coalesce(l.holder, ''), l.expires, coalesce(l.token, 0), `+leftSQL+`
		FROM unnest($1::text[]) WITH ORDINALITY AS r(name, i) LEFT JOIN leases AS l ON l.name = r.name
		ORDER BY r.i`, names)
	if err != nil {
		return nil, fmt.Errorf("look %d leases: %w", len(names), s.classify(err))
	}
	out := make([]store.Lease, 0, len(names))
	for rows.Next() {
		var (
			l       store.Lease
			expires *time.Time
			left    float64
		)
		if err := rows.Scan(&l.Name, &l.Holder, &expires, &l.Token, &left); err != nil {
			rows.Close()
			return nil, fmt.Errorf("look %d leases: %w", len(names), err)
		}
		if expires != nil {
			l.Expires = expires.UTC()
		}
		l.Left = time.Duration(left * float64(time.Second))
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look %d leases: %w", len(names), s.classify(err))
	}
	return out, nil
}

// leaseKeys returns the names and tokens of ls as two arrays.
func leaseKeys(ls []store.Lease) (names []string, tokens []int64) {
	names = make([]string, len(ls))
	tokens = make([]int64, len(ls))
	for i, l := range ls {
		names[i], tokens[i] = l.Name, l.Token
	}
	return names, tokens
}
