package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
)

// TestPragmasOnEveryConnection opens several connections of each pool at
// once and checks each runs with the durability settings: a kill -9 test
// cannot tell synchronous=NORMAL from FULL in WAL mode.
func TestPragmasOnEveryConnection(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	pools := []struct {
		name  string
		db    *sql.DB
		conns int
	}{
		{"writer", s.wdb, 1},
		{"reader", s.rdb, s.rdb.Stats().MaxOpenConnections},
	}
	for _, p := range pools {
		t.Run(p.name, func(t *testing.T) {
			if p.conns < 1 {
				t.Fatalf("pool allows %d connections", p.conns)
			}
			conns := make([]*sql.Conn, p.conns)
			var wg sync.WaitGroup
			errs := make([]error, p.conns)
			for i := range conns {
				wg.Go(func() { conns[i], errs[i] = p.db.Conn(ctx) })
			}
			wg.Wait()
			for i, c := range conns {
				if errs[i] != nil {
					t.Fatalf("conn %d: %v", i, errs[i])
				}
				defer c.Close()
			}
			if got := p.db.Stats().OpenConnections; got != p.conns {
				t.Fatalf("%d open connections, want %d distinct", got, p.conns)
			}
			for i, c := range conns {
				var (
					sync, fk, busy, autockpt int
					sizeLimit                int64
					journal                  string
				)
				q := func(pragma string, dst any) {
					if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(dst); err != nil {
						t.Fatalf("conn %d: PRAGMA %s: %v", i, pragma, err)
					}
				}
				q("synchronous", &sync)
				q("journal_mode", &journal)
				q("foreign_keys", &fk)
				q("busy_timeout", &busy)
				q("wal_autocheckpoint", &autockpt)
				q("journal_size_limit", &sizeLimit)
				if sync != 2 || strings.ToLower(journal) != "wal" || fk != 1 || busy != busyTimeoutMS {
					t.Errorf("conn %d: synchronous=%d journal_mode=%s foreign_keys=%d busy_timeout=%d; want 2 wal 1 %d",
						i, sync, journal, fk, busy, busyTimeoutMS)
				}
				if autockpt != walAutocheckpointPages || sizeLimit != journalSizeLimit {
					t.Errorf("conn %d: wal_autocheckpoint=%d journal_size_limit=%d; want %d %d",
						i, autockpt, sizeLimit, walAutocheckpointPages, journalSizeLimit)
				}
			}
		})
	}
	if got := s.wdb.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool allows %d connections, want 1", got)
	}
}

// TestReaderIsReadOnly checks a reader connection cannot write.
func TestReaderIsReadOnly(t *testing.T) {
	s := mustOpen(t)
	if _, err := s.rdb.Exec(`INSERT INTO counters (name, value) VALUES ('x', 1)`); err == nil {
		t.Error("write through the reader pool succeeded")
	}
}
