package imapfront

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAlertText(t *testing.T) {
	if got := alertText("  two\r\nlines\x00 "); got != "two  lines " {
		t.Errorf("alertText = %q", got)
	}
	long := alertText(strings.Repeat("é", 300)) // 600 bytes
	if len(long) > 400 || !utf8.ValidString(long) {
		t.Errorf("cut to %d bytes, valid UTF-8 %v", len(long), utf8.ValidString(long))
	}
}
