package poller

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// RefetchWant is a message to fetch again from its upstream: its UIDL on
// the account (as the ledger records it, synthetic on servers without
// UIDL) and the whole-message digest the ledger holds.
type RefetchWant struct {
	UIDL   string
	Digest string
}

// Refetch connects to a's server and RETRs every wanted message that is
// still there, for popbridge verify -repair. fn gets the bytes of each
// message whose SHA-256 digest is the ledger's, so it receives exactly the
// bytes that were stored; a message that is gone, or whose bytes differ (a
// reused UIDL), is not passed to fn. Refetch never deletes anything
// upstream. It returns how many messages fn received; an error from fn
// stops it and is returned.
func (p *Poller) Refetch(ctx context.Context, a Account, wants []RefetchWant, fn func(w RefetchWant, raw []byte) error) (int, error) {
	if len(wants) == 0 {
		return 0, nil
	}
	s, err := p.dial(ctx, a)
	if err != nil {
		return 0, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Abort()
		}
	}()
	list, err := s.List(ctx)
	if err != nil {
		return 0, accountErr(a, "list", err)
	}
	byUIDL := map[string][]RefetchWant{}
	synthetic := false
	for _, w := range wants {
		byUIDL[w.UIDL] = append(byUIDL[w.UIDL], w)
		synthetic = synthetic || strings.HasPrefix(w.UIDL, syntheticUIDLPrefix)
	}
	if synthetic {
		// A server without UIDL: the ledger's identity is the header
		// digest and size, computed the way a poll does.
		var nums []int
		for _, it := range list {
			if it.UIDL == "" {
				nums = append(nums, it.Num)
			}
		}
		if len(nums) > 0 {
			digests, err := s.HeaderDigests(ctx, nums)
			if err != nil {
				return 0, accountErr(a, "top", err)
			}
			for i, it := range list {
				if d, found := digests[it.Num]; found && it.UIDL == "" {
					list[i].UIDL = syntheticUIDL(d, it.Size)
				}
			}
		}
	}
	var items []listItem
	for _, it := range list {
		if len(byUIDL[it.UIDL]) > 0 {
			items = append(items, it)
		}
	}
	got := 0
	errFn := errors.New("poller: refetch callback failed")
	var fnErr error
	err = s.Retrieve(ctx, items, a.MaxMessageSize, func(it listItem, raw []byte) error {
		d := contentDigest(raw)
		for _, w := range byUIDL[it.UIDL] {
			if w.Digest != d {
				continue
			}
			if err := fn(w, raw); err != nil {
				fnErr = err
				return errFn
			}
			got++
		}
		return nil
	})
	if fnErr != nil {
		return got, fnErr
	}
	if err != nil {
		return got, accountErr(a, "retr", err)
	}
	ok = true
	if err := s.Quit(ctx); err != nil {
		return got, accountErr(a, "quit", fmt.Errorf("after refetching: %w", err))
	}
	return got, nil
}
