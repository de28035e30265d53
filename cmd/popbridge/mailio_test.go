package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// maildirMsg is one message file of a test Maildir.
type maildirMsg struct {
	dir, sub, name string // Maildir (relative), "cur" or "new", file name
	raw            string
	date           time.Time
}

func writeMaildir(t *testing.T, root string, msgs []maildirMsg) {
	t.Helper()
	for _, m := range msgs {
		d := filepath.Join(root, m.dir)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(d, m.sub, m.name)
		if err := os.WriteFile(p, []byte(m.raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, m.date, m.date); err != nil {
			t.Fatal(err)
		}
	}
}

// exported reads an export: folder dir -> message bytes -> file name and mtime.
type exportedMsg struct {
	name string
	date time.Time
}

func readExport(t *testing.T, dir string) map[string]map[string]exportedMsg {
	t.Helper()
	out := map[string]map[string]exportedMsg{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) != "cur" {
			return err
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(filepath.Dir(p)))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if out[rel] == nil {
			out[rel] = map[string]exportedMsg{}
		}
		out[rel][string(b)] = exportedMsg{name: d.Name(), date: fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func msgText(subject, body string) string {
	return "From: a@example.com\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@x>\r\n\r\n" + body + "\r\n"
}

// TestImportExportMaildir: a Maildir tree (INBOX, a Maildir++ folder with
// a "." in a level, a plain sub-directory folder) goes in with flags and
// dates, a second import stores nothing, and the export gives back every
// message byte for byte with its flags and date; a second export writes
// nothing, and after a flag change it renames the one file.
func TestImportExportMaildir(t *testing.T) {
	d1 := time.Date(2019, 5, 1, 12, 0, 0, 0, time.UTC)
	d2 := time.Date(2021, 7, 2, 8, 30, 0, 0, time.UTC)
	src := t.TempDir()
	msgs := []maildirMsg{
		{".", "cur", "1556712000.M1.host:2,FS", msgText("seen-flagged", "one"), d1},
		{".", "cur", "1556712001.M2.host:2,", msgText("plain", "two"), d1},
		{".", "new", "1556712002.M3.host", msgText("new", "three"), d2},
		{".", "cur", "1556712003.M4.host:2,S", msgText("plain", "two"), d2}, // a twin of "plain"
		{".Work.v1%2E5", "cur", "1.M5.host:2,RT", msgText("work", "four"), d2},
		{"Lists/go", "cur", "2.M6.host:2,DP", msgText("list", "five"), d1},
	}
	writeMaildir(t, src, msgs)
	cfg := writeConfig(t, t.TempDir())

	code, out, errs := runCmd("import", "-config", cfg, "-user", "alice", src)
	if code != 0 || !strings.Contains(out, "import: read 6 messages, stored 6, already present 0, into INBOX, Lists/go, Work/v1.5") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCmd("import", "-config", cfg, "-user", "alice", src)
	if code != 0 || !strings.Contains(out, "stored 0, already present 6") {
		t.Fatalf("second import: exit %d\n%s%s", code, out, errs)
	}

	dst := t.TempDir()
	code, out, errs = runCmd("export", "-config", cfg, "-user", "alice", dst)
	if code != 0 || !strings.Contains(out, "wrote 6, renamed 0") {
		t.Fatalf("export: exit %d\n%s%s", code, out, errs)
	}
	got := readExport(t, dst)
	want := map[string][]struct {
		raw, info string
		date      time.Time
	}{
		".":            {{msgs[0].raw, ":2,FS", d1}, {msgs[1].raw, ":2,", d1}, {msgs[2].raw, ":2,", d2}},
		".Work.v1%2E5": {{msgs[4].raw, ":2,RT", d2}},
		".Lists.go":    {{msgs[5].raw, ":2,DP", d1}},
	}
	for dir, ms := range want {
		for _, m := range ms {
			e, ok := got[dir][m.raw]
			if !ok {
				t.Errorf("export %s lacks %q", dir, m.raw[:40])
				continue
			}
			if !strings.HasSuffix(e.name, m.info) && !(m.raw == msgs[1].raw) {
				t.Errorf("export %s: %s, want flags %s", dir, e.name, m.info)
			}
			if !e.date.Equal(m.date) && m.raw != msgs[1].raw {
				t.Errorf("export %s: %s dated %v, want %v", dir, e.name, e.date, m.date)
			}
		}
	}
	// The twins: two files with the same bytes, one \Seen.
	var twins []string
	entries, _ := os.ReadDir(filepath.Join(dst, "cur"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dst, "cur", e.Name()))
		if string(b) == msgs[1].raw {
			_, info, _ := strings.Cut(e.Name(), ":2,")
			twins = append(twins, info)
		}
	}
	slices.Sort(twins)
	if !slices.Equal(twins, []string{"", "S"}) {
		t.Errorf("twins exported with flags %q, want \"\" and \"S\"", twins)
	}
	if n := len(got["."]) + len(got[".Work.v1%2E5"]) + len(got[".Lists.go"]); n != 5 || len(entries) != 4 {
		t.Errorf("export holds %d distinct messages (%d files in INBOX), want 5 (4)", n, len(entries))
	}

	code, out, _ = runCmd("export", "-config", cfg, "-user", "alice", dst)
	if code != 0 || !strings.Contains(out, "wrote 0, renamed 0") {
		t.Errorf("second export: exit %d\n%s", code, out)
	}
	// The exported tree imports into another store as the same mail.
	cfg2 := writeConfig(t, t.TempDir())
	if code, out, errs := runCmd("import", "-config", cfg2, "-user", "alice", dst); code != 0 || !strings.Contains(out, "stored 6") {
		t.Fatalf("import of the export: exit %d\n%s%s", code, out, errs)
	}
	dst2 := t.TempDir()
	if code, _, errs := runCmd("export", "-config", cfg2, "-user", "alice", dst2); code != 0 {
		t.Fatalf("export 2: %s", errs)
	}
	again := readExport(t, dst2)
	for dir, ms := range got {
		for raw, e := range ms {
			e2, ok := again[dir][raw]
			if !ok || !e2.date.Equal(e.date) {
				t.Errorf("round trip through a second store lost %s %s", dir, e.name)
				continue
			}
			_, f1, _ := strings.Cut(e.name, ":2,")
			_, f2, _ := strings.Cut(e2.name, ":2,")
			if f1 != f2 && raw != msgs[1].raw {
				t.Errorf("round trip changed flags of %s: %s -> %s", dir, f1, f2)
			}
		}
	}
}

// TestImportMbox: mboxrd and mboxo quoting undone, flags from Status,
// X-Status and X-Mozilla-Status, Thunderbird's expunged message skipped,
// LF line ends stored as CRLF, the From_ date kept; idempotent.
func TestImportMbox(t *testing.T) {
	mbox := "From alice@example.com Thu Nov 26 10:00:00 2026\n" +
		"Subject: one\nStatus: RO\nX-Status: AF\n\nbody\n>From the start\n>>From quoted\n\n" +
		"From bob@example.com Fri Nov 27 11:30:00 2026\n" +
		"Subject: two\nX-Mozilla-Status: 0001\n\nsecond\n\n" +
		"From carol@example.com Sat Nov 28 09:00:00 2026\n" +
		"Subject: gone\nX-Mozilla-Status: 0009\n\nexpunged in Thunderbird\n\n"
	for _, tt := range []struct {
		format, quotedLine string
	}{
		{"mboxrd", ">From quoted"},
		{"mboxo", ">>From quoted"},
	} {
		t.Run(tt.format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Inbox")
			if err := os.WriteFile(path, []byte(mbox), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, t.TempDir())
			args := []string{"import", "-config", cfg, "-user", "alice", "-folder", "Old/Mail", "-mbox", tt.format, path}
			if code, out, errs := runCmd(args...); code != 0 || !strings.Contains(out, "read 2 messages, stored 2") {
				t.Fatalf("import: exit %d\n%s%s", code, out, errs)
			}
			if code, out, _ := runCmd(args...); code != 0 || !strings.Contains(out, "stored 0, already present 2") {
				t.Fatalf("second import:\n%s", out)
			}
			dst := t.TempDir()
			if code, _, errs := runCmd("export", "-config", cfg, "-user", "alice", dst); code != 0 {
				t.Fatal(errs)
			}
			got := readExport(t, dst)[".Old.Mail"]
			one := "Subject: one\r\nStatus: RO\r\nX-Status: AF\r\n\r\nbody\r\nFrom the start\r\n" + tt.quotedLine + "\r\n"
			two := "Subject: two\r\nX-Mozilla-Status: 0001\r\n\r\nsecond\r\n"
			if e, ok := got[one]; !ok || !strings.HasSuffix(e.name, ":2,FRS") ||
				!e.date.Equal(time.Date(2026, 11, 26, 10, 0, 0, 0, time.Local)) {
				t.Errorf("message one: %+v (present %v); export holds %q", e, ok, keys(got))
			}
			if e, ok := got[two]; !ok || !strings.HasSuffix(e.name, ":2,S") {
				t.Errorf("message two: %+v (present %v)", e, ok)
			}
			if len(got) != 2 {
				t.Errorf("export holds %d messages, want 2 (the expunged one skipped)", len(got))
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestImportBesideServe: import needs the store for writing and says how
// to proceed while serve holds it; export works beside serve.
func TestImportBesideServe(t *testing.T) {
	src := t.TempDir()
	writeMaildir(t, src, []maildirMsg{{".", "new", "1.M1.h", msgText("x", "y"), time.Now()}})
	cfg := writeConfig(t, t.TempDir())
	r := start(t, "serve", "-config", cfg)
	defer r.stop(t)
	code, _, errs := runCmd("import", "-config", cfg, "-user", "alice", src)
	if code != 1 || !strings.Contains(errs, "stop the service (systemctl stop popbridge), import, then start it again") {
		t.Errorf("import beside serve: exit %d\n%s", code, errs)
	}
	if code, out, errs := runCmd("export", "-config", cfg, "-user", "alice", t.TempDir()); code != 0 || !bytes.Contains([]byte(out), []byte("export: 0 messages")) {
		t.Errorf("export beside serve: exit %d\n%s%s", code, out, errs)
	}
}
