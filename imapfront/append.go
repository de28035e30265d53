package imapfront

import (
	"io"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// Append implements imapserver.Session, with APPENDUID (RFC 4315). The
// literal was already checked against AppendLimit by imapserver; it is read
// whole because the store commits a message in one transaction.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (data *imap.AppendData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("APPEND", &err)
	us, err := s.requireUser()
	if err != nil {
		return nil, err
	}
	mb, err := s.srv.opts.Store.MailboxByName(s.ctx, us.id, mailbox)
	if err != nil {
		return nil, s.storeErr("APPEND", targetDest, err)
	}
	if mb.NoSelect {
		return nil, s.storeErr("APPEND", targetDest, store.ErrNoSelect)
	}
	var flags []string
	if options != nil {
		if flags, err = storeFlags(options.Flags); err != nil {
			return nil, err
		}
	}
	raw := make([]byte, r.Size())
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, wrapErr("read append literal", err)
	}
	var date time.Time
	if options != nil {
		date = options.Time
	}
	entry, uidValidity, err := s.srv.opts.Store.Append(s.origin(false), us.id, mb.ID, raw, flags, date)
	if err != nil {
		return nil, s.storeErr("APPEND", targetDest, err)
	}
	return &imap.AppendData{UID: imap.UID(entry.UID), UIDValidity: uidValidity}, nil
}
