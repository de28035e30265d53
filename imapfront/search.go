package imapfront

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// Bounds on one SEARCH. The parser already limits a command line to 50 KiB,
// but NOT/OR nest freely within it; these keep evaluation cost and recursion
// depth proportional to what a real client ever sends.
const (
	searchMaxDepth = 100  // nesting of NOT and OR
	searchMaxKeys  = 1000 // search keys in the whole tree
	// searchMaxTextKeys bounds the HEADER/BODY/TEXT keys (FROM, SUBJECT...
	// included): each may cost a pass over the text of the whole view, so
	// a thousand "NOT TEXT x" would otherwise be a thousand passes. Real
	// clients send a handful (Thunderbird's quick filter: six).
	searchMaxTextKeys = 64
	// searchMetaBatch is how many UIDs one store.Meta call loads.
	searchMetaBatch = 2000
)

// searchMailbox evaluates criteria against the messages of the session's
// client view of mailbox mbox and returns the UIDs that match, ascending.
//
// view[i] is the UID of sequence number i+1 as the client knows it, so
// sequence sets and "*" are resolved against the view, never against the
// store, which may already hold messages the client has not been told about.
// Every key of imap.SearchCriteria is evaluated:
//
//   - SeqNum and UID sets, with "*" (the last message of the view, the
//     highest UID of the view) and reversed ranges ("5:3", "*:4");
//   - Since/Before (ON arrives as both) compare the calendar date of the
//     internal date in the server's time zone, now.Location();
//     SentSince/SentBefore (SENTON likewise) the calendar date of the Date:
//     header in the header's own zone, falling back to the internal date when
//     the header is missing or unparseable; the time of day of the key is
//     ignored (RFC 3501 section 6.4.4);
//   - Flag/NotFlag, keywords included, compared case-insensitively; \Recent
//     (RECENT, NEW, OLD) is the session's own (recent.go);
//   - Larger/Smaller against RFC822.SIZE;
//   - Header (FROM, TO, CC, BCC, SUBJECT and HEADER all arrive here), Body
//     and Text as case-insensitive substring matches over decoded text
//     (store.SearchText); HEADER with an empty value matches messages that
//     have the field;
//   - Not and Or, nested.
//
// Cheap keys are evaluated first from store.Meta, loaded once for the view in
// batches and only when a key needs it (from one store.Snapshot when only
// flags are asked); each text key then costs one store.SearchText pass
// restricted to the candidates still in play. A message of the view that
// the store no longer has (expunged meanwhile by another session) is
// matched by sequence and UID sets alone: once any key needs message data,
// it is not in the result.
//
// The SEARCHRES marker "$" must have been replaced by the caller (see
// substituteSearchRes). Criteria over searchMaxDepth levels, searchMaxKeys
// keys or searchMaxTextKeys text keys are refused with NO [LIMIT], a
// leftover "$" and MODSEQ (CONDSTORE is not offered) with BAD, all as
// *imap.Error.
func searchMailbox(ctx context.Context, st Store, user store.UserID, mbox store.MailboxID, view []store.UID, criteria *imap.SearchCriteria, now time.Time) ([]store.UID, error) {
	return searchView(ctx, st, user, mbox, view, nil, criteria, now)
}

// searchView is searchMailbox for a session's view, whose \Recent
// messages are recent (RECENT, NEW, OLD).
func searchView(ctx context.Context, st Store, user store.UserID, mbox store.MailboxID, view []store.UID, recent map[store.UID]struct{}, criteria *imap.SearchCriteria, now time.Time) ([]store.UID, error) {
	if criteria == nil {
		criteria = &imap.SearchCriteria{}
	}
	var keys, textKeys int
	if err := checkSearchCriteria(criteria, 0, &keys, &textKeys); err != nil {
		return nil, err
	}
	s := &searcher{
		ctx:    ctx,
		st:     st,
		user:   user,
		mbox:   mbox,
		view:   view,
		recent: recent,
		loc:    now.Location(),
	}
	cand := make([]int, len(view))
	for i := range cand {
		cand[i] = i
	}
	// Narrow by the top level's sequence and UID sets before loading
	// anything: nested keys only ever look at a subset of what survives.
	cand = s.filterSets(criteria, cand)
	var err error
	switch {
	case len(cand) == 0:
	case searchNeedsMeta(criteria, false):
		if err := s.loadMeta(cand); err != nil {
			return nil, err
		}
		cand = slices.DeleteFunc(cand, func(idx int) bool { return s.meta[idx] == nil })
	case searchNeedsMeta(criteria, true):
		// Flags only (UNSEEN, DELETED...: what clients ask most): the
		// entries of one Snapshot read are enough, no envelope decoding.
		if err := s.loadFlags(cand); err != nil {
			return nil, err
		}
		cand = slices.DeleteFunc(cand, func(idx int) bool { return s.meta[idx] == nil })
	case searchHasText(criteria) && searchHasNotOr(criteria):
		// Text keys skip messages the store no longer has, but NOT, or an
		// OR branch of sets alone, would bring them back: drop them first,
		// as with loaded metadata.
		if cand, err = s.dropAbsent(cand); err != nil {
			return nil, err
		}
	}
	cand, err = s.eval(criteria, cand)
	if err != nil {
		return nil, err
	}
	out := make([]store.UID, len(cand))
	for i, idx := range cand {
		out[i] = view[idx]
	}
	slices.Sort(out)
	return out, nil
}

// searcher holds the state of one searchMailbox call. Candidates are
// ascending indexes into view.
type searcher struct {
	ctx  context.Context
	st   Store
	user store.UserID
	mbox store.MailboxID
	view []store.UID
	// recent holds the UIDs that are \Recent in the session.
	recent map[store.UID]struct{}
	loc    *time.Location
	// meta[i] is the metadata of view[i]; nil when not loaded or absent
	// from the store.
	meta []*store.MessageMeta
}

// loadMeta loads the metadata of the candidates in batches of
// searchMetaBatch UIDs.
func (s *searcher) loadMeta(cand []int) error {
	s.meta = make([]*store.MessageMeta, len(s.view))
	pos := make(map[store.UID]int, len(cand))
	uids := make([]store.UID, 0, len(cand))
	for _, idx := range cand {
		pos[s.view[idx]] = idx
		uids = append(uids, s.view[idx])
	}
	slices.Sort(uids)
	for start := 0; start < len(uids); start += searchMetaBatch {
		end := min(start+searchMetaBatch, len(uids))
		ms, err := s.st.Meta(s.ctx, s.user, s.mbox, uids[start:end])
		if err != nil {
			return fmt.Errorf("loading message metadata for search: %w", err)
		}
		for i := range ms {
			if idx, ok := pos[ms[i].UID]; ok {
				s.meta[idx] = &ms[i]
			}
		}
	}
	return nil
}

// loadFlags fills s.meta with the entries (UID, flags) of the candidates
// from one Snapshot read; dates and sizes stay zero.
func (s *searcher) loadFlags(cand []int) error {
	snap, err := s.st.Snapshot(s.ctx, s.user, s.mbox)
	if err != nil {
		return fmt.Errorf("reading mailbox for search: %w", err)
	}
	s.meta = make([]*store.MessageMeta, len(s.view))
	for _, idx := range cand {
		if e, ok := searchEntry(snap.Entries, s.view[idx]); ok {
			s.meta[idx] = &store.MessageMeta{Entry: e}
		}
	}
	return nil
}

// searchEntry finds the entry of uid in entries (ascending by UID).
func searchEntry(entries []store.Entry, uid store.UID) (store.Entry, bool) {
	i, found := slices.BinarySearchFunc(entries, uid, func(e store.Entry, u store.UID) int {
		return cmp.Compare(e.UID, u)
	})
	if !found {
		return store.Entry{}, false
	}
	return entries[i], true
}

// dropAbsent removes the candidates whose UID the store no longer has in
// the mailbox (one Snapshot read).
func (s *searcher) dropAbsent(cand []int) ([]int, error) {
	snap, err := s.st.Snapshot(s.ctx, s.user, s.mbox)
	if err != nil {
		return nil, fmt.Errorf("reading mailbox for search: %w", err)
	}
	return slices.DeleteFunc(cand, func(idx int) bool {
		_, found := searchEntry(snap.Entries, s.view[idx])
		return !found
	}), nil
}

// eval returns the candidates that match every key of c, ascending.
// Cheapest first: sets, then metadata keys, then NOT/OR subtrees without
// text keys, then text keys (one store pass each over what is left), then
// the remaining subtrees.
func (s *searcher) eval(c *imap.SearchCriteria, cand []int) ([]int, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	cand = s.filterSets(c, cand)
	if len(cand) == 0 {
		return cand, nil
	}
	if searchHasMetaKeys(c) {
		cand = slices.DeleteFunc(cand, func(idx int) bool { return !s.matchMeta(c, s.meta[idx]) })
	}
	var err error
	for _, textPhase := range []bool{false, true} {
		if textPhase {
			if cand, err = s.filterText(c, cand); err != nil {
				return nil, err
			}
		}
		for i := range c.Not {
			if len(cand) == 0 {
				return cand, nil
			}
			if searchHasText(&c.Not[i]) != textPhase {
				continue
			}
			sub, err := s.eval(&c.Not[i], slices.Clone(cand))
			if err != nil {
				return nil, err
			}
			cand = searchSubtract(cand, sub)
		}
		for i := range c.Or {
			if len(cand) == 0 {
				return cand, nil
			}
			or := &c.Or[i]
			if (searchHasText(&or[0]) || searchHasText(&or[1])) != textPhase {
				continue
			}
			// Evaluate the cheaper side first; the other side only needs
			// the candidates the first did not already take.
			a, b := &or[0], &or[1]
			if searchHasText(a) && !searchHasText(b) {
				a, b = b, a
			}
			left, err := s.eval(a, slices.Clone(cand))
			if err != nil {
				return nil, err
			}
			rest := searchSubtract(slices.Clone(cand), left)
			right, err := s.eval(b, rest)
			if err != nil {
				return nil, err
			}
			cand = searchUnion(left, right)
		}
	}
	return cand, nil
}

// filterSets keeps the candidates in every sequence set and UID set of c.
func (s *searcher) filterSets(c *imap.SearchCriteria, cand []int) []int {
	n := len(s.view)
	for _, set := range c.SeqNum {
		if len(cand) == 0 {
			return cand
		}
		ivs := make([]searchInterval, 0, len(set))
		for _, r := range set {
			ivs = append(ivs, searchRange(r.Start, r.Stop, uint32(n)))
		}
		cand = keepInIntervals(cand, ivs, func(idx int) uint32 { return uint32(idx + 1) })
	}
	if len(c.UID) == 0 || len(cand) == 0 {
		return cand
	}
	var maxUID store.UID
	for _, u := range s.view {
		maxUID = max(maxUID, u)
	}
	for _, set := range c.UID {
		if len(cand) == 0 {
			return cand
		}
		ivs := make([]searchInterval, 0, len(set))
		for _, r := range set {
			ivs = append(ivs, searchRange(uint32(r.Start), uint32(r.Stop), uint32(maxUID)))
		}
		cand = keepInIntervals(cand, ivs, func(idx int) uint32 { return uint32(s.view[idx]) })
	}
	return cand
}

// keepInIntervals keeps the candidates whose number, num(idx), lies in
// one of ivs.
func keepInIntervals(cand []int, ivs []searchInterval, num func(idx int) uint32) []int {
	ivs = searchMergeIntervals(ivs)
	return slices.DeleteFunc(cand, func(idx int) bool { return !searchInIntervals(ivs, num(idx)) })
}

// matchMeta evaluates the flag, date and size keys of c on one message.
func (s *searcher) matchMeta(c *imap.SearchCriteria, m *store.MessageMeta) bool {
	if m == nil {
		return false
	}
	for _, f := range c.Flag {
		if !s.hasFlag(m, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if s.hasFlag(m, f) {
			return false
		}
	}
	if !c.Since.IsZero() || !c.Before.IsZero() {
		d := searchDay(m.InternalDate.In(s.loc))
		if !c.Since.IsZero() && d < searchDay(c.Since) {
			return false
		}
		if !c.Before.IsZero() && d >= searchDay(c.Before) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		var d int64
		if m.Envelope != nil && !m.Envelope.Date.IsZero() {
			d = searchDay(m.Envelope.Date)
		} else {
			d = searchDay(m.InternalDate.In(s.loc))
		}
		if !c.SentSince.IsZero() && d < searchDay(c.SentSince) {
			return false
		}
		if !c.SentBefore.IsZero() && d >= searchDay(c.SentBefore) {
			return false
		}
	}
	if c.Larger != 0 && m.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && m.Size >= c.Smaller {
		return false
	}
	for _, h := range c.Header {
		if !isAddressKey(h) {
			continue
		}
		if m.Envelope == nil {
			return false
		}
		var list []store.Address
		switch strings.ToLower(h.Key) {
		case "from":
			list = m.Envelope.From
		case "to":
			list = m.Envelope.To
		case "cc":
			list = m.Envelope.Cc
		case "bcc":
			list = m.Envelope.Bcc
		}
		if !searchAddresses(list, strings.ToLower(h.Value)) {
			return false
		}
	}
	return true
}

// filterText applies the Header, Body and Text keys of c, one
// store.SearchText call each over the candidates left.
func (s *searcher) filterText(c *imap.SearchCriteria, cand []int) ([]int, error) {
	var qs []store.TextQuery
	for _, h := range c.Header {
		if isAddressKey(h) {
			continue // matched against the addresses, in matchMeta
		}
		qs = append(qs, store.TextQuery{Kind: store.TextHeader, Header: h.Key, Needle: strings.ToLower(h.Value)})
	}
	for _, b := range c.Body {
		qs = append(qs, store.TextQuery{Kind: store.TextBody, Needle: strings.ToLower(b)})
	}
	for _, t := range c.Text {
		qs = append(qs, store.TextQuery{Kind: store.TextAll, Needle: strings.ToLower(t)})
	}
	for _, q := range qs {
		if len(cand) == 0 {
			return cand, nil
		}
		uids := make([]store.UID, len(cand))
		pos := make(map[store.UID]int, len(cand))
		for i, idx := range cand {
			uids[i] = s.view[idx]
			pos[s.view[idx]] = idx
		}
		slices.Sort(uids)
		hits, err := s.st.SearchText(s.ctx, s.user, s.mbox, q, uids)
		if err != nil {
			return nil, fmt.Errorf("searching message text: %w", err)
		}
		next := make([]int, 0, len(hits))
		for _, u := range hits {
			if idx, ok := pos[u]; ok {
				next = append(next, idx)
			}
		}
		slices.Sort(next)
		cand = slices.Compact(next)
	}
	return cand, nil
}

// hasFlag reports whether message m has flag f; \Recent is the session's
// (recent.go), the other flags are stored.
func (s *searcher) hasFlag(m *store.MessageMeta, f imap.Flag) bool {
	if strings.EqualFold(string(f), flagRecent) {
		_, ok := s.recent[m.UID]
		return ok
	}
	return searchHasFlag(m.Flags, f)
}

// searchHasFlag reports whether flags holds f, compared case-insensitively as
// IMAP flags are. \Recent is never stored, so it is never found.
func searchHasFlag(flags []string, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(g, string(f)) {
			return true
		}
	}
	return false
}
