package imapfront

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// commandLog records OnCommand calls.
type commandLog struct {
	mu    sync.Mutex
	calls []string // "NAME ok" or "NAME NO"
}

func (l *commandLog) on(name string, d time.Duration, err error) {
	res := "ok"
	if err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			res = "non-imap-error"
		} else {
			res = string(ie.Type)
		}
	}
	if d < 0 {
		res = "negative-duration"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, name+" "+res)
}

func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

// TestOnCommand runs commands over the wire and checks the names and
// results the hook receives, in order.
func TestOnCommand(t *testing.T) {
	var log commandLog
	e := newEnv(t, func(o *Options) { o.OnCommand = log.on })
	e.deliver("alice", "INBOX", msg("one"))
	e.deliver("alice", "INBOX", msg("two"))
	c := e.rawLogin("alice")
	steps := []struct {
		name string
		cmd  string
		want []string
	}{
		{"login", "", []string{"LOGIN ok"}},
		{"examine", "EXAMINE INBOX", []string{"EXAMINE ok"}},
		{"select while selected", "SELECT INBOX", []string{"UNSELECT ok", "SELECT ok"}},
		{"missing mailbox", "STATUS Nope (MESSAGES)", []string{"STATUS NO"}},
		{"fetch", "FETCH 1 FLAGS", []string{"FETCH ok"}},
		{"uid fetch", "UID FETCH 1:* FLAGS", []string{"UID FETCH ok"}},
		{"uid search", "UID SEARCH ALL", []string{"UID SEARCH ok"}},
		{"search", "SEARCH ALL", []string{"SEARCH ok"}},
		{"uid store", "UID STORE 1 +FLAGS (\\Seen)", []string{"UID STORE ok"}},
		{"copy", "COPY 1 INBOX", []string{"COPY ok"}},
		{"uid move", "UID MOVE 1 Trash", []string{"UID MOVE ok"}},
		{"list", "LIST \"\" *", []string{"LIST ok"}},
		{"noop is imapserver's", "NOOP", nil},
		{"capability is imapserver's", "CAPABILITY", nil},
		{"uid expunge", "UID EXPUNGE 1:*", []string{"UID EXPUNGE ok"}},
		{"close", "CLOSE", []string{"EXPUNGE ok", "UNSELECT ok"}},
		{"create", "CREATE Box", []string{"CREATE ok"}},
		{"namespace", "NAMESPACE", []string{"NAMESPACE ok"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.cmd != "" {
				c.cmd("%s", s.cmd)
			}
			if got := log.take(); !slices.Equal(got, s.want) {
				t.Errorf("%q reported %q, want %q", s.cmd, got, s.want)
			}
		})
	}
	// IDLE is reported when it ends.
	c.ok("SELECT INBOX")
	log.take()
	c.idle()
	c.done()
	if got := log.take(); !slices.Equal(got, []string{"IDLE ok"}) {
		t.Errorf("IDLE reported %q", got)
	}
	// A failed login is reported with its NO.
	c2 := e.raw()
	if _, st := c2.cmd("LOGIN alice wrong"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("bad login answered %q", st)
	}
	if got := log.take(); !slices.Equal(got, []string{"LOGIN NO"}) {
		t.Errorf("failed LOGIN reported %q", got)
	}
}
