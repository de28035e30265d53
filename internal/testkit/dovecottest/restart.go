package dovecottest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Restart stops Dovecot, lets edit rewrite its configuration (the text of
// dovecot.conf) and starts it again on the same ports, state and mail: as
// an operator changing a setting would. The test fails if it does not come
// back.
func (s *Server) Restart(tb testing.TB, edit func(conf string) string) {
	tb.Helper()
	s.stop()
	confPath := filepath.Join(s.Dir, "dovecot.conf")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		tb.Fatalf("dovecottest: restart: %v", err)
	}
	if err := os.WriteFile(confPath, []byte(edit(string(conf))), 0o644); err != nil {
		tb.Fatalf("dovecottest: restart: %v", err)
	}
	var lastErr error
	for range 3 { // the old master's listeners may linger a moment
		s.cmd = exec.Command(Binary, "-F", "-c", confPath)
		var out bytes.Buffer
		s.cmd.Stdout, s.cmd.Stderr = &out, &out
		s.done = make(chan struct{})
		s.stopOnce = sync.Once{}
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("dovecottest: restart: %v", err)
		}
		done := s.done
		go func() {
			s.waitErr = s.cmd.Wait()
			close(done)
		}()
		if lastErr = s.waitReady(10 * time.Second); lastErr == nil {
			return
		}
		s.stop()
		lastErr = fmt.Errorf("%w\noutput: %s", lastErr, out.String())
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("dovecottest: restart: dovecot did not come back: %v\nlog: %s", lastErr, s.Log())
}
