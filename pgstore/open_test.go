package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// testOpenConcurrently opens four stores on a fresh database at once: one
// migrates, the others wait for it, and the schema is applied once.
func testOpenConcurrently(t *testing.T, e *env) {
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(context.Background(), e.dsn, Options{NodeName: fmt.Sprint("n", i)})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Psql(t, e.db, "SELECT count(*), max(version) FROM schema_migrations"); got != fmt.Sprintf("%d|%d", len(ms), len(ms)) {
		t.Errorf("schema_migrations: %s, want %d rows up to version %d", got, len(ms), len(ms))
	}
	// A schema newer than the program is refused, naming the versions.
	e.srv.Psql(t, e.db, "INSERT INTO schema_migrations (version, name) VALUES (999, '0999_future.sql')")
	_, err = Open(context.Background(), e.dsn, Options{NodeName: "old"})
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") {
		t.Errorf("open of a newer schema: err = %v", err)
	}
}

// testOpenErrors checks that Open's errors name the server and never the
// password.
func testOpenErrors(t *testing.T, e *env) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	const secret = "S3cret-Passw0rd"
	dsn := "postgres://popbridge:" + secret + "@" + addr + "/popbridge?sslmode=disable&connect_timeout=5"
	_, err = Open(context.Background(), dsn, Options{NodeName: "a"})
	if err == nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), secret) {
		t.Errorf("unreachable database: err = %v; want ErrUnavailable naming %s without the password", err, addr)
	}
	// A wrong password: refused by the server, named, not repeated.
	u, err := url.Parse(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), secret)
	_, err = Open(context.Background(), u.String(), Options{NodeName: "a"})
	if err == nil || !strings.Contains(err.Error(), u.Host) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("wrong password: err = %v", err)
	}
	if _, err := Open(context.Background(), "postgres://a:"+secret+"@[bad", Options{NodeName: "a"}); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("malformed dsn: err = %v", err)
	}
	// After Close every method says so.
	s := e.open(t, "a")
	s.Close()
	if _, err := s.EnsureUser(context.Background(), "bob"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("after Close: err = %v", err)
	}
	if _, err := s.Users(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("after Close: err = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testLeases(t *testing.T, e *env) {
	ctx := context.Background()
	a, b := e.open(t, "a"), e.open(t, "b")
	la, ok, err := a.AcquireLease(ctx, "acct", time.Hour)
	if err != nil || !ok || la.Holder != "a" || la.Token != 1 || time.Until(la.Expires) < 50*time.Minute {
		t.Fatalf("a acquires: %+v, %v, %v", la, ok, err)
	}
	lb, ok, err := b.AcquireLease(ctx, "acct", time.Hour)
	if err != nil || ok || lb.Holder != "a" {
		t.Errorf("b acquires a held lease: %+v, %v, %v", lb, ok, err)
	}
	again, ok, err := a.AcquireLease(ctx, "acct", 2*time.Hour)
	if err != nil || !ok || again.Token != la.Token || !again.Expires.After(la.Expires) {
		t.Errorf("a re-acquires: %+v, %v, %v", again, ok, err)
	}
	if la, err = a.RenewLease(ctx, again, time.Hour); err != nil || la.Token != again.Token {
		t.Errorf("renew: %+v, %v", la, err)
	}
	if _, err := b.RenewLease(ctx, la, time.Hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b renews a's lease: err = %v", err)
	}
	if err := a.ReleaseLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	lb, ok, err = b.AcquireLease(ctx, "acct", time.Hour)
	if err != nil || !ok || lb.Holder != "b" || lb.Token != la.Token+1 {
		t.Errorf("b after release: %+v, %v, %v", lb, ok, err)
	}
	if _, err := a.RenewLease(ctx, la, time.Hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a renews a released lease: err = %v", err)
	}
	if err := a.ReleaseLease(ctx, la); err != nil {
		t.Errorf("releasing a lost lease: %v", err)
	}
	if l, _, _ := a.AcquireLease(ctx, "acct", time.Hour); l.Holder != "b" {
		t.Errorf("a's late release freed b's lease: %+v", l)
	}

	// Takeover after expiry: b's short lease lapses (the node "died"),
	// then a takes it with a new token and b cannot renew.
	const ttl = 300 * time.Millisecond
	short, ok, err := b.AcquireLease(ctx, "short", ttl)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var took store.Lease
	for {
		if took, ok, err = a.AcquireLease(ctx, "short", time.Hour); err != nil || ok {
			break
		}
		if took.Holder != "b" || took.Token != short.Token {
			t.Fatalf("refused, but the lease is %+v", took)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a never took the expired lease")
		}
		time.Sleep(ttl / 4) // the lease's expiry is the event: time must pass
	}
	// When a took it, by the database's clock (its new expiry less the
	// hour), b's lease had expired: never earlier, however slow the
	// machine.
	if takenAt := took.Expires.Add(-time.Hour); takenAt.Before(short.Expires) {
		t.Errorf("a took the lease at %v, before it expired at %v", takenAt, short.Expires)
	}
	if err != nil || took.Holder != "a" || took.Token != short.Token+1 {
		t.Errorf("takeover: %+v, %v (expired %+v)", took, err, short)
	}
	if _, err := b.RenewLease(ctx, short, time.Hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b renews after takeover: err = %v", err)
	}

	// Many contenders on two nodes: one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := map[string]int{}
	for i := range 10 {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			l, ok, err := s.AcquireLease(ctx, "contended", time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if ok {
				winners[l.Holder]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Errorf("holders of the contended lease: %v, want one node", winners)
	}
	if _, _, err := a.AcquireLease(ctx, "x", 0); err == nil {
		t.Errorf("zero ttl accepted")
	}
}
