package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/popbridge/popbridge/store"
)

// inSlab reports whether b's bytes lie in slab (addresses compared only).
func inSlab(b, slab []byte) bool {
	if cap(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(slab)))
	return p >= lo && p < lo+uintptr(cap(slab))
}

// TestBodiesInto: BodiesInto reads every message, over several groups of
// reads, into the buffer alloc gave for it (exactly that buffer, the bytes
// Body reads) or, where alloc gave none, into the store's own; where
// alloc's buffer was too small, into a larger copy, leaving the caller's
// slab beyond each buffer untouched; and no buffer of the caller's ever
// goes into the store's pool.
func TestBodiesInto(t *testing.T) {
	s, u, mb := aliceInbox(t, Options{PollInterval: time.Hour})
	ctx := context.Background()
	sizes := []int{0, 1, 7999, 8000, 8001, 20_000, 300_003}
	want := map[store.UID][]byte{}
	var uids []store.UID
	for i := range 2*bodiesBatch + 7 {
		raw := msg(fmt.Sprint("m", i), strings.Repeat(fmt.Sprint(i%10), sizes[i%len(sizes)]))
		ent := mustAppend(t, s, u.ID, mb.ID, raw)
		b, err := s.Body(ctx, u.ID, mb.ID, ent.UID)
		if err != nil {
			t.Fatal(err)
		}
		want[ent.UID], uids = b, append(uids, ent.UID)
	}
	const sentinel = 0xA5
	for _, mode := range []string{"exact", "every other", "too small"} {
		t.Run(mode, func(t *testing.T) {
			var total int
			for _, b := range want {
				total += len(b)
			}
			slab := bytes.Repeat([]byte{sentinel}, 2*total+1024)
			var (
				mu     sync.Mutex
				off    int
				given  = map[store.UID][]byte{} // the piece alloc gave, full capacity
				called = map[store.UID]int{}
			)
			alloc := func(uid store.UID, n int) []byte {
				mu.Lock()
				defer mu.Unlock()
				called[uid]++
				if n != len(want[uid]) {
					t.Errorf("uid %d: alloc(%d), its size is %d", uid, n, len(want[uid]))
				}
				switch {
				case mode == "every other" && uid%2 == 0:
					return nil
				case mode == "too small":
					n /= 2
				}
				b := slab[off : off : off+n]
				given[uid] = slab[off : off+n]
				off += n + 16 // a gap the store must not write into
				return b
			}
			seen := 0
			err := s.BodiesInto(ctx, u.ID, mb.ID, uids, alloc, func(uid store.UID, raw []byte, damaged error) error {
				seen++
				if !bytes.Equal(raw, want[uid]) || damaged != nil {
					t.Errorf("uid %d: %d bytes, want %d (damaged %v)", uid, len(raw), len(want[uid]), damaged)
				}
				mu.Lock()
				g, ok := given[uid]
				mu.Unlock()
				into := len(raw) > 0 && inSlab(raw, slab)
				switch {
				case ok && mode != "too small" && len(raw) > 0 && (!into || &raw[0] != &g[:1][0]):
					t.Errorf("uid %d: not read into the buffer alloc gave", uid)
				case (!ok || mode == "too small") && into:
					t.Errorf("uid %d: read into the caller's slab without a piece that holds it", uid)
				}
				return nil
			})
			if err != nil || seen != len(uids) {
				t.Fatalf("BodiesInto: %v, %d of %d messages", err, seen, len(uids))
			}
			for _, uid := range uids {
				if called[uid] != 1 {
					t.Errorf("uid %d: alloc called %d times", uid, called[uid])
				}
			}
			// Nothing written outside what the store was given to fill.
			used := make([]bool, len(slab))
			for uid, g := range given {
				start := int(uintptr(unsafe.Pointer(unsafe.SliceData(g[:cap(g)][:1]))) - uintptr(unsafe.Pointer(unsafe.SliceData(slab))))
				n := min(len(g), len(want[uid]))
				if mode != "too small" {
					if !bytes.Equal(slab[start:start+n], want[uid][:n]) {
						t.Errorf("uid %d: its piece of the slab holds other bytes", uid)
					}
				}
				for i := start; i < start+n; i++ {
					used[i] = true
				}
			}
			for i, b := range slab {
				if !used[i] && b != sentinel {
					t.Fatalf("slab byte %d (of %d) written outside the pieces alloc gave", i, len(slab))
				}
			}
			s.bufs.mu.Lock()
			for _, b := range s.bufs.free {
				if inSlab(b, slab) {
					t.Errorf("a buffer of the caller's went into the store's pool")
				}
			}
			s.bufs.mu.Unlock()
		})
	}

	// An error of fn stops the call: returned, fn not called again.
	stop := errors.New("stop")
	calls := 0
	err := s.BodiesInto(ctx, u.ID, mb.ID, uids, func(store.UID, int) []byte { return nil }, func(store.UID, []byte, error) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("stopped at the 3rd message: %v after %d calls", err, calls)
	}
}
