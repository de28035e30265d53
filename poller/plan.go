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

// Why a planned message is retrieved.
const (
	// fetchNew: no ledger row names the identity.
	fetchNew = iota
	// fetchVerify: rows name the identity, but none can be trusted to be
	// the listed message (gone from an earlier listing, another size, or
	// an identity the listing gives to several messages): its content
	// decides what it is.
	fetchVerify
	// fetchProve: a message known by its listing that the policy deletes
	// now: retrieved so that the DELE rests on its bytes.
	fetchProve
)

// Kinds of proof that a listed message is content already stored: nothing
// is deleted upstream without one (see deletion).
const (
	// proofNone: not proven.
	proofNone = iota
	// proofDigest: retrieved in this session, and its whole-message
	// SHA-256 equals content that is durable in the store. It is the only
	// proof: neither a UIDL nor a size, nor a UIDL listed with the same
	// size at every poll since, says that the bytes are the same.
	proofDigest
)

// deletion is a DELE the pass may send: the message, why the policy
// deletes it, and what proves it is stored content.
type deletion struct {
	m     passMsg
	why   string
	proof int
}

// plan is what one poll pass does, decided from the listing and the ledger
// before any message is retrieved.
type plan struct {
	// all is the whole listing.
	all []passMsg
	// fetch lists the messages to retrieve, in listing order; purpose
	// says why each (by message number).
	fetch   []passMsg
	purpose map[int]int
	// rows holds the stored ledger rows (delivered or duplicates) of each
	// identity that is retrieved for fetchVerify or fetchProve, by digest:
	// what a retrieved message of that identity may turn out to be.
	rows map[string]map[string]store.LedgerKey
	// listed counts the messages the listing gives each identity.
	listed map[string]int
	// multi holds the identities the listing gives to more than one
	// message (twins on a server without UIDL, or a server listing one
	// UIDL twice): all of them are retrieved and told apart by content.
	multi map[string]int
	// wanted marks (by message number) the retrieved known messages the
	// policy would delete if their identity were proven: one that ends the
	// pass unproven is counted as such.
	wanted map[int]bool
	// digests maps every stored content digest of the account to the
	// identities holding it, when there is something to fetch: a retrieved
	// message with one of these digests is recorded, not stored again.
	digests map[string][]string
	// knownRefs lists the rows of the listed messages taken for stored
	// content without retrieving them. When the pass finds content that
	// left its old identity for a new one (the server renumbered), those
	// identities are no longer trusted: a renumbering server may have
	// given one of them to other content of the same size.
	knownRefs []store.LedgerRef
	// massNew is true when the listing has more new identities than ones
	// known by listing: only then does a renumbering found in the pass
	// make the known ones suspect (one message given a new UIDL, as when
	// another client moves it out of INBOX and back, must not make a big
	// mailbox be retrieved again).
	massNew bool
	// tooLarge lists new messages over max_message_size, to record once.
	tooLarge []passMsg
	// touch lists listed UIDLs whose LastSeen is stale.
	touch []string
	// gone lists the rows that no listed message can be any more: their
	// identity is not listed. They become tombstones.
	gone []store.LedgerRef
	// pendingGone counts the gone rows whose deletion was pending: the
	// deletion happened.
	pendingGone int
	// pendingClear lists UIDLs pending deletion that are still listed but
	// that the policy no longer deletes.
	pendingClear []string
	// unproven counts the messages the policy would delete that this
	// pass cannot prove before retrieving anything (over max_message_size).
	unproven  int
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

// isSynthetic reports whether id was made up by the poller (a server
// without UIDL): it names a header and a size, not one message.
func isSynthetic(id string) bool {
	return strings.HasPrefix(id, syntheticUIDLPrefix)
}

// makePlan decides a pass. It is a pure function of the policy, the listing
// (identities already resolved), the ledger (read with ledgerQuery(now),
// which decided each row's Stale and Prunable), the in-memory verified
// sizes and the time.
//
// A listed message is taken for stored content without retrieving it only
// when its identity has a live row (not gone) of the listed size. Every
// message the policy deletes is retrieved first and proven by its digest.
func makePlan(pol policy, msgs []passMsg, ledger []store.LedgerKey, verified map[string]int64, now time.Time) plan {
	pl := plan{all: msgs, purpose: map[int]int{}}
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

	// How many messages the listing gives each identity; almost always 1.
	count := make(map[string]int, len(msgs))
	for _, m := range msgs {
		count[m.id]++
	}
	pl.listed = count
	fetch := func(m passMsg, why int) {
		pl.fetch = append(pl.fetch, m)
		pl.purpose[m.item.Num] = why
	}
	// trusted and live are rebuilt for each identity and not kept past
	// it: one pair of buffers serves the whole listing.
	var trusted, live []store.LedgerKey
	// planned holds the identities listed more than once that were
	// planned with their first message (single ones need no record).
	var planned map[string]bool
	for i, m := range msgs {
		n := count[m.id]
		if n > 1 {
			if planned[m.id] {
				continue // every message of the identity was planned with the first
			}
			if planned == nil {
				planned = map[string]bool{}
			}
			planned[m.id] = true
		}
		group := msgs[i : i+1 : i+1] // no allocation for the usual single message
		if n > 1 {
			group = nil
			for _, o := range msgs {
				if o.id == m.id {
					group = append(group, o)
				}
			}
			if pl.multi == nil {
				pl.multi = map[string]int{}
			}
			pl.multi[m.id] = n
		}
		rs := rows[m.id]
		if len(rs) == 0 {
			for _, o := range group {
				if pol.tooLarge(o.item.Size) {
					pl.tooLarge = append(pl.tooLarge, o)
				} else {
					fetch(o, fetchNew)
					pl.newCount++
				}
			}
			continue
		}
		if stale(rs) {
			pl.touch = append(pl.touch, m.id)
		}
		trusted, live = trusted[:0], live[:0]
		stored, tooLargeRow, pending := 0, false, false
		for _, e := range rs {
			switch {
			case isStoredRow(e):
				stored++
				pending = pending || e.DeletePending
				if !e.Deleted {
					live = append(live, e)
				}
			case e.Skipped == reasonTooLarge:
				tooLargeRow = true
			}
		}
		if stored == 0 {
			if tooLargeRow && !pol.tooLarge(m.item.Size) {
				// The limit was raised (or the message shrank): fetch it now.
				for _, o := range group {
					fetch(o, fetchNew)
				}
			}
			continue // skipped for good (too large, or another reason)
		}
		for _, e := range live {
			if e.Size == m.item.Size {
				trusted = append(trusted, e)
			}
		}
		if len(trusted) == 0 && len(live) > 0 {
			if vs, ok := verified[m.id]; ok && vs == m.item.Size {
				trusted = live // the listed size was proven to be this content's
			}
		}
		// Without retrieving it, a listed message is taken for the content
		// of its live rows when its own UIDL is listed once with a live
		// row's size, or every live row of its identity is listed once
		// with its size. That is enough not to store it again; it is not
		// enough to delete it (RFC 1939 lets a server give a UIDL to new
		// content once the old message is gone, and a swap between two
		// polls leaves no gap in the listings).
		knownByListing := (n == 1 && len(trusted) > 0 && !isSynthetic(m.id)) || (len(trusted) == n && len(live) == n)
		var why string
		if knownByListing {
			why = pol.deleteReason(stateOf(trusted), now)
		} else {
			why = pol.deleteReason(stateOf(rs), now)
		}
		if why == "" && pending {
			pl.pendingClear = append(pl.pendingClear, m.id)
		}
		if knownByListing && why == "" {
			for _, e := range trusted {
				pl.knownRefs = append(pl.knownRefs, store.LedgerRef{UIDL: e.UIDL, Digest: e.Digest})
			}
			continue
		}
		purpose := fetchVerify
		if knownByListing {
			purpose = fetchProve
		}
		if pl.rows == nil {
			pl.rows = map[string]map[string]store.LedgerKey{}
		}
		ds := make(map[string]store.LedgerKey, len(rs))
		for _, e := range rs {
			if isStoredRow(e) {
				ds[e.Digest] = e
			}
		}
		pl.rows[m.id] = ds
		for _, o := range group {
			if pol.tooLarge(o.item.Size) {
				// max_message_size was lowered below a stored message's
				// size: it is not retrieved, so it cannot be proven.
				if why != "" {
					pl.unproven++
				}
				continue
			}
			fetch(o, purpose)
			if why != "" {
				if pl.wanted == nil {
					pl.wanted = map[int]bool{}
				}
				pl.wanted[o.item.Num] = true
			}
		}
	}

	// Rows whose identity is not listed are gone: never again proof of
	// what a listed message is.
	for _, e := range ledger {
		if count[e.UIDL] == 0 && !e.Deleted && (isStoredRow(e) || e.DeletePending) {
			pl.gone = append(pl.gone, store.LedgerRef{UIDL: e.UIDL, Digest: e.Digest})
			if e.DeletePending {
				pl.pendingGone++
			}
		}
	}

	pl.massNew = pl.newCount > len(pl.knownRefs)
	if len(pl.fetch) > 0 {
		pl.digests = make(map[string][]string, len(ledger))
		for _, e := range ledger {
			if isStoredRow(e) && e.Digest != "" {
				pl.digests[e.Digest] = append(pl.digests[e.Digest], e.UIDL)
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

// stateOf summarises the stored rows among rs for the policy: stored since
// the earliest, expunged when every delivered row is.
func stateOf(rs []store.LedgerKey) msgState {
	var st msgState
	delivered := 0
	expunged := 0
	for _, e := range rs {
		if !isStoredRow(e) {
			continue
		}
		st.Stored = true
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
