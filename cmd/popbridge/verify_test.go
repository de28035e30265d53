package main

import (
	"bytes"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// damagePack flips a byte of the first occurrence of needle in the pack
// files under dataDir.
func damagePack(t *testing.T, dataDir, needle string) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dataDir, "blobs", "pack-*"))
	for _, p := range packs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte(needle)); i >= 0 {
			data[i+len(needle)/2] ^= 0x20 // "test" -> "TEST": no longer any needle
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%q is in no pack under %s", needle, dataDir)
}

// httpGet returns the status code and body of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestVerifyRepair: in a real store (polled from a POP3 upstream), two
// messages' bytes are damaged. serve answers the rest and counts the
// damage; verify (read-only, beside serve) reports both by user, mailbox
// and UID; verify -repair fetches the one the upstream still has again
// (its digest checked) and replaces the one it lost by a notice in the
// Damaged mailbox; a second verify finds the store sound.
func TestVerifyRepair(t *testing.T) {
	up := newUpstream(t, "bob", "bobpw", 4, 1500)
	originals := up.Messages()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, acct{name: "home", up: up, username: "bob", password: "bobpw", extra: "leave_on_server = true"})
	dataDir := filepath.Join(dir, "data")
	if code, _, errs := runCmd("poll", "-config", cfg); code != 0 {
		t.Fatalf("poll: %d %s", code, errs)
	}
	damagePack(t, dataDir, "Subject: test message 2")
	damagePack(t, dataDir, "Subject: test message 3")
	// The upstream no longer has message 3.
	up.SetMessages([]pop3mem.Message{originals[0], originals[1], originals[3]})

	r := start(t, "serve", "-config", cfg)
	c := dialIMAP(t, r.b.Addrs().IMAP.String(), "alice", "alicepw", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeCorruption {
		t.Errorf("FETCH over damaged messages: %v, want NO [CORRUPTION]", err)
	}
	bodies := 0
	for _, m := range msgs {
		if m.FindBodySection(body) != nil {
			bodies++
		}
	}
	if len(msgs) != 2 || bodies != 2 {
		t.Errorf("FETCH returned %d messages, %d with bodies; want the 2 undamaged", len(msgs), bodies)
	}
	base := "http://" + r.b.Addrs().HTTP.String()
	// Each failed read counts: here the bytes of each of the two (a
	// FETCH of whole bodies lists its messages without parsing them,
	// MetaBrief, so nothing else of theirs is read).
	if _, m := httpGet(t, base+"/metrics"); !strings.Contains(m, `popbridge_store_damaged_reads_total{record="message"} 2`) {
		t.Errorf("/metrics lacks the 2 damaged message reads:\n%s", grepLines(m, "damaged"))
	}
	if code, h := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d with checksum damage only (counted, served around): %s", code, h)
	}
	// verify, read-only, beside serve.
	code, out, errs := runCmd("verify", "-config", cfg)
	if code != 1 || !strings.Contains(out, `damaged: user alice mailbox "INBOX" UID 2: message bytes`) ||
		!strings.Contains(out, `damaged: user alice mailbox "INBOX" UID 3: message bytes`) || !strings.Contains(out, "verify: DAMAGED: 4 messages checked, 2 damaged") {
		t.Errorf("verify beside serve: exit %d\n%s%s", code, out, errs)
	}
	// -repair needs the store to itself.
	if code, _, errs := runCmd("verify", "-config", cfg, "-repair"); code != 1 || !strings.Contains(errs, "stop popbridge serve") {
		t.Errorf("verify -repair beside serve: exit %d: %s", code, errs)
	}
	r.stop(t)

	code, out, errs = runCmd("verify", "-config", cfg, "-repair")
	t.Logf("verify -repair:\n%s", out)
	if code != 0 || !strings.Contains(out, `fetched again from account "home"`) ||
		!strings.Contains(out, "not recoverable") || !strings.Contains(out, "moved to Damaged from INBOX UID 3") ||
		!strings.Contains(out, "after repair:\nverify: ok: 4 messages checked, 0 damaged") {
		t.Fatalf("verify -repair: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCmd("verify", "-config", cfg); code != 0 || !strings.Contains(out, "verify: ok") {
		t.Errorf("verify after repair: exit %d\n%s", code, out)
	}

	// The restored message is byte for byte the original; the lost one is
	// a notice in Damaged.
	r = start(t, "serve", "-config", cfg)
	c = dialIMAP(t, r.b.Addrs().IMAP.String(), "alice", "alicepw", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.UIDSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].FindBodySection(body), originals[1].Raw) {
		t.Errorf("UID 2 after repair: %v, want the original bytes", err)
	}
	if _, err := c.Select("Damaged", nil).Wait(); err != nil {
		t.Fatalf("select Damaged: %v", err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(msgs) != 1 || !strings.HasPrefix(msgs[0].Envelope.Subject, "[damaged] ") ||
		!strings.Contains(string(msgs[0].FindBodySection(body)), `account "home" no longer has it`) {
		t.Errorf("the notice in Damaged: %v %d messages", err, len(msgs))
		for _, m := range msgs {
			t.Logf("%+v\n%s", m.Envelope, m.FindBodySection(body))
		}
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// corruptIndexRoot overwrites the header of the root page of index in the
// database of dataDir (serve stopped) with an impossible one.
func corruptIndexRoot(t *testing.T, dataDir, index string) {
	t.Helper()
	path := filepath.Join(dataDir, "popbridge.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = ?`, index).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0x0a, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}

// TestHealthzReportsStoreDamage: a deleted pack (found at start) and a
// malformed database page (found when a command reads it) make /healthz
// fail and popbridge_store_damaged 1, while serve goes on answering
// everything else; verify reports both.
func TestHealthzReportsStoreDamage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, dataDir string)
		// hit makes the server read the damage (nil: found at start).
		hit     func(t *testing.T, c *imapclient.Client)
		healthz string
		verify  string
	}{
		{"deleted pack", func(t *testing.T, dataDir string) {
			if err := os.Remove(filepath.Join(dataDir, "blobs", "pack-00000001")); err != nil {
				t.Fatal(err)
			}
		}, nil, "pack 1 (pack-00000001) is missing", "pack: pack 1 (pack-00000001) is missing"},
		{"malformed database page", func(t *testing.T, dataDir string) {
			corruptIndexRoot(t, dataDir, "mailbox_messages_message")
		}, func(t *testing.T, c *imapclient.Client) {
			if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			err := c.Expunge().Close()
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeCorruption {
				t.Errorf("EXPUNGE over a malformed page: %v, want NO [CORRUPTION]", err)
			}
		}, "database file is corrupt", "database: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, "bob", "bobpw", 3, 1000)
			dir := t.TempDir()
			cfg := writeConfig(t, dir, acct{name: "home", up: up, username: "bob", password: "bobpw", extra: "leave_on_server = true"})
			if code, _, errs := runCmd("poll", "-config", cfg); code != 0 {
				t.Fatalf("poll: %d %s", code, errs)
			}
			tt.damage(t, filepath.Join(dir, "data"))
			r := start(t, "serve", "-config", cfg)
			c := dialIMAP(t, r.b.Addrs().IMAP.String(), "alice", "alicepw", nil)
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if tt.hit != nil {
				tt.hit(t, c)
			}
			base := "http://" + r.b.Addrs().HTTP.String()
			if code, h := httpGet(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(h, tt.healthz) {
				t.Errorf("/healthz: %d %s; want 503 naming %q", code, h, tt.healthz)
			}
			if _, m := httpGet(t, base+"/metrics"); !strings.Contains(m, "popbridge_store_damaged 1") {
				t.Errorf("/metrics: %s", grepLines(m, "damaged"))
			}
			// Still serving what is not damaged.
			if _, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true, RFC822Size: true}).Collect(); err != nil {
				t.Errorf("FETCH FLAGS beside the damage: %v", err)
			}
			if code, out, errs := runCmd("verify", "-config", cfg); code != 1 || !strings.Contains(out, tt.verify) || !strings.Contains(out, "verify: DAMAGED") {
				t.Errorf("verify: exit %d\n%s%s", code, out, errs)
			}
		})
	}
}
