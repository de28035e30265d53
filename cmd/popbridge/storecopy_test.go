package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testkit/pgtest"
)

// mailboxView is what an IMAP client keeps of a mailbox to resynchronise:
// UIDVALIDITY, and each UID with its flags.
type mailboxView struct {
	validity uint32
	flags    map[imap.UID]string
}

func viewInbox(t *testing.T, addr string) mailboxView {
	t.Helper()
	c := dialIMAP(t, addr, "alice", "alicepw", nil)
	defer c.Close()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	v := mailboxView{validity: sel.UIDValidity, flags: map[imap.UID]string{}}
	var all imap.UIDSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		v.flags[m.UID] = fmt.Sprint(m.Flags)
	}
	return v
}

// TestStoreCopyRoundTrip: a SQLite store is copied to PostgreSQL and back.
// Each copy serves the same UIDVALIDITY, UIDs and flags, and a poll of the
// copy fetches nothing again (the ledger came along). A copy into a store
// that is not empty, or from a store a serve holds, is refused.
func TestStoreCopyRoundTrip(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{NoFsync: true})
	up := newUpstream(t, "bob", "bobpw", 6, 800)
	dir := t.TempDir()
	for _, d := range []string{"one", "pg", "two"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sqlite1 := writeConfig(t, filepath.Join(dir, "one"), acct{name: "main", up: up, username: "bob", password: "bobpw"})
	if code, _, errs := runCmd("poll", "-config", sqlite1); code != 0 {
		t.Fatalf("poll: %s", errs)
	}
	r := start(t, "serve", "-config", sqlite1)
	addr := r.b.Addrs().IMAP.String()
	c := dialIMAP(t, addr, "alice", "alicepw", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "$Label1"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := viewInbox(t, addr)

	pgCfg := writeConfig(t, filepath.Join(dir, "pg"), acct{name: "main", up: up, username: "bob", password: "bobpw"})
	appendStore(t, pgCfg, fmt.Sprintf("\n[store]\nbackend = \"postgres\"\ndsn = %q\nnode_name = \"n1\"\n", srv.DSN()))

	// The source is served: refused, the serve holds its data directory.
	code, _, errs := runCmd("store-copy", "-from", sqlite1, "-to", pgCfg)
	if code == 0 || !strings.Contains(errs, "stop it") {
		t.Fatalf("store-copy from a served store: exit %d, %s", code, errs)
	}
	r.stop(t)

	code, out, errs := runCmd("store-copy", "-from", sqlite1, "-to", pgCfg)
	if code != 0 {
		t.Fatalf("store-copy sqlite -> postgres: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "6 messages") || !strings.Contains(out, "verified:") {
		t.Fatalf("store-copy output:\n%s", out)
	}
	checkCopy := func(cfg string) {
		t.Helper()
		if code, out, errs := runCmd("poll", "-config", cfg); code != 0 || !strings.Contains(out, "fetched 0 messages") {
			t.Fatalf("poll of the copy: exit %d\n%s%s", code, out, errs)
		}
		r := start(t, "serve", "-config", cfg)
		got := viewInbox(t, r.b.Addrs().IMAP.String())
		r.stop(t)
		if got.validity != want.validity || fmt.Sprint(got.flags) != fmt.Sprint(want.flags) {
			t.Fatalf("copy %s serves UIDVALIDITY %d %v, the original %d %v", cfg, got.validity, got.flags, want.validity, want.flags)
		}
	}
	checkCopy(pgCfg)

	// Into a store that is not empty: refused, nothing written.
	if code, _, errs := runCmd("store-copy", "-from", sqlite1, "-to", pgCfg); code == 0 || !strings.Contains(errs, "not empty") {
		t.Fatalf("store-copy into a non-empty store: exit %d, %s", code, errs)
	}
	// And back into a new SQLite store.
	sqlite2 := writeConfig(t, filepath.Join(dir, "two"), acct{name: "main", up: up, username: "bob", password: "bobpw"})
	if code, out, errs := runCmd("store-copy", "-from", pgCfg, "-to", sqlite2); code != 0 {
		t.Fatalf("store-copy postgres -> sqlite: exit %d\n%s%s", code, out, errs)
	}
	checkCopy(sqlite2)
	if got := len(up.Messages()); got != 6 {
		t.Errorf("%d messages upstream, want the 6 kept there", got)
	}
	// The same store on both sides: refused before anything is opened.
	if code, _, errs := runCmd("store-copy", "-from", sqlite2, "-to", sqlite2); code == 0 || !strings.Contains(errs, "same store") {
		t.Fatalf("store-copy onto itself: exit %d, %s", code, errs)
	}
}

// appendStore appends text to the config file path.
func appendStore(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
