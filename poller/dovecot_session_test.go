package poller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
	"github.com/popbridge/popbridge/internal/testkit/dovecottest"
)

// TestDovecotSession runs the session layer against a real Dovecot POP3
// server: every TLS mode and login mechanism, a wrong password, and a full
// List/Retrieve/Delete/Quit cycle that must remove the mail from the
// Maildir.
func TestDovecotSession(t *testing.T) {
	users := map[string]string{}
	for _, u := range []string{"plain", "stls", "implicit", "authplain", "apop", "cycle", "digest"} {
		users[u] = "pw-" + u
	}
	dc := dovecottest.Start(t, dovecottest.Options{Users: users})
	account := func(user, mode, auth string) Account {
		port := dc.POP3Port
		if mode == "implicit" {
			port = dc.POP3SPort
		}
		return Account{Name: "dc-" + user, Host: dc.Host, Port: port, TLS: mode, TLSCAFile: dc.CAFile,
			Username: user, Secret: secret(users[user]), Auth: auth}
	}
	ctx := context.Background()
	fastConfig := func() sessionConfig {
		c := fastConfig()
		c.DialTimeout, c.IOTimeout, c.SlowWindow = 10*time.Second, 10*time.Second, 10*time.Second
		return c
	}

	logins := []struct{ user, mode, auth string }{
		{"plain", "none", "user"},
		{"stls", "starttls", "user"},
		{"implicit", "implicit", "user"},
		{"authplain", "starttls", "plain"},
		{"apop", "none", "apop"},
	}
	for _, tt := range logins {
		t.Run("login/"+tt.user, func(t *testing.T) {
			msg := []byte(fmt.Sprintf("Subject: %s\nMessage-ID: <%s@test>\n\nhello %s\n.dot line\n", tt.user, tt.user, tt.user))
			dc.AddMessage(t, tt.user, msg)
			s, err := openSession(ctx, account(tt.user, tt.mode, tt.auth), fastConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Abort()
			if !s.Caps().UIDL || !s.Caps().Pipelining || !s.Caps().TOP {
				t.Errorf("caps %+v", s.Caps())
			}
			if tt.mode != "none" && s.Caps().STLS {
				t.Error("STLS still advertised over TLS")
			}
			items, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 1 || items[0].UIDL == "" || items[0].Size != int64(len(pop3mem.Normalize(msg))) {
				t.Fatalf("List = %+v", items)
			}
			var got []byte
			if err := s.Retrieve(ctx, items, 0, func(_ listItem, raw []byte) error { got = raw; return nil }); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pop3mem.Normalize(msg)) {
				t.Errorf("RETR = %q, want %q", got, pop3mem.Normalize(msg))
			}
			if err := s.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("fetch and delete", func(t *testing.T) {
		const n = 150
		want := map[string]bool{}
		for i := range n {
			raw := fmt.Sprintf("Subject: %d\nMessage-ID: <%d@cycle>\n\n%s\n", i, i, strings.Repeat("line\n", i))
			dc.AddMessage(t, "cycle", []byte(raw))
			want[string(pop3mem.Normalize([]byte(raw)))] = true
		}
		s, err := openSession(ctx, account("cycle", "implicit", "plain"), fastConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Abort()
		items, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != n {
			t.Fatalf("listed %d", len(items))
		}
		var nums []int
		err = s.Retrieve(ctx, items, 1<<20, func(it listItem, raw []byte) error {
			if !want[string(raw)] {
				t.Errorf("message %d: unexpected content %q", it.Num, raw)
			}
			delete(want, string(raw))
			nums = append(nums, it.Num)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 0 {
			t.Errorf("%d messages not retrieved", len(want))
		}
		if err := s.Delete(ctx, nums[:100]); err != nil {
			t.Fatal(err)
		}
		if got := dc.Count(t, "cycle"); got != n {
			t.Errorf("DELE took effect before QUIT: %d left", got)
		}
		if err := s.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := dc.Count(t, "cycle"); got != n-100 {
			t.Errorf("after QUIT %d messages left, want %d", got, n-100)
		}
		// A dropped session deletes nothing.
		s2, err := openSession(ctx, account("cycle", "none", "user"), fastConfig())
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Delete(ctx, []int{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		s2.Abort()
		s3, err := openSession(ctx, account("cycle", "none", "user"), fastConfig())
		if err != nil {
			t.Fatal(err)
		}
		items, err = s3.List(ctx)
		if err != nil || len(items) != n-100 {
			t.Errorf("after Abort: %d listed, %v", len(items), err)
		}
		s3.Quit(ctx)
	})

	t.Run("header digests", func(t *testing.T) {
		for i := range 3 {
			dc.AddMessage(t, "digest", []byte(fmt.Sprintf("Subject: same\n\nbody %d\n", i)))
		}
		dc.AddMessage(t, "digest", []byte("Subject: other\n\nbody\n"))
		s, err := openSession(ctx, account("digest", "none", "user"), fastConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Abort()
		d, err := s.HeaderDigests(ctx, []int{1, 2, 3, 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != 4 || d[1] != d[2] || d[2] != d[3] || d[3] == d[4] {
			t.Errorf("digests %v", d)
		}
		if err := s.Quit(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// Last: Dovecot delays every login from an address after a failure.
	t.Run("wrong password", func(t *testing.T) {
		for _, auth := range []string{"user", "plain"} {
			a := account("plain", "starttls", auth)
			a.Secret = secret("not-the-password")
			_, err := openSession(ctx, a, fastConfig())
			ae := asAccountError(t, err)
			if ae.Op != "login" || ae.Temporary || !strings.HasPrefix(ae.Reply, "-ERR [AUTH]") {
				t.Errorf("%s: %#v", auth, ae)
			}
			if want := `account "dc-plain": login: server said "-ERR [AUTH] `; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s: error %q, want prefix %q", auth, err, want)
			}
			if strings.Contains(err.Error(), "not-the-password") {
				t.Errorf("error reveals the password: %v", err)
			}
		}
	})
}

// BenchmarkDovecotRetrieve measures the session layer alone (no store):
// one pipelined List+Retrieve of 1,000 messages of about 50 KB from a real
// Dovecot over loopback, per iteration.
func BenchmarkDovecotRetrieve(b *testing.B) {
	dc := dovecottest.Start(b, dovecottest.Options{})
	body := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\n"), 760)
	const n = 1000
	for i := range n {
		dc.AddMessage(b, dovecottest.DefaultUser, append([]byte(fmt.Sprintf("Subject: %d\nMessage-ID: <%d@bench>\n\n", i, i)), body...))
	}
	a := Account{Name: "bench", Host: dc.Host, Port: dc.POP3Port, TLS: "none",
		Username: dovecottest.DefaultUser, Secret: secret(dovecottest.DefaultPassword), Auth: "user"}
	ctx := context.Background()
	var bytesRead int64
	b.ResetTimer()
	for range b.N {
		s, err := dialSession(ctx, a, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		items, err := s.List(ctx)
		if err != nil || len(items) != n {
			b.Fatal(len(items), err)
		}
		err = s.Retrieve(ctx, items, 50<<20, func(_ listItem, raw []byte) error {
			bytesRead += int64(len(raw))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Quit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.SetBytes(bytesRead / int64(b.N))
}
