package imapfront

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/store"
)

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
