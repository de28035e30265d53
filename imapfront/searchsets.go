package imapfront

import (
	"sort"
	"time"
)

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
	lo, hi := staticRange(start, stop, last)
	return searchInterval{lo, hi}
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
