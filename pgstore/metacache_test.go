package pgstore

import (
	"testing"

	"github.com/popbridge/popbridge/store"
)

func TestMetaCacheEvictsOldestFirst(t *testing.T) {
	c := newMetaCache(2)
	a, b, d := &metaInfo{size: 1}, &metaInfo{size: 2}, &metaInfo{size: 3}
	c.add(1, a)
	c.add(2, b)
	c.add(1, &metaInfo{size: 99}) // already there: kept as it was
	c.add(3, d)                   // evicts 1
	infos := make([]*metaInfo, 3)
	if n := c.get([]store.MessageID{1, 2, 3}, infos); n != 2 || infos[0] != nil || infos[1] != b || infos[2] != d {
		t.Errorf("get = %d, %v", n, infos)
	}
	if off := newMetaCache(-1); off.get([]store.MessageID{1}, infos[:1]) != 0 {
		t.Errorf("a disabled cache found something")
	}
	newMetaCache(-1).add(1, a) // a nil cache takes nothing, without panicking
}
