package imapfront

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
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
func searchMailbox(ctx context.Context, st *store.Store, user store.UserID, mbox store.MailboxID, view []store.UID, criteria *imap.SearchCriteria, now time.Time) ([]store.UID, error) {
	return searchView(ctx, st, user, mbox, view, nil, criteria, now)
}

// searchView is searchMailbox for a session's view, whose \Recent
// messages are recent (RECENT, NEW, OLD).
func searchView(ctx context.Context, st *store.Store, user store.UserID, mbox store.MailboxID, view []store.UID, recent map[store.UID]struct{}, criteria *imap.SearchCriteria, now time.Time) ([]store.UID, error) {
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

// substituteSearchRes returns a copy of criteria in which every SEARCHRES
// marker "$" (imap.IsSearchRes) is replaced by saved, the UIDs the session
// kept from its last SEARCH RETURN (SAVE) (RFC 5182); the empty set when none
// was saved. criteria is not modified.
func substituteSearchRes(criteria *imap.SearchCriteria, saved []store.UID) *imap.SearchCriteria {
	if criteria == nil {
		return nil
	}
	c := *criteria
	if len(c.UID) > 0 {
		c.UID = make([]imap.UIDSet, len(criteria.UID))
		for i, set := range criteria.UID {
			if imap.IsSearchRes(set) {
				var s imap.UIDSet
				for _, u := range saved {
					s.AddNum(imap.UID(u))
				}
				if s == nil {
					s = imap.UIDSet{}
				}
				c.UID[i] = s
				continue
			}
			c.UID[i] = set
		}
	}
	if len(c.Not) > 0 {
		c.Not = make([]imap.SearchCriteria, len(criteria.Not))
		for i := range criteria.Not {
			c.Not[i] = *substituteSearchRes(&criteria.Not[i], saved)
		}
	}
	if len(c.Or) > 0 {
		c.Or = make([][2]imap.SearchCriteria, len(criteria.Or))
		for i := range criteria.Or {
			c.Or[i][0] = *substituteSearchRes(&criteria.Or[i][0], saved)
			c.Or[i][1] = *substituteSearchRes(&criteria.Or[i][1], saved)
		}
	}
	return &c
}

// checkSearchCriteria refuses trees that are too deep or too large and keys
// searchMailbox cannot evaluate.
func checkSearchCriteria(c *imap.SearchCriteria, depth int, keys, textKeys *int) error {
	if depth > searchMaxDepth {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("SEARCH criteria nested deeper than %d levels", searchMaxDepth),
		}
	}
	*keys += len(c.SeqNum) + len(c.UID) + len(c.Header) + len(c.Body) + len(c.Text) +
		len(c.Flag) + len(c.NotFlag) + len(c.Not) + len(c.Or)
	for _, t := range []time.Time{c.Since, c.Before, c.SentSince, c.SentBefore} {
		if !t.IsZero() {
			*keys++
		}
	}
	if c.Larger != 0 {
		*keys++
	}
	if c.Smaller != 0 {
		*keys++
	}
	if *keys > searchMaxKeys {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("SEARCH criteria have more than %d keys", searchMaxKeys),
		}
	}
	*textKeys += len(c.Header) + len(c.Body) + len(c.Text)
	if *textKeys > searchMaxTextKeys {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("SEARCH criteria have more than %d text keys", searchMaxTextKeys),
		}
	}
	if c.ModSeq != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeBad,
			Text: "MODSEQ search key requires CONDSTORE, which is not supported",
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			return &imap.Error{
				Type: imap.StatusResponseTypeBad,
				Text: "no saved SEARCH result to use as $",
			}
		}
	}
	for i := range c.Not {
		if err := checkSearchCriteria(&c.Not[i], depth+1, keys, textKeys); err != nil {
			return err
		}
	}
	for i := range c.Or {
		for j := range c.Or[i] {
			if err := checkSearchCriteria(&c.Or[i][j], depth+1, keys, textKeys); err != nil {
				return err
			}
		}
	}
	return nil
}

// searchNeedsMeta reports whether any key of the tree is evaluated from
// message metadata: flags, dates or sizes; with flagsOnly, whether some key
// needs flags and none needs dates or sizes.
func searchNeedsMeta(c *imap.SearchCriteria, flagsOnly bool) bool {
	flags, other := false, false
	var walk func(c *imap.SearchCriteria)
	walk = func(c *imap.SearchCriteria) {
		flags = flags || len(c.Flag) > 0 || len(c.NotFlag) > 0
		other = other || searchHasDateSizeKeys(c) || searchHasAddressKeys(c)
		for i := range c.Not {
			walk(&c.Not[i])
		}
		for i := range c.Or {
			walk(&c.Or[i][0])
			walk(&c.Or[i][1])
		}
	}
	walk(c)
	if flagsOnly {
		return flags && !other
	}
	return other
}

// searchHasMetaKeys reports whether c itself (not its subtrees) has keys
// evaluated from metadata.
func searchHasMetaKeys(c *imap.SearchCriteria) bool {
	return len(c.Flag) > 0 || len(c.NotFlag) > 0 || searchHasDateSizeKeys(c) || searchHasAddressKeys(c)
}

// isAddressKey reports whether h is FROM, TO, CC or BCC with a value: such
// a key matches the message's parsed addresses (searchAddresses), as
// Dovecot does, not the raw header text. HEADER FROM "" (does the field
// exist) stays a text key.
func isAddressKey(h imap.SearchCriteriaHeaderField) bool {
	if h.Value == "" {
		return false
	}
	switch strings.ToLower(h.Key) {
	case "from", "to", "cc", "bcc":
		return true
	}
	return false
}

// searchHasAddressKeys reports whether c itself has an address key.
func searchHasAddressKeys(c *imap.SearchCriteria) bool {
	return slices.ContainsFunc(c.Header, isAddressKey)
}

// searchAddresses reports whether needle (lower case) is a substring of
// the display name or the mailbox@host of an address in list, or of a
// group's name: "realfrom" finds "RealFrom <user-from@domain.org>",
// "ser-fro" finds user-from@domain.org, and "user-from@domain.org" finds
// <user-from (comment)@ (comment) domain.org>, whose header text does
// not hold it.
func searchAddresses(list []store.Address, needle string) bool {
	for _, a := range list {
		switch {
		case a.Host == "" && a.Mailbox == "": // end of a group
		case a.Host == "": // start of a group: its name
			if strings.Contains(strings.ToLower(a.Mailbox), needle) {
				return true
			}
		default:
			if strings.Contains(strings.ToLower(a.Name), needle) ||
				strings.Contains(strings.ToLower(a.Mailbox+"@"+a.Host), needle) {
				return true
			}
		}
	}
	return false
}

func searchHasDateSizeKeys(c *imap.SearchCriteria) bool {
	return !c.Since.IsZero() || !c.Before.IsZero() || !c.SentSince.IsZero() || !c.SentBefore.IsZero() ||
		c.Larger != 0 || c.Smaller != 0
}

// searchHasNotOr reports whether the tree holds a NOT or an OR key.
func searchHasNotOr(c *imap.SearchCriteria) bool {
	return len(c.Not) > 0 || len(c.Or) > 0
}

// searchHasText reports whether evaluating the tree needs store.SearchText.
func searchHasText(c *imap.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 || slices.ContainsFunc(c.Header, func(h imap.SearchCriteriaHeaderField) bool { return !isAddressKey(h) }) {
		return true
	}
	for i := range c.Not {
		if searchHasText(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if searchHasText(&c.Or[i][0]) || searchHasText(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// searcher holds the state of one searchMailbox call. Candidates are
// ascending indexes into view.
type searcher struct {
	ctx  context.Context
	st   *store.Store
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
		ivs = searchMergeIntervals(ivs)
		cand = slices.DeleteFunc(cand, func(idx int) bool { return !searchInIntervals(ivs, uint32(idx+1)) })
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
		ivs = searchMergeIntervals(ivs)
		cand = slices.DeleteFunc(cand, func(idx int) bool { return !searchInIntervals(ivs, uint32(s.view[idx])) })
	}
	return cand
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

// searchDay is the calendar date of t in t's own location, as a count of
// days, so that dates compare without time of day or zone.
func searchDay(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// searchInterval is a closed range of sequence numbers or UIDs.
type searchInterval struct{ lo, hi uint32 }

// searchRange turns one range of a set into an searchInterval, with 0 ("*")
// standing for last, the highest number in use, and reversed ranges
// ("5:3", "*:4") put in order. With an empty view last is 0 and the
// searchInterval holds nothing that can match.
func searchRange(start, stop, last uint32) searchInterval {
	if start == 0 {
		start = last
	}
	if stop == 0 {
		stop = last
	}
	if start > stop {
		start, stop = stop, start
	}
	return searchInterval{start, stop}
}

// searchMergeIntervals sorts and merges overlapping intervals.
func searchMergeIntervals(ivs []searchInterval) []searchInterval {
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].lo < ivs[j].lo })
	out := ivs[:0]
	for _, iv := range ivs {
		if k := len(out) - 1; k >= 0 && iv.lo <= out[k].hi {
			out[k].hi = max(out[k].hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// searchInIntervals reports whether q lies in one of the sorted, disjoint ivs.
func searchInIntervals(ivs []searchInterval, q uint32) bool {
	if q == 0 {
		return false
	}
	i := sort.Search(len(ivs), func(i int) bool { return ivs[i].hi >= q })
	return i < len(ivs) && ivs[i].lo <= q
}

// searchSubtract removes from a (ascending) every element of b (ascending),
// reusing a's storage.
func searchSubtract(a, b []int) []int {
	out := a[:0]
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

// searchUnion returns the ascending union of two ascending, disjoint lists.
func searchUnion(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else if b[j] < a[i] {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
