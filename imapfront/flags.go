package imapfront

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// storeBatch is how many UIDs one store.UpdateFlags call changes.
const storeBatch = 1000

// storeFlags converts client flags for the store: \Recent is dropped (it is
// never stored; Store refuses it before), system flags get their canonical spelling, unknown system
// flags and \* are refused.
func storeFlags(flags []imap.Flag) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		s := string(f)
		if !strings.HasPrefix(s, `\`) {
			out = append(out, s)
			continue
		}
		if strings.EqualFold(s, `\Recent`) {
			continue
		}
		canon := ""
		for _, sf := range systemFlags {
			if strings.EqualFold(s, sf) {
				canon = sf
			}
		}
		if canon == "" {
			return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Unknown system flag " + s}
		}
		out = append(out, canon)
	}
	return out, nil
}

// errStoreRecent refuses a STORE naming \Recent, which only the server sets
// (RFC 3501 section 2.3.2; RFC 9051 dropped the flag). Dovecot answers the
// same way ("BAD ... Invalid system flag \RECENT"); silently ignoring it
// would tell the client a change was made that never is.
var errStoreRecent = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: `\Recent cannot be changed by STORE`}

// Store implements imapserver.Session. The session writes FETCH FLAGS for
// its own change itself (unless .SILENT); when the change introduces a new
// keyword, the feed queues FLAGS and then these FETCHes, so the client
// learns the keyword before seeing it on a message.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("STORE", &err)
	v, err := s.requireSelected()
	if err != nil {
		return err
	}
	defer v.requeueHidden()
	if options != nil && options.UnchangedSince != 0 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "CONDSTORE is not supported"}
	}
	if v.readOnly {
		return errReadOnly
	}
	for _, f := range flags.Flags {
		if strings.EqualFold(string(f), `\Recent`) {
			return errStoreRecent
		}
	}
	s.conn.cork()
	defer s.uncork(&err)
	fl, err := storeFlags(flags.Flags)
	if err != nil {
		return err
	}
	var op store.FlagOp
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	default:
		op = store.FlagsReplace
	}
	if (op == store.FlagsAdd || op == store.FlagsRemove) && len(fl) == 0 {
		if !flags.Silent {
			return s.writeFlagsOf(w, v, v.resolve(numSet, s.searchRes))
		}
		return nil
	}
	targets := v.resolve(numSet, s.searchRes)
	// Batch by batch: the store changes a batch, then its FETCH responses
	// are written, so memory is bounded by the batch, not the range.
	for len(targets) > 0 {
		batch := targets[:min(len(targets), storeBatch)]
		targets = targets[len(batch):]
		entries, err := s.srv.opts.Store.UpdateFlags(s.origin(flags.Silent), s.user.id, v.mbox.id, targetUIDs(batch), op, fl)
		if err != nil {
			return s.storeErr("STORE", targetMailbox, err)
		}
		s.srv.syncFeed(s.ctx) // ownQueued is complete once the feed has the batch's changes
		v.mbox.mu.Lock()
		queued := v.ownQueued
		if len(queued) > 0 {
			v.ownQueued = make(map[store.UID]struct{})
		}
		v.mbox.mu.Unlock()
		if flags.Silent {
			continue
		}
		if err := s.writeStored(w, batch, entries, queued); err != nil {
			return err
		}
	}
	return nil
}

// writeStored writes the FETCH FLAGS responses of one STORE batch: entries
// (ascending by UID) are the changed messages among batch, except those
// whose change the feed queued to this session itself (queued).
func (s *session) writeStored(w *imapserver.FetchWriter, batch []target, entries []store.Entry, queued map[store.UID]struct{}) error {
	i := 0
	for _, e := range entries {
		if _, ok := queued[e.UID]; ok {
			continue
		}
		for i < len(batch) && batch[i].uid < e.UID {
			i++
		}
		if i == len(batch) || batch[i].uid != e.UID {
			continue
		}
		resp := w.CreateMessage(batch[i].seq)
		resp.WriteUID(imap.UID(e.UID))
		resp.WriteFlags(toIMAPFlags(s.view.replyFlags(e.UID, e.Flags)))
		if err := resp.Close(); err != nil {
			return wrapErr("write store response", err)
		}
	}
	return nil
}

// writeFlagsOf answers a STORE that changes nothing with the current flags,
// read from the mailbox's shared state (which the feed keeps equal to the
// store's committed flags): no store read and no message metadata.
// Messages expunged meanwhile are skipped.
func (s *session) writeFlagsOf(w *imapserver.FetchWriter, v *view, targets []target) error {
	type current struct {
		t     target
		flags []string
	}
	out := make([]current, 0, len(targets))
	v.mbox.mu.Lock()
	for _, t := range targets {
		if i, ok := v.mbox.indexLocked(t.uid); ok {
			// Flag slices are replaced, never modified: safe to use
			// after the lock is released.
			out = append(out, current{t: t, flags: v.mbox.entries[i].flags})
		}
	}
	v.mbox.mu.Unlock()
	for _, c := range out {
		resp := w.CreateMessage(c.t.seq)
		resp.WriteUID(imap.UID(c.t.uid))
		resp.WriteFlags(toIMAPFlags(v.replyFlags(c.t.uid, c.flags)))
		if err := resp.Close(); err != nil {
			return wrapErr("write store response", err)
		}
	}
	return nil
}
