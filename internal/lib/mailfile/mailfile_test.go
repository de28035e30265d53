package mailfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestMaildirFlagsBothWays(t *testing.T) {
	flags := FlagsFromMaildirName("1700000000.M1P2.host,S=120:2,TSRPFD")
	want := []string{`\Draft`, `\Flagged`, `$Forwarded`, `\Answered`, `\Seen`, `\Deleted`}
	if !slices.Equal(flags, want) {
		t.Errorf("flags = %v, want %v", flags, want)
	}
	if got := MaildirInfo(flags); got != ":2,DFPRST" {
		t.Errorf("info = %q, want letters in ASCII order", got)
	}
	if FlagsFromMaildirName("1700000000.M1P2.host") != nil {
		t.Error("a name without info has flags")
	}
}

func TestMaildirPlusNames(t *testing.T) {
	for dir, want := range map[string]string{"Work": "Work", "Work.2024": "Work/2024", "v1%2E5.a%25b": "v1.5/a%b"} {
		if got := maildirPlusName(dir); got != want {
			t.Errorf("maildirPlusName(%q) = %q, want %q", dir, got, want)
		}
	}
}

// TestReadMboxBoundaries: a "From " line only starts a message after a
// blank line (or at the start); the blank line before it is the mbox's;
// CRLF files keep CRLF.
func TestReadMboxBoundaries(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		want       []string
	}{
		{"lf", "From a Thu Nov 26 10:00:00 2026\nSubject: 1\n\nline\nFrom inside, no blank line before\n\nFrom b Thu Nov 26 11:00:00 2026\nSubject: 2\n\nlast\n",
			[]string{"Subject: 1\n\nline\nFrom inside, no blank line before\n", "Subject: 2\n\nlast\n"}},
		{"crlf", "From a Thu Nov 26 10:00:00 2026\r\nSubject: 1\r\n\r\nx\r\n\r\nFrom b Thu Nov 26 11:00:00 2026\r\nSubject: 2\r\n\r\ny\r\n",
			[]string{"Subject: 1\r\n\r\nx\r\n", "Subject: 2\r\n\r\ny\r\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mbox")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			var got []string
			err := ReadMbox(path, "INBOX", MboxRD, func(m Message) error {
				got = append(got, string(m.Raw))
				if m.Date.IsZero() {
					t.Errorf("no date from the From_ line of %q", m.Raw)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("messages\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	notMbox := filepath.Join(t.TempDir(), "x")
	os.WriteFile(notMbox, []byte("Subject: no From_ line\n"), 0o600)
	if err := ReadMbox(notMbox, "INBOX", MboxRD, func(Message) error { return nil }); err == nil {
		t.Error("a file without a From_ line read as an mbox")
	}
}
