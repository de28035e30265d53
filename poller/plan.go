package poller

import (
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Ledger maintenance intervals.
const (
	// ledgerRetention is how long a ledger row (a tombstone once the
	// message is gone upstream) is kept after its UIDL was last listed.
	// Within it, a server that lists old messages again does not get them
	// imported twice.
	ledgerRetention = 90 * 24 * time.Hour
	// touchEvery is how stale a listed row's LastSeen may get before the
	// poller refreshes it; polls in between write nothing to the ledger.
	// A row is refreshed at the first poll that lists it touchEvery or
	// more after its LastSeen, so LastSeen lags the last listing by less
	// than touchEvery plus one poll interval, far inside ledgerRetention.
	touchEvery = 6 * time.Hour
	// pruneEvery is how often, at most, an account's expired tombstones are
	// dropped; a pass whose ledger read found none expired does not try.
	pruneEvery = 24 * time.Hour
)

// ledgerQuery is what a pass at now asks of every ledger row: is its
// LastSeen due for a refresh (touchEvery), is it an expired tombstone
// (ledgerRetention).
func ledgerQuery(now time.Time) store.LedgerKeyQuery {
	return store.LedgerKeyQuery{SeenBefore: now.Add(-touchEvery), PruneBefore: now.Add(-ledgerRetention)}
}

// passMsg is one message of an upstream listing with its identity: the
// server's UIDL, or a synthetic one for servers without UIDL.
type passMsg struct {
	item listItem
	id   string
}

// plan is what one poll pass does, decided from the listing and the ledger
// before any message is retrieved.
type plan struct {
	// all is the whole listing.
	all []passMsg
	// fetch lists the messages to retrieve, in listing order.
	fetch []passMsg
	// verify marks fetched messages whose UIDL is known but whose size
	// differs from every stored row: retrieved to compare digests (same
	// digest: known; other: a new message reusing the UIDL).
	verify map[string]bool
	// known maps each verified UIDL to the digests already stored for it.
	known map[string]map[string]bool
	// tooLarge lists new messages over max_message_size, to record once.
	tooLarge []passMsg
	// dupes lists later occurrences of an identity already listed.
	dupes []passMsg
	// touch lists listed UIDLs whose LastSeen is stale.
	touch []string
	// del lists known, stored messages the policy deletes now, with why.
	del    []passMsg
	delWhy []string
	// pendingGone lists UIDLs whose deletion was pending and that are no
	// longer listed: the deletion happened.
	pendingGone []string
	// pendingClear lists UIDLs pending deletion that are still listed but
	// that the policy no longer deletes.
	pendingClear []string
	// mass is true when the listing looks like a mass UIDL change; digests
	// then maps every stored content digest to its UIDL, so retrieved
	// "new" messages that are already stored are recorded, not delivered.
	mass      bool
	digests   map[string]string
	knownLive int
	newCount  int
	// prunable counts the ledger rows PruneLedger would drop now.
	prunable int
}

// isStoredRow reports whether a ledger row stands for content that is
// durable in the store.
func isStoredRow(e store.LedgerKey) bool {
	return e.Skipped == "" || isDuplicateReason(e.Skipped)
}

// makePlan decides a pass. It is a pure function of the policy, the listing
// (identities already resolved), the ledger (read with ledgerQuery(now),
// which decided each row's Stale and Prunable), the in-memory verified
// sizes and the time.
func makePlan(pol policy, msgs []passMsg, ledger []store.LedgerKey, verified map[string]int64, now time.Time) plan {
	pl := plan{all: msgs, verify: map[string]bool{}, known: map[string]map[string]bool{}}
	// Group the rows by UIDL: sorted (as LedgerKeys returns them), each
	// UIDL's rows are a subslice, with no allocation per UIDL.
	byUIDL := func(a, b store.LedgerKey) int { return strings.Compare(a.UIDL, b.UIDL) }
	if !slices.IsSortedFunc(ledger, byUIDL) {
		ledger = slices.Clone(ledger)
		slices.SortStableFunc(ledger, byUIDL)
	}
	rows := make(map[string][]store.LedgerKey, len(ledger))
	for i := 0; i < len(ledger); {
		j, live := i, false
		for ; j < len(ledger) && ledger[j].UIDL == ledger[i].UIDL; j++ {
			e := ledger[j]
			live = live || (isStoredRow(e) && !e.Deleted)
			if e.Prunable {
				pl.prunable++
			}
		}
		rows[ledger[i].UIDL] = ledger[i:j:j]
		if live {
			pl.knownLive++
		}
		i = j
	}

	seen := make(map[string]bool, len(msgs))
	listedKnown := 0
	// stored and match are rebuilt for each message and not kept past it:
	// one pair of buffers serves the whole listing.
	var stored, match []store.LedgerKey
	for _, m := range msgs {
		if seen[m.id] {
			pl.dupes = append(pl.dupes, m)
			continue
		}
		seen[m.id] = true
		rs := rows[m.id]
		if len(rs) == 0 {
			if pol.tooLarge(m.item.Size) {
				pl.tooLarge = append(pl.tooLarge, m)
			} else {
				pl.fetch = append(pl.fetch, m)
				pl.newCount++
			}
			continue
		}
		listedKnown++
		if stale(rs) {
			pl.touch = append(pl.touch, m.id)
		}
		stored, match = stored[:0], match[:0]
		tooLargeRow := false
		for _, e := range rs {
			switch {
			case isStoredRow(e):
				stored = append(stored, e)
				if e.Size == m.item.Size {
					match = append(match, e)
				}
			case e.Skipped == reasonTooLarge:
				tooLargeRow = true
			}
		}
		if len(stored) == 0 {
			if tooLargeRow && !pol.tooLarge(m.item.Size) {
				// The limit was raised (or the message shrank): fetch it now.
				pl.fetch = append(pl.fetch, m)
			}
			continue // skipped for good (too large, or another reason)
		}
		held := match // the rows of the listed content
		if len(held) == 0 {
			if vs, ok := verified[m.id]; ok && vs == m.item.Size {
				held = stored // not match = stored: the two buffers stay apart
			}
		}
		if len(held) == 0 {
			pl.fetch = append(pl.fetch, m)
			pl.verify[m.id] = true
			ds := map[string]bool{}
			for _, e := range stored {
				ds[e.Digest] = true
			}
			pl.known[m.id] = ds
			continue
		}
		st := stateOf(held)
		pending := false
		for _, e := range held {
			pending = pending || e.DeletePending
		}
		if why := pol.deleteReason(st, now); why != "" {
			pl.del = append(pl.del, m)
			pl.delWhy = append(pl.delWhy, why)
		} else if pending {
			pl.pendingClear = append(pl.pendingClear, m.id)
		}
	}

	gone := map[string]bool{}
	for _, e := range ledger {
		if e.DeletePending && !seen[e.UIDL] && !gone[e.UIDL] {
			gone[e.UIDL] = true
			pl.pendingGone = append(pl.pendingGone, e.UIDL)
		}
	}

	pl.mass = massUIDLChange(pl.knownLive, listedKnown, pl.newCount)
	if pl.mass {
		pl.digests = make(map[string]string, len(ledger))
		for _, e := range ledger {
			if isStoredRow(e) && e.Digest != "" {
				pl.digests[e.Digest] = e.UIDL
			}
		}
	}
	return pl
}

// stale reports whether any row's LastSeen is due for a refresh (never
// set, or touchEvery or more before the pass: see ledgerQuery).
func stale(rs []store.LedgerKey) bool {
	return slices.ContainsFunc(rs, func(e store.LedgerKey) bool { return e.Stale })
}

// stateOf summarises the stored rows of one listed message for the policy:
// stored since the earliest row, expunged when every delivered row is.
func stateOf(match []store.LedgerKey) msgState {
	st := msgState{Stored: true}
	delivered := 0
	expunged := 0
	for _, e := range match {
		if st.StoredAt.IsZero() || (!e.StoredAt.IsZero() && e.StoredAt.Before(st.StoredAt)) {
			st.StoredAt = e.StoredAt
		}
		if e.Skipped == "" {
			delivered++
			if e.Expunged {
				expunged++
			}
		}
	}
	st.Expunged = delivered > 0 && expunged == delivered
	return st
}
