package imapfront

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/testenv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fillDisk writes a file into dir until the file system is full and
// returns its path (removing it frees the space).
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill disk: %v", err)
			}
			return p
		}
	}
}

// TestDiskFullIsOverQuota: on a full disk, APPEND, CREATE and STORE answer
// NO [OVERQUOTA] with a sentence (never SERVERBUG), nothing stored before
// is lost, no empty pack is left, and once space is back everything works.
func TestDiskFullIsOverQuota(t *testing.T) {
	disk := testenv.SmallDisk(t, "8m")
	dir := filepath.Join(disk, "data")
	e := newEnvDir(t, dir, nil)
	e.appendAll("alice", "alpha", "beta")
	c := e.rawSelected("alice", "INBOX")
	filler := fillDisk(t, disk)

	big := strings.Repeat("x", 64<<10)
	msg := "Subject: full\r\n\r\n" + big + "\r\n"
	ic := e.client("alice")
	err := appendMsg(ic, msg)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeOverQuota || len(ie.Text) < 20 {
		t.Errorf("APPEND on a full disk: %v, want NO [OVERQUOTA] and a sentence", err)
	}
	// Database writes fail the same way once SQLite needs a page it
	// can't get; each answer is OK (space still held by SQLite) or
	// OVERQUOTA, and some are OVERQUOTA.
	quota := 0
	for i := range 200 {
		for _, cmd := range []string{"CREATE folder" + strings.Repeat("x", 200) + string(rune('a'+i%26)) + strings.Repeat("y", i), "STORE 1:* +FLAGS (kw" + strings.Repeat("z", i) + ")"} {
			_, st := c.cmd("%s", cmd)
			switch {
			case strings.HasPrefix(st, "NO [OVERQUOTA] "):
				quota++
			case strings.HasPrefix(st, "OK"), strings.HasPrefix(st, "NO [ALREADYEXISTS]"):
			default:
				t.Fatalf("%s on a full disk: %q", strings.Fields(cmd)[0], st)
			}
		}
		if quota >= 2 {
			break
		}
	}
	if quota == 0 {
		t.Errorf("no database write failed on a full disk")
	}

	// Space back: the mail is all there and writes work again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := appendMsg(ic, msg); err != nil {
		t.Fatalf("APPEND once space is back: %v", err)
	}
	c.ok("NOOP") // learns of the new message
	lines := grep(c.ok("UID FETCH 1:* (UID BODY.PEEK[])"), " FETCH (")
	if len(lines) != 3 || !strings.Contains(lines[0], "alpha") || !strings.Contains(lines[1], "beta") {
		t.Errorf("after the disk was full: %d messages %q", len(lines), lines)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "blobs", "pack-*"))
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			t.Errorf("empty pack %s left behind", p)
		}
	}
}

// appendMsg APPENDs msg to INBOX with imapclient.
func appendMsg(c *imapclient.Client, msg string) error {
	w := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_, err := w.Wait()
	return err
}
