package imapfront

import (
	"regexp"
	"strings"
	"testing"
)

var tagRE = regexp.MustCompile(` \(TAG "[^"]*"\)`)

func TestSearchResults(t *testing.T) {
	env := newEnv(t)
	env.deliverAll("alice", "INBOX", "apple", "banana", "apple pie", "cherry")
	c := env.rawSelected("alice", "INBOX")
	c.ok(`STORE 2 +FLAGS (\Deleted)`)
	c.ok("EXPUNGE") // UIDs 1 3 4 remain, seqs 1 2 3
	tests := []struct{ name, cmd, want string }{
		{"rev1 search", "SEARCH SUBJECT apple", "* SEARCH 1 2"},
		{"rev1 empty", "SEARCH SUBJECT durian", "* SEARCH"},
		{"uid search", "UID SEARCH SUBJECT apple", "* SEARCH 1 3"},
		{"esearch", "SEARCH RETURN (MIN MAX COUNT) SUBJECT apple", "* ESEARCH MIN 1 MAX 2 COUNT 2"},
		{"uid esearch all", "UID SEARCH RETURN (ALL) ALL", "* ESEARCH UID ALL 1,3:4"},
		{"esearch empty", "SEARCH RETURN (COUNT) SUBJECT durian", "* ESEARCH COUNT 0"},
		// imapserver answers RETURN (SAVE) with ALL too.
		{"save", "SEARCH RETURN (SAVE) SUBJECT pie", "* ESEARCH ALL 2"},
		{"fetch saved", "FETCH $ (UID)", "* 2 FETCH (UID 3)"},
		{"search within saved", "UID SEARCH UID $", "* SEARCH 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.ok("%s", tt.cmd)
			for i := range u {
				u[i] = tagRE.ReplaceAllString(u[i], "")
			}
			if strings.Join(u, "|") != tt.want {
				t.Fatalf("%s: %q, want %q", tt.cmd, u, tt.want)
			}
		})
	}
}
