package imapfront

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/store"
)

// target is one message a command addresses: its sequence number in the
// client view and its UID.
type target struct {
	seq uint32
	uid store.UID
}

// resolve maps a sequence set, UID set or SEARCHRES "$" to the messages of
// the client view, ascending by sequence number, without duplicates. "*" is
// the last message (or highest UID) the client knows; a reversed or "n:*"
// range beyond it still includes the last message (RFC 3501 section 6.4.8);
// numbers outside the view match nothing. Must be called by the owning
// session.
func (v *view) resolve(numSet imap.NumSet, saved []store.UID) []target {
	uids := v.uids
	var res []target
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(uids))
		for _, r := range set {
			start, stop := staticRange(r.Start, r.Stop, n)
			if start == 0 {
				start = 1
			}
			for seq := start; seq <= stop && seq <= n; seq++ {
				res = append(res, target{seq: seq, uid: uids[seq-1]})
				if seq == ^uint32(0) {
					break
				}
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			for _, uid := range saved {
				if i, ok := slices.BinarySearch(uids, uid); ok {
					res = append(res, target{seq: uint32(i) + 1, uid: uid})
				}
			}
			return res
		}
		var last uint32
		if len(uids) > 0 {
			last = uint32(uids[len(uids)-1])
		}
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), last)
			i := sort.Search(len(uids), func(i int) bool { return uint32(uids[i]) >= start })
			for ; i < len(uids) && uint32(uids[i]) <= stop; i++ {
				res = append(res, target{seq: uint32(i) + 1, uid: uids[i]})
			}
		}
	}
	if len(res) > 1 {
		slices.SortFunc(res, func(a, b target) int { return int(a.seq) - int(b.seq) })
		res = slices.CompactFunc(res, func(a, b target) bool { return a.seq == b.seq })
	}
	return res
}

// staticRange substitutes "*" (0) by max and orders the bounds.
func staticRange(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

// targetUIDs returns the UIDs of ts.
func targetUIDs(ts []target) []store.UID {
	out := make([]store.UID, len(ts))
	for i, t := range ts {
		out[i] = t.uid
	}
	return out
}
