package poller

import (
	"context"
	"sync"

	"github.com/popbridge/popbridge/store"
)

// classifier decides what each retrieved message is, from its digest: the
// content its identity named before (known), content stored under another
// identity (duplicate), content of an earlier message of the same pass
// (twin), or new. Of two messages of a pass with one content, the one
// classified first is stored and the other recorded as its twin once the
// pass's commits are done.
type classifier struct {
	pl *plan
	st *acctState

	mu sync.Mutex // guards the fields below and st.verified
	// claims maps the digest of every message classified new in this pass
	// to its claim.
	claims map[string]*claim
	an     store.IdentityAnomalies
	// distrusted is set once the plan's knownRefs are marked gone.
	distrusted bool
}

// distrustKnown marks, once per pass, the rows of the messages the pass
// took for stored without retrieving them as gone, when the server
// renumbered most of the maildrop (plan.massNew): such a server may have
// given an old UIDL to other content of the same size, so the next pass
// retrieves and compares them.
func (cl *classifier) distrustKnown(ctx context.Context, sink Sink, account string) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.distrusted || len(cl.pl.knownRefs) == 0 || !cl.pl.massNew {
		return nil
	}
	if err := sink.MarkGone(ctx, account, cl.pl.knownRefs); err != nil {
		return err
	}
	cl.distrusted = true
	return nil
}

// claim is a pass's first message with a content: the one that stores it.
type claim struct {
	id string
	// committed is set once its delivery is durable; a twin is recorded
	// only then.
	committed bool
}

func newClassifier(pl *plan, st *acctState) *classifier {
	return &classifier{pl: pl, st: st, claims: map[string]*claim{}}
}

// classify sets f.kind (f.digest already computed).
func (cl *classifier) classify(f *fetchedMsg) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	own, hadRows := cl.pl.rows[f.m.id]
	if !hadRows {
		// A new identity whose rows were all skipped (too large) has
		// no stored content of its own either.
		own = nil
	}
	if cl.pl.multi[f.m.id] > 1 {
		cl.an.Twins++
	}
	if e, ok := own[f.digest]; ok {
		f.kind, f.row = fetchedKnown, e
		if e.Size != f.m.item.Size {
			cl.st.verified[f.m.id] = f.m.item.Size
		}
		return
	}
	if len(own) > 0 {
		// The identity named other content before: the UIDL was reused.
		cl.an.UIDLReused++
	}
	if us, ok := cl.pl.digests[f.digest]; ok {
		f.kind, f.dupOf = fetchedDuplicate, us[0]
		if len(own) == 0 {
			cl.an.Renumbered++
		}
		stillListed := false
		for _, u := range us {
			if u != f.m.id && cl.pl.listed[u] > 0 {
				stillListed = true
				if cl.pl.rows[u] == nil {
					f.moved = append(f.moved, store.LedgerRef{UIDL: u, Digest: f.digest})
				}
			}
		}
		// Content whose every old identity is gone from the listing came
		// under a new one: the server renumbered.
		f.renumbered = len(own) == 0 && !stillListed
		return
	}
	if c, ok := cl.claims[f.digest]; ok {
		f.kind, f.dupOf, f.claim = fetchedTwin, c.id, c
		if cl.pl.multi[f.m.id] <= 1 {
			cl.an.Twins++
		}
		return
	}
	f.claim = &claim{id: f.m.id}
	cl.claims[f.digest] = f.claim
	f.kind = fetchedNew
}

// committedClaims marks the claims of delivered messages durable.
func (cl *classifier) committedClaims(fs []*fetchedMsg) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, f := range fs {
		if f.kind == fetchedNew && f.claim != nil {
			f.claim.committed = true
		}
	}
}

// isCommitted reports whether c's delivery is durable.
func (cl *classifier) isCommitted(c *claim) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return c.committed
}

// anomalies returns what the classification counted.
func (cl *classifier) anomalies() store.IdentityAnomalies {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.an
}

// Kinds of retrieved message.
const (
	fetchedNew       = iota // deliver
	fetchedKnown            // content already stored under this identity
	fetchedDuplicate        // content already stored under another identity
	fetchedTwin             // content of an earlier message of this pass
)

// fetchedMsg is one retrieved message on its way to the store.
type fetchedMsg struct {
	m      passMsg
	raw    []byte
	digest string
	kind   int
	dupOf  string
	row    store.LedgerKey // fetchedKnown: the row with this content
	claim  *claim          // fetchedNew, fetchedTwin: the pass's first message with this content
	// moved (fetchedDuplicate) lists the rows holding this content whose
	// identity is listed too: either twins, or that identity now names
	// other content. They are marked gone before the duplicate is
	// recorded, so that a pass after this one, even after a crash,
	// retrieves and compares what they are now.
	moved []store.LedgerRef
	// renumbered (fetchedDuplicate): the content's old identities are all
	// gone from the listing; see plan.knownRefs.
	renumbered bool
	weight     int64
}
