// Package mailfile reads and writes the local mail formats popbridge
// imports from and exports to: Maildir (and Maildir++ folders) and mbox
// (mboxrd and mboxo). It knows nothing of the store; bridge moves the
// messages.
package mailfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Message is one message read from a Maildir or an mbox.
type Message struct {
	// Folder is the mailbox name ("INBOX", "Work/2024"), "/"-separated.
	Folder string
	// Raw is the message as found in the file (an mbox message with its
	// From_ line removed and its From-quoting undone).
	Raw []byte
	// Flags are IMAP system flags (`\Seen`, ...) and `$Forwarded`.
	Flags []string
	// Date is the internal date: the Maildir file's modification time, or
	// the date on the mbox From_ line; zero when unknown.
	Date time.Time
	// Source names where it was read, for messages to the user.
	Source string
}

// Maildir flag letters (the ":2," info) and the IMAP flags they stand for.
var maildirFlags = []struct {
	letter byte
	flag   string
}{
	{'D', `\Draft`},
	{'F', `\Flagged`},
	{'P', `$Forwarded`},
	{'R', `\Answered`},
	{'S', `\Seen`},
	{'T', `\Deleted`},
}

// FlagsFromMaildirName returns the IMAP flags of a Maildir file name's
// ":2,<letters>" info; unknown letters are ignored.
func FlagsFromMaildirName(name string) []string {
	_, info, ok := strings.Cut(name, ":2,")
	if !ok {
		return nil
	}
	var out []string
	for _, f := range maildirFlags {
		if strings.IndexByte(info, f.letter) >= 0 {
			out = append(out, f.flag)
		}
	}
	return out
}

// MaildirInfo returns the ":2,<letters>" info for IMAP flags, letters in
// ASCII order as the Maildir specification asks; flags without a letter
// are left out.
func MaildirInfo(flags []string) string {
	var b strings.Builder
	b.WriteString(":2,")
	for _, f := range maildirFlags {
		if slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f.flag) }) {
			b.WriteByte(f.letter)
		}
	}
	return b.String()
}

// isMaildir reports whether dir has cur and new subdirectories.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// maildirPlusName is the mailbox name of a Maildir++ folder directory
// (without its leading "."): levels separated by ".", a "." inside a
// level written %2E and "%" as %25 (as popbridge export writes them).
func maildirPlusName(dir string) string {
	levels := strings.Split(dir, ".")
	for i, l := range levels {
		levels[i] = strings.NewReplacer("%2E", ".", "%2e", ".", "%25", "%").Replace(l)
	}
	return strings.Join(levels, "/")
}

// ReadMaildir calls fn for every message of the Maildir tree at root, in a
// stable order (folder, then file name). root itself is folder base (INBOX
// when base is ""); Maildir++ subfolders (".Work.2024") and plain
// subdirectories that are Maildirs ("Work/2024") become folders below base.
// Files in tmp are not messages yet and are skipped.
func ReadMaildir(root, base string, fn func(Message) error) error {
	if !isMaildir(root) {
		return fmt.Errorf("%s is not a Maildir (no cur and new directories)", root)
	}
	type folder struct{ name, dir string }
	top := base
	if top == "" {
		top = "INBOX"
	}
	folders := []folder{{top, root}}
	join := func(name string) string {
		if base == "" {
			return name
		}
		return base + "/" + name
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("read Maildir %s: %w", root, err)
	}
	for _, e := range entries {
		n := e.Name()
		dir := filepath.Join(root, n)
		switch {
		case n == "cur" || n == "new" || n == "tmp":
		case strings.HasPrefix(n, ".") && len(n) > 1 && n != ".." && isMaildir(dir):
			folders = append(folders, folder{join(maildirPlusName(n[1:])), dir})
		case e.IsDir() && !strings.HasPrefix(n, "."):
			// A plain subdirectory tree: walk it for nested Maildirs.
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() {
					return nil
				}
				switch d.Name() {
				case "cur", "new", "tmp":
					return fs.SkipDir
				}
				if isMaildir(p) {
					rel, _ := filepath.Rel(root, p)
					folders = append(folders, folder{join(filepath.ToSlash(rel)), p})
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read Maildir %s: %w", dir, err)
			}
		}
	}
	slices.SortStableFunc(folders[1:], func(a, b folder) int { return strings.Compare(a.name, b.name) })
	for _, f := range folders {
		for _, sub := range []string{"cur", "new"} {
			files, err := os.ReadDir(filepath.Join(f.dir, sub))
			if err != nil {
				return fmt.Errorf("read Maildir %s: %w", f.dir, err)
			}
			for _, e := range files {
				if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				p := filepath.Join(f.dir, sub, e.Name())
				raw, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("read message: %w", err)
				}
				info, err := e.Info()
				if err != nil {
					return fmt.Errorf("read message: %w", err)
				}
				var flags []string
				if sub == "cur" {
					flags = FlagsFromMaildirName(e.Name())
				}
				if err := fn(Message{Folder: f.name, Raw: raw, Flags: flags, Date: info.ModTime(), Source: p}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Mbox variants: how a body line starting with "From " was quoted.
const (
	// MboxRD: every line matching ^>*From  got one more ">" (reversible).
	MboxRD = "mboxrd"
	// MboxO: only ^From  got a ">"; a ">From " line is left as it is.
	MboxO = "mboxo"
)

// IsMbox reports whether the file at path starts like an mbox.
func IsMbox(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 5)
	n, _ := io.ReadFull(f, head)
	return string(head[:n]) == "From "
}

// ReadMbox calls fn for every message of the mbox file at path, into
// folder. format is MboxRD or MboxO. Flags come from the Status and
// X-Status headers (mutt, Dovecot) and X-Mozilla-Status (Thunderbird); a
// message Thunderbird marked expunged is skipped. The From_ line's date
// becomes the internal date.
func ReadMbox(path, folder, format string, fn func(Message) error) error {
	if format != MboxRD && format != MboxO {
		return fmt.Errorf("mbox format %q is not one of %s, %s", format, MboxRD, MboxO)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read mbox: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var (
		cur      bytes.Buffer
		fromLine string
		n        int
		prevLine []byte // the previous line, to find From_ lines after a blank one
		started  bool
	)
	flush := func() error {
		if !started {
			return nil
		}
		n++
		// The blank line before the next From_ line belongs to the mbox.
		raw := cur.Bytes()
		if bytes.HasSuffix(raw, []byte("\r\n\r\n")) {
			raw = raw[:len(raw)-2]
		} else if bytes.HasSuffix(raw, []byte("\n\n")) {
			raw = raw[:len(raw)-1]
		}
		msg := Message{Folder: folder, Raw: slices.Clone(raw), Date: fromLineDate(fromLine), Source: fmt.Sprintf("%s message %d", path, n)}
		var skip bool
		msg.Flags, skip = mboxFlags(msg.Raw)
		cur.Reset()
		if skip {
			return nil
		}
		return fn(msg)
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			atStart := !started || len(bytes.TrimRight(prevLine, "\r\n")) == 0
			if bytes.HasPrefix(line, []byte("From ")) && atStart {
				if err := flush(); err != nil {
					return err
				}
				started = true
				fromLine = string(bytes.TrimRight(line, "\r\n"))
			} else if started {
				cur.Write(unquoteFrom(line, format))
			}
			prevLine = line
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read mbox %s: %w", path, err)
		}
	}
	if !started && n == 0 {
		return fmt.Errorf("%s is not an mbox (it does not start with a \"From \" line)", path)
	}
	return flush()
}

// unquoteFrom undoes the From-quoting of one body line.
func unquoteFrom(line []byte, format string) []byte {
	if format == MboxO {
		if bytes.HasPrefix(line, []byte(">From ")) {
			return line[1:]
		}
		return line
	}
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(line[i:], []byte("From ")) {
		return line[1:]
	}
	return line
}

// fromLineDate parses the asctime date at the end of a From_ line
// ("From sender Thu Nov 26 10:00:00 2026"); zero when it cannot.
func fromLineDate(line string) time.Time {
	f := strings.Fields(line)
	if len(f) < 7 {
		return time.Time{}
	}
	s := strings.Join(f[len(f)-5:], " ")
	for _, layout := range []string{time.ANSIC, "Mon Jan 2 15:04:05 2006"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t
		}
	}
	return time.Time{}
}

// mboxFlags reads the flags of an mbox message from its header; skip is
// true for a message Thunderbird marked expunged.
func mboxFlags(raw []byte) (flags []string, skip bool) {
	hdr := raw
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		hdr = raw[:i+1]
	} else if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		hdr = raw[:i+2]
	}
	add := func(f string) {
		if !slices.Contains(flags, f) {
			flags = append(flags, f)
		}
	}
	for _, l := range bytes.Split(hdr, []byte("\n")) {
		name, value, ok := strings.Cut(strings.TrimRight(string(l), "\r"), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "status":
			if strings.Contains(value, "R") {
				add(`\Seen`)
			}
		case "x-status":
			for _, c := range value {
				switch c {
				case 'A':
					add(`\Answered`)
				case 'F':
					add(`\Flagged`)
				case 'T':
					add(`\Draft`)
				case 'D':
					add(`\Deleted`)
				}
			}
		case "x-mozilla-status":
			v, err := strconv.ParseUint(value, 16, 16)
			if err != nil {
				continue
			}
			if v&0x0008 != 0 {
				return nil, true // expunged, waiting for a compaction
			}
			if v&0x0001 != 0 {
				add(`\Seen`)
			}
			if v&0x0002 != 0 {
				add(`\Answered`)
			}
			if v&0x0004 != 0 {
				add(`\Flagged`)
			}
			if v&0x1000 != 0 {
				add(`$Forwarded`)
			}
		}
	}
	slices.Sort(flags)
	return flags, false
}
