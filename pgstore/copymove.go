package pgstore

import (
	"context"

	"github.com/popbridge/popbridge/store"
)

// Copy copies the entries of uids (nil or empty: none) from src to dst
// (which may be src): the message bytes are shared and the flags copied.
func (s *Store) Copy(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error) {
	return s.copyMove(ctx, "copy", u, src, uids, dst, false)
}

// Move moves the entries of uids from src to dst in one transaction: they
// are added to dst (ChangeAdd) and expunged from src (ChangeExpunge).
func (s *Store) Move(ctx context.Context, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID) (store.CopyResult, error) {
	return s.copyMove(ctx, "move", u, src, uids, dst, true)
}

func (s *Store) copyMove(ctx context.Context, op string, u store.UserID, src store.MailboxID, uids []store.UID, dst store.MailboxID, move bool) (store.CopyResult, error) {
	if uids == nil {
		uids = []store.UID{}
	}
	var res store.CopyResult
	err := s.write(ctx, op, func(w *wtx) error {
		res = store.CopyResult{}
		// Both mailboxes are locked in ascending id order, so two
		// opposite copies cannot deadlock.
		var smb, dmb *store.Mailbox
		for _, id := range sortedPair(src, dst) {
			mb, err := selectableByID(w.ctx, w, u, id, true)
			if err != nil {
				return err
			}
			if id == src {
				smb = &mb
			}
			if id == dst {
				dmb = &mb
			}
		}
		if src == dst {
			dmb = smb
		}
		res.UIDValidity = dmb.UIDValidity
		ents, err := selectEntries(w.ctx, w, src, uids, false)
		if err != nil || len(ents) == 0 {
			return err
		}
		added, err := addEntries(w, dmb, ents)
		if err != nil {
			return err
		}
		res.Source = make([]store.UID, len(ents))
		res.Dest = make([]store.UID, len(ents))
		for i := range ents {
			res.Source[i], res.Dest[i] = ents[i].uid, added[i].UID
		}
		if move {
			if err := expungeEntries(w, smb, ents); err != nil {
				return err
			}
			if dst == src {
				announceExpungeFirst(w)
			}
		}
		return nil
	})
	if err != nil {
		return store.CopyResult{}, err
	}
	return res, nil
}

func sortedPair(a, b store.MailboxID) []store.MailboxID {
	switch {
	case a == b:
		return []store.MailboxID{a}
	case a < b:
		return []store.MailboxID{a, b}
	}
	return []store.MailboxID{b, a}
}

// announceExpungeFirst reorders the ChangeAdd and ChangeExpunge of a MOVE
// within one mailbox, as the SQLite store does, so that sessions report
// the EXPUNGE before the EXISTS (RFC 6851 section 4.3); the modseqs are
// exchanged too, to stay ascending.
func announceExpungeFirst(w *wtx) {
	n := len(w.changes)
	if n < 2 || w.changes[n-2].Kind != store.ChangeAdd || w.changes[n-1].Kind != store.ChangeExpunge {
		return
	}
	add, exp := w.changes[n-2], w.changes[n-1]
	add.ModSeq, exp.ModSeq = exp.ModSeq, add.ModSeq
	w.changes[n-2], w.changes[n-1] = exp, add
}

// Expunge removes the entries of uids (nil: all) that carry \Deleted and
// returns their UIDs, ascending.
func (s *Store) Expunge(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID) ([]store.UID, error) {
	var out []store.UID
	err := s.write(ctx, "expunge", func(w *wtx) error {
		out = nil
		mb, err := selectableByID(w.ctx, w, u, id, true)
		if err != nil {
			return err
		}
		ents, err := selectEntries(w.ctx, w, id, uids, true)
		if err != nil || len(ents) == 0 {
			return err
		}
		if err := expungeEntries(w, &mb, ents); err != nil {
			return err
		}
		out = make([]store.UID, len(ents))
		for i, e := range ents {
			out[i] = e.uid
		}
		return nil
	})
	return out, err
}
