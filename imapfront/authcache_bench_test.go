package imapfront

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// BenchmarkConcurrentLogins is imapbench's "concurrent" workload in
// miniature: 50 connections at once, each LOGIN (bcrypt cost 10) + SELECT
// + FETCH 1:100 (UID FLAGS) + LOGOUT.
func BenchmarkConcurrentLogins(b *testing.B) {
	hash, err := HashPassword("bench-secret")
	if err != nil {
		b.Fatal(err)
	}
	env := newEnv(b, func(o *Options) {
		o.Users = []User{{Name: "alice", PasswordHash: hash}}
		o.MaxConnsPerAddr = -1
	})
	benchMailbox(b, env, 100)
	const conns = 50
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for range conns {
			wg.Go(func() {
				if err := benchSession(env.addr); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
}

// benchSession runs one connection of BenchmarkConcurrentLogins.
func benchSession(addr string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	for i, cmd := range []string{"LOGIN alice bench-secret", "SELECT INBOX", "FETCH 1:100 (UID FLAGS)", "LOGOUT"} {
		tag := fmt.Sprintf("b%d", i)
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, cmd); err != nil {
			return err
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					return fmt.Errorf("%s: %s", cmd, l)
				}
				break
			}
		}
	}
	return nil
}
