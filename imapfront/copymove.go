package imapfront

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/popbridge/popbridge/store"
)

// copyTarget looks up the destination mailbox of COPY and MOVE.
func (s *session) copyTarget(op, dest string) (store.Mailbox, error) {
	mb, err := s.srv.opts.Store.MailboxByName(s.ctx, s.user.id, dest)
	if err != nil {
		return store.Mailbox{}, s.storeErr(op, targetDest, err)
	}
	if mb.NoSelect {
		return store.Mailbox{}, s.storeErr(op, targetDest, store.ErrNoSelect)
	}
	return mb, nil
}

// copyData converts a store CopyResult to COPYUID data; nil when nothing
// was copied (the reply then carries no COPYUID).
func copyData(res store.CopyResult) *imap.CopyData {
	if len(res.Source) == 0 {
		return nil
	}
	var src, dst imap.UIDSet
	for i := range res.Source {
		src.AddNum(imap.UID(res.Source[i]))
		dst.AddNum(imap.UID(res.Dest[i]))
	}
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: src, DestUIDs: dst}
}

// Copy implements imapserver.Session (COPY, UID COPY), with COPYUID (RFC
// 4315). The destination may be the selected mailbox.
func (s *session) Copy(numSet imap.NumSet, dest string) (data *imap.CopyData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("COPY", &err)
	v, err := s.requireSelected()
	if err != nil {
		return nil, err
	}
	mb, err := s.copyTarget("COPY", dest)
	if err != nil {
		return nil, err
	}
	uids := targetUIDs(v.resolve(numSet, s.searchRes))
	if len(uids) == 0 {
		return nil, nil
	}
	res, err := s.srv.opts.Store.Copy(s.origin(false), s.user.id, v.mbox.id, uids, mb.ID)
	if err != nil {
		return nil, s.storeErr("COPY", targetDest, err)
	}
	return copyData(res), nil
}

// Move implements imapserver.SessionMove (MOVE, UID MOVE; RFC 6851). Only
// the COPYUID is written here; the EXPUNGEs are queued by the feed and sent
// by the Poll after the command, exactly once (docs/imapserver-workarounds.md, "Mailbox tracker").
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end("MOVE", &err)
	v, err := s.requireSelected()
	if err != nil {
		return err
	}
	if v.readOnly {
		return errReadOnly
	}
	mb, err := s.copyTarget("MOVE", dest)
	if err != nil {
		return err
	}
	uids := targetUIDs(v.resolve(numSet, s.searchRes))
	if len(uids) == 0 {
		return nil
	}
	res, err := s.srv.opts.Store.Move(s.origin(false), s.user.id, v.mbox.id, uids, mb.ID)
	if err != nil {
		return s.storeErr("MOVE", targetDest, err)
	}
	if data := copyData(res); data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return wrapErr("write copyuid", err)
		}
	}
	return nil
}
