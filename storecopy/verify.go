package storecopy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/store"
)

// mailboxSum sums up one mailbox's entries, in UID order: each hash
// covers one aspect, so a difference can be named.
type mailboxSum struct {
	n                               int
	uids, flags, modseqs, msgs, all hash.Hash
}

func sumOf(m map[store.MailboxID]*mailboxSum, id store.MailboxID) *mailboxSum {
	s := m[id]
	if s == nil {
		s = &mailboxSum{uids: sha256.New(), flags: sha256.New(), modseqs: sha256.New(), msgs: sha256.New(), all: sha256.New()}
		m[id] = s
	}
	return s
}

func (s *mailboxSum) add(e store.ExportedEntry, key msgKey) {
	s.n++
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(e.UID))
	binary.BigEndian.PutUint64(b[4:], e.ModSeq)
	flags := strings.Join(e.Flags, " ")
	s.uids.Write(b[:4])
	s.flags.Write(b[:4])
	s.flags.Write([]byte(flags + "\n"))
	s.modseqs.Write(b[:])
	s.msgs.Write(b[:4])
	s.msgs.Write(key[:])
	s.all.Write(b[:])
	s.all.Write(key[:])
	s.all.Write([]byte(flags + "\n"))
}

// differs names the aspects in which s and o differ.
func (s *mailboxSum) differs(o *mailboxSum) []string {
	var out []string
	if s.n != o.n {
		out = append(out, fmt.Sprintf("%d messages in the source, %d in the copy", s.n, o.n))
	}
	for _, a := range []struct {
		what string
		x, y hash.Hash
	}{{"UID list", s.uids, o.uids}, {"flags", s.flags, o.flags}, {"modseqs", s.modseqs, o.modseqs}, {"message bytes", s.msgs, o.msgs}} {
		if !bytes.Equal(a.x.Sum(nil), a.y.Sum(nil)) {
			out = append(out, a.what+" differ")
		}
	}
	return out
}

// ledgerSum sums up one account's ledger rows, in row order.
type ledgerSum struct {
	n int
	h hash.Hash
}

func ledgerSumOf(m map[string]*ledgerSum, account string) *ledgerSum {
	s := m[account]
	if s == nil {
		s = &ledgerSum{h: sha256.New()}
		m[account] = s
	}
	return s
}

func (s *ledgerSum) add(r store.LedgerRow) {
	s.n++
	fmt.Fprintf(s.h, "%d\x00%q\x00%q\x00%d\x00%d\x00%d\x00%q\x00%t\x00%t\x00%d\x00%d\n", r.ID, r.UIDL, r.Digest, r.Size,
		micros(r.StoredAt), r.Message, r.Skipped, r.DeletePending, r.Expunged, micros(r.DeletedAt), micros(r.LastSeen))
}

// micros is t to the microsecond (0 for the zero time): what both
// backends keep.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Truncate(time.Microsecond).UnixMicro()
}

func sameTime(a, b time.Time) bool { return micros(a) == micros(b) }

// maxListed bounds the differences an ErrMismatch error lists.
const maxListed = 20

// mismatches collects the differences verify finds.
type mismatches struct {
	list []string
	n    int
}

func (m *mismatches) addf(format string, args ...any) {
	m.n++
	if len(m.list) < maxListed {
		m.list = append(m.list, fmt.Sprintf(format, args...))
	}
}

func (m *mismatches) err() error {
	if m.n == 0 {
		return nil
	}
	more := ""
	if m.n > len(m.list) {
		more = fmt.Sprintf("\n  … and %d more", m.n-len(m.list))
	}
	return fmt.Errorf("%w: %d differences:\n  %s%s", ErrMismatch, m.n, strings.Join(m.list, "\n  "), more)
}

// verify reads the destination back and compares it with what was read
// from the source.
func (c *copier) verify(ctx context.Context) error {
	var bad mismatches
	dm, err := c.dst.ExportMeta(ctx)
	if err != nil {
		return fmt.Errorf("storecopy: verify: read destination: %w", err)
	}
	c.verifyMeta(dm, &bad)
	c.progress("verify")

	// Messages: each one's bytes, size and INTERNALDATE.
	seen := 0
	err = c.dst.ExportMessages(ctx, func(m store.ExportedMessage) error {
		seen++
		want, ok := c.keys[m.ID]
		switch {
		case !ok:
			bad.addf("message %d is in the copy but was not copied", m.ID)
		case m.Err != nil:
			bad.addf("message %d of the copy is unreadable: %v", m.ID, m.Err)
		case messageKey(m.Raw, m.Size, m.InternalDate) != want:
			bad.addf("message %d: bytes, size or INTERNALDATE differ from the source's", m.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storecopy: verify: read destination: %w", err)
	}
	if seen != len(c.keys) {
		bad.addf("%d messages copied, %d in the copy", len(c.keys), seen)
	}
	c.progress("verify")

	// Entries, per mailbox; a damaged message's entries must be in its
	// user's Damaged mailbox.
	mboxes := map[store.MailboxID]store.Mailbox{}
	for _, mb := range dm.Mailboxes {
		mboxes[mb.ID] = mb
	}
	dstSums := map[store.MailboxID]*mailboxSum{}
	quarantined := 0
	err = c.dst.ExportEntries(ctx, func(e store.ExportedEntry) error {
		key, ok := c.keys[e.Message]
		if !ok {
			bad.addf("entry UID %d of mailbox %d names message %d, which was not copied", e.UID, e.Mailbox, e.Message)
			return nil
		}
		if _, dmg := c.damaged[e.Message]; dmg {
			if mboxes[e.Mailbox].Name != store.DamagedMailbox {
				bad.addf("damaged message %d is in mailbox %d of the copy, not in %s", e.Message, e.Mailbox, store.DamagedMailbox)
			}
			quarantined++
			return nil
		}
		sumOf(dstSums, e.Mailbox).add(e, key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storecopy: verify: read destination: %w", err)
	}
	if quarantined != len(c.quarantine) {
		bad.addf("%d entries of damaged messages in the source, %d in %s of the copy", len(c.quarantine), quarantined, store.DamagedMailbox)
	}
	users := map[store.UserID]string{}
	for _, u := range c.meta.Users {
		users[u.ID] = u.Name
	}
	empty := &mailboxSum{uids: sha256.New(), flags: sha256.New(), modseqs: sha256.New(), msgs: sha256.New(), all: sha256.New()}
	for _, mb := range c.meta.Mailboxes {
		s, d := c.srcSums[mb.ID], dstSums[mb.ID]
		if s == nil {
			s = empty
		}
		if d == nil {
			d = empty
		}
		for _, what := range s.differs(d) {
			bad.addf("user %q, mailbox %q: %s", users[mb.User], mb.Name, what)
		}
		dmb := mboxes[mb.ID]
		c.rep.PerMailbox = append(c.rep.PerMailbox, MailboxReport{User: users[mb.User], Mailbox: dmb.Name, UIDValidity: dmb.UIDValidity,
			UIDNext: dmb.UIDNext, HighestModSeq: dmb.HighestModSeq, Messages: d.n, Digest: hex.EncodeToString(d.all.Sum(nil))})
	}
	for id := range dstSums {
		if _, ok := c.srcSums[id]; !ok {
			bad.addf("mailbox %d of the copy has messages the source's did not", id)
		}
	}
	c.progress("verify")

	// The ledger, per account.
	dstLedger := map[string]*ledgerSum{}
	err = c.dst.ExportLedger(ctx, func(r store.LedgerRow) error {
		ledgerSumOf(dstLedger, r.Account).add(r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storecopy: verify: read destination: %w", err)
	}
	accounts := map[string]bool{}
	for a := range c.srcLedger {
		accounts[a] = true
	}
	for a := range dstLedger {
		accounts[a] = true
	}
	for _, a := range sortedKeys(accounts) {
		s, d := c.srcLedger[a], dstLedger[a]
		switch {
		case s == nil:
			bad.addf("ledger of account %q: not in the source, %d rows in the copy", a, d.n)
		case d == nil:
			bad.addf("ledger of account %q: %d rows in the source, none in the copy", a, s.n)
		case s.n != d.n:
			bad.addf("ledger of account %q: %d rows in the source, %d in the copy", a, s.n, d.n)
		case !bytes.Equal(s.h.Sum(nil), d.h.Sum(nil)):
			bad.addf("ledger of account %q: rows differ", a)
		}
	}
	c.progress("verify")
	return bad.err()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// verifyMeta compares the destination's users, mailboxes, subscriptions,
// counter, provider users and account statuses with the source's.
func (c *copier) verifyMeta(dm store.ExportMeta, bad *mismatches) {
	sm := c.meta
	if len(sm.Users) != len(dm.Users) {
		bad.addf("%d users in the source, %d in the copy", len(sm.Users), len(dm.Users))
	}
	for i := range min(len(sm.Users), len(dm.Users)) {
		s, d := sm.Users[i], dm.Users[i]
		if s.ID != d.ID || s.Name != d.Name || !sameTime(s.Created, d.Created) {
			bad.addf("user %d %q (created %v) is %d %q (created %v) in the copy", s.ID, s.Name, s.Created, d.ID, d.Name, d.Created)
		}
	}
	// Mailboxes touched by the quarantine: their HIGHESTMODSEQ has moved
	// on, and Damaged may be new.
	touched := map[store.MailboxID]bool{}
	damagedUsers := map[store.UserID]bool{}
	srcBoxes := map[store.MailboxID]store.Mailbox{}
	for _, mb := range sm.Mailboxes {
		srcBoxes[mb.ID] = mb
	}
	for _, e := range c.quarantine {
		touched[e.Mailbox] = true
		damagedUsers[srcBoxes[e.Mailbox].User] = true
	}
	dstBoxes := map[store.MailboxID]store.Mailbox{}
	for _, mb := range dm.Mailboxes {
		dstBoxes[mb.ID] = mb
		if _, ok := srcBoxes[mb.ID]; !ok && !(mb.Name == store.DamagedMailbox && damagedUsers[mb.User]) {
			bad.addf("mailbox %d %q of user %d is in the copy only", mb.ID, mb.Name, mb.User)
		}
		if mb.Name == store.DamagedMailbox {
			touched[mb.ID] = true
		}
	}
	for _, s := range sm.Mailboxes {
		d, ok := dstBoxes[s.ID]
		if !ok {
			bad.addf("mailbox %d %q of user %d is missing from the copy", s.ID, s.Name, s.User)
			continue
		}
		modseqOK := s.HighestModSeq == d.HighestModSeq || touched[s.ID] && d.HighestModSeq > s.HighestModSeq
		if s.User != d.User || s.Name != d.Name || s.UIDValidity != d.UIDValidity || s.UIDNext != d.UIDNext && !touched[s.ID] ||
			s.SpecialUse != d.SpecialUse || s.NoSelect != d.NoSelect || s.Subscribed != d.Subscribed || !modseqOK {
			bad.addf("mailbox %d: %+v in the source, %+v in the copy", s.ID, s, d)
		}
	}
	if !slices.Equal(sm.Subscriptions, dm.Subscriptions) {
		bad.addf("subscriptions differ: %d in the source, %d in the copy", len(sm.Subscriptions), len(dm.Subscriptions))
	}
	if dm.LastIDs.User < sm.LastIDs.User || dm.LastIDs.Mailbox < sm.LastIDs.Mailbox || dm.LastIDs.Message < sm.LastIDs.Message ||
		dm.LastIDs.LedgerRow < sm.LastIDs.LedgerRow {
		bad.addf("the copy may issue ids again: last ids %+v, the source's %+v", dm.LastIDs, sm.LastIDs)
	}
	if dm.UIDValidity < sm.UIDValidity {
		bad.addf("UIDVALIDITY counter %d in the copy, %d in the source", dm.UIDValidity, sm.UIDValidity)
	}
	if len(sm.ProviderUsers) != len(dm.ProviderUsers) {
		bad.addf("%d provider users in the source, %d in the copy", len(sm.ProviderUsers), len(dm.ProviderUsers))
	}
	for i := range min(len(sm.ProviderUsers), len(dm.ProviderUsers)) {
		s, d := sm.ProviderUsers[i], dm.ProviderUsers[i]
		if s.Name != d.Name || !bytes.Equal(s.Credential, d.Credential) || (s.Credential == nil) != (d.Credential == nil) || s.State != d.State ||
			!sameTime(s.Created, d.Created) || !sameTime(s.LastLogin, d.LastLogin) || !sameTime(s.StateChanged, d.StateChanged) {
			bad.addf("provider user %q differs in the copy", s.Name)
		}
	}
	if len(sm.AccountStatuses) != len(dm.AccountStatuses) {
		bad.addf("%d account statuses in the source, %d in the copy", len(sm.AccountStatuses), len(dm.AccountStatuses))
	}
	for i := range min(len(sm.AccountStatuses), len(dm.AccountStatuses)) {
		s, d := sm.AccountStatuses[i], dm.AccountStatuses[i]
		times := sameTime(s.LastAttempt, d.LastAttempt) && sameTime(s.LastSuccess, d.LastSuccess) && sameTime(s.LastErrorAt, d.LastErrorAt)
		s.LastAttempt, s.LastSuccess, s.LastErrorAt = d.LastAttempt, d.LastSuccess, d.LastErrorAt
		if !times || s != d {
			bad.addf("account status of %q differs in the copy", s.Account)
		}
	}
}
