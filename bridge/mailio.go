package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/lib/mailfile"
	"github.com/popbridge/popbridge/store"
)

// ImportOptions says what `popbridge import` reads and where it goes.
type ImportOptions struct {
	// User is the [[user]] whose mailboxes receive the mail.
	User string
	// Folder is the mailbox an mbox goes into (default INBOX), or the
	// parent of a Maildir's folders (default: the Maildir is INBOX and
	// its folders are top-level mailboxes).
	Folder string
	// Path is a Maildir directory or an mbox file.
	Path string
	// MboxFormat is mailfile.MboxRD (default) or mailfile.MboxO.
	MboxFormat string
	// Progress, when set, is called after each message with the number
	// read so far.
	Progress func(read int)
}

// ImportResult counts what an import did.
type ImportResult struct {
	// Read is the number of messages found in the source.
	Read int
	// Stored is the number of messages added to the store.
	Stored int
	// Present is the number found already in their mailbox (an earlier
	// import of the same source), not stored again.
	Present int
	// Folders are the mailboxes that received messages or already held them.
	Folders []string
}

// Import stores the messages of a Maildir tree or an mbox file in a
// user's mailboxes, with their flags and internal dates. It is idempotent:
// a message already in its mailbox (same bytes, after line ends are
// normalised to CRLF as the store keeps them) is not stored again; a
// message present n times in the source is present n times afterwards.
// It needs the store for writing, so it cannot run while `popbridge
// serve` holds the data directory (the error wraps store.ErrLocked).
func Import(ctx context.Context, cfg *Config, logger *slog.Logger, opts ImportOptions) (ImportResult, error) {
	var res ImportResult
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !configuredUser(cfg, opts.User) {
		return res, fmt.Errorf("no [[user]] %q in %s", opts.User, cfg.File)
	}
	if opts.MboxFormat == "" {
		opts.MboxFormat = mailfile.MboxRD
	}
	fi, err := os.Stat(opts.Path)
	if err != nil {
		return res, fmt.Errorf("import source: %w", err)
	}
	if opts.Folder != "" {
		if opts.Folder, err = store.ValidateMailboxName(opts.Folder); err != nil {
			return res, fmt.Errorf("-folder %q: %w", opts.Folder, err)
		}
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return res, err
	}
	defer st.Close()
	u, err := st.UserByName(ctx, opts.User)
	if err != nil {
		return res, fmt.Errorf("user %q: %w", opts.User, err)
	}
	im := &importer{st: st, u: u.ID, boxes: map[string]*importBox{}}
	add := func(m mailfile.Message) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		res.Read++
		stored, err := im.add(ctx, m)
		if err != nil {
			return fmt.Errorf("import %s: %w", m.Source, err)
		}
		if stored {
			res.Stored++
		} else {
			res.Present++
		}
		if opts.Progress != nil {
			opts.Progress(res.Read)
		}
		return nil
	}
	switch {
	case fi.IsDir():
		err = mailfile.ReadMaildir(opts.Path, opts.Folder, add)
	case mailfile.IsMbox(opts.Path):
		folder := opts.Folder
		if folder == "" {
			folder = "INBOX"
		}
		err = mailfile.ReadMbox(opts.Path, folder, opts.MboxFormat, add)
	default:
		err = fmt.Errorf("%s is neither a Maildir (a directory with cur and new) nor an mbox file (starting with a \"From \" line)", opts.Path)
	}
	res.Folders = im.order
	return res, err
}

func configuredUser(cfg *Config, name string) bool {
	for _, u := range cfg.Users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// importer adds messages to mailboxes, skipping those already there.
type importer struct {
	st    Backend
	u     store.UserID
	boxes map[string]*importBox
	order []string
}

// importBox is one target mailbox: how many copies of each content it
// holds that this import has not matched yet.
type importBox struct {
	id     store.MailboxID
	unused map[[32]byte]int
}

func (im *importer) box(ctx context.Context, name string) (*importBox, error) {
	if b, ok := im.boxes[name]; ok {
		return b, nil
	}
	canon, err := store.ValidateMailboxName(name)
	if err != nil {
		return nil, fmt.Errorf("folder %q: %w", name, err)
	}
	mb, err := im.st.MailboxByName(ctx, im.u, canon)
	if errors.Is(err, store.ErrNotFound) {
		mb, err = im.st.CreateMailbox(ctx, im.u, canon, "")
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox %q: %w", canon, err)
	}
	b := &importBox{id: mb.ID, unused: map[[32]byte]int{}}
	snap, err := im.st.Snapshot(ctx, im.u, mb.ID)
	if err != nil {
		return nil, fmt.Errorf("mailbox %q: %w", canon, err)
	}
	uids := make([]store.UID, len(snap.Entries))
	for i, e := range snap.Entries {
		uids[i] = e.UID
	}
	if len(uids) > 0 {
		err = im.st.Bodies(ctx, im.u, mb.ID, uids, func(_ store.UID, raw []byte, damaged error) error {
			if damaged != nil {
				return nil // unreadable: it matches no imported message
			}
			b.unused[sha256.Sum256(raw)]++
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("mailbox %q: read messages: %w", canon, err)
		}
	}
	im.boxes[name] = b
	im.order = append(im.order, canon)
	return b, nil
}

// add stores m unless its mailbox already holds an unmatched copy.
func (im *importer) add(ctx context.Context, m mailfile.Message) (stored bool, err error) {
	b, err := im.box(ctx, m.Folder)
	if err != nil {
		return false, err
	}
	raw := crlf(m.Raw)
	sum := sha256.Sum256(raw)
	if b.unused[sum] > 0 {
		b.unused[sum]--
		return false, nil
	}
	if _, _, err := im.st.Append(ctx, im.u, b.id, raw, m.Flags, m.Date); err != nil {
		return false, err
	}
	return true, nil
}

// crlf turns bare LF line ends into CRLF, as the store keeps messages.
func crlf(raw []byte) []byte {
	if bytes.Count(raw, []byte("\n")) == bytes.Count(raw, []byte("\r\n")) {
		return raw
	}
	var out bytes.Buffer
	out.Grow(len(raw) + len(raw)/32)
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

// ExportResult counts what an export did.
type ExportResult struct {
	// Messages is the number of messages in the user's mailboxes.
	Messages int
	// Written is the number of message files written; Renamed the number
	// whose flags changed since an earlier export (the file was renamed).
	Written, Renamed int
	// Folders are the mailboxes exported.
	Folders []string
	// Damaged lists the messages ("mailbox UID n") whose stored bytes
	// could not be read: not written (see popbridge verify).
	Damaged []string
}

// Export writes every mailbox of a user into dir as a Maildir++ tree: INBOX
// is dir itself, "Work/2024" is dir/.Work.2024 (a "." inside a level is
// written %2E, "%" as %25). Each message is one file in cur, holding the
// bytes the store serves over IMAP (CRLF line ends), named
// "<internal date>.P<UIDVALIDITY>U<UID>.popbridge:2,<flags>", with the
// internal date as its modification time. Running it again writes only
// new messages and renames files whose flags changed. It opens the store
// read-only, so it works beside a running `popbridge serve`.
func Export(ctx context.Context, cfg *Config, logger *slog.Logger, user, dir string, progress func(done int)) (ExportResult, error) {
	var res ExportResult
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !configuredUser(cfg, user) {
		return res, fmt.Errorf("no [[user]] %q in %s", user, cfg.File)
	}
	st, err := openBackend(ctx, cfg, logger, openOptions{readOnly: true})
	if err != nil {
		return res, err
	}
	defer st.Close()
	u, err := st.UserByName(ctx, user)
	if err != nil {
		return res, fmt.Errorf("user %q: %w", user, err)
	}
	mbs, err := st.Mailboxes(ctx, u.ID)
	if err != nil {
		return res, fmt.Errorf("list mailboxes: %w", err)
	}
	done := 0
	for _, mb := range mbs {
		if mb.NoSelect {
			continue
		}
		mdir := filepath.Join(dir, maildirFolder(mb.Name))
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(mdir, sub), 0o700); err != nil {
				return res, fmt.Errorf("export %s: %w", mb.Name, err)
			}
		}
		existing, err := exportedFiles(filepath.Join(mdir, "cur"))
		if err != nil {
			return res, fmt.Errorf("export %s: %w", mb.Name, err)
		}
		snap, err := st.Snapshot(ctx, u.ID, mb.ID)
		if err != nil {
			return res, fmt.Errorf("export %s: %w", mb.Name, err)
		}
		res.Folders = append(res.Folders, mb.Name)
		if len(snap.Entries) == 0 {
			continue
		}
		uids := make([]store.UID, len(snap.Entries))
		for i, e := range snap.Entries {
			uids[i] = e.UID
		}
		metas, err := st.Meta(ctx, u.ID, mb.ID, uids)
		if err != nil {
			return res, fmt.Errorf("export %s: %w", mb.Name, err)
		}
		byUID := make(map[store.UID]store.MessageMeta, len(metas))
		for _, m := range metas {
			byUID[m.UID] = m
		}
		var missing []store.UID
		for _, e := range snap.Entries {
			res.Messages++
			m := byUID[e.UID]
			key := fmt.Sprintf("%d.P%dU%d.popbridge", m.InternalDate.Unix(), mb.UIDValidity, e.UID)
			name := key + mailfile.MaildirInfo(e.Flags)
			switch old, ok := existing[key]; {
			case !ok:
				missing = append(missing, e.UID)
			case old != name:
				if err := os.Rename(filepath.Join(mdir, "cur", old), filepath.Join(mdir, "cur", name)); err != nil {
					return res, fmt.Errorf("export %s: %w", mb.Name, err)
				}
				res.Renamed++
			}
		}
		if len(missing) == 0 {
			continue
		}
		flags := make(map[store.UID][]string, len(snap.Entries))
		for _, e := range snap.Entries {
			flags[e.UID] = e.Flags
		}
		err = st.Bodies(ctx, u.ID, mb.ID, missing, func(uid store.UID, raw []byte, damaged error) error {
			if damaged != nil {
				// Not written, so a later export tries again; popbridge
				// verify -repair can restore it.
				res.Damaged = append(res.Damaged, fmt.Sprintf("%s UID %d", mb.Name, uid))
				return nil
			}
			m := byUID[uid]
			name := fmt.Sprintf("%d.P%dU%d.popbridge", m.InternalDate.Unix(), mb.UIDValidity, uid) + mailfile.MaildirInfo(flags[uid])
			if err := writeMaildirFile(mdir, name, raw, m.InternalDate); err != nil {
				return err
			}
			res.Written++
			done++
			if progress != nil {
				progress(done)
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("export %s: %w", mb.Name, err)
		}
	}
	return res, nil
}

// maildirFolder is the Maildir++ directory of a mailbox name ("" for INBOX).
func maildirFolder(name string) string {
	if name == "INBOX" {
		return ""
	}
	levels := strings.Split(name, "/")
	for i, l := range levels {
		levels[i] = strings.NewReplacer("%", "%25", ".", "%2E").Replace(l)
	}
	return "." + strings.Join(levels, ".")
}

// exportedFiles maps the key part (before ":2,") of popbridge's files in
// a cur directory to their full names.
func exportedFiles(cur string) (map[string]string, error) {
	entries, err := os.ReadDir(cur)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		key, _, _ := strings.Cut(e.Name(), ":2,")
		if strings.HasSuffix(key, ".popbridge") {
			out[key] = e.Name()
		}
	}
	return out, nil
}

// writeMaildirFile writes raw into tmp, syncs it, sets its time and moves
// it into cur under name, as a Maildir delivery does.
func writeMaildirFile(mdir, name string, raw []byte, date time.Time) error {
	tmp := filepath.Join(mdir, "tmp", strings.ReplaceAll(name, ":", "_")+"."+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !date.IsZero() {
		err = os.Chtimes(tmp, date, date)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(mdir, "cur", name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
