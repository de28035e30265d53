package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/popbridge/popbridge/store"
)

// popSession is the part of the session layer a pass uses; *session
// satisfies it, tests substitute a scripted fake.
type popSession interface {
	Caps() capabilities
	List(ctx context.Context) ([]listItem, error)
	HeaderDigests(ctx context.Context, nums []int) (map[int]string, error)
	Retrieve(ctx context.Context, items []listItem, maxSize int64, fn func(it listItem, raw []byte) error) error
	Delete(ctx context.Context, nums []int) error
	Quit(ctx context.Context) error
	Abort()
}

var _ popSession = (*session)(nil)

// pass runs one poll of a, serialised with every other pass of a, and
// records its outcome in the account's status.
func (p *Poller) pass(ctx context.Context, a Account, progress func(done, total int)) (Result, error) {
	res := Result{Account: a.Name}
	if p.sink == nil {
		return res, errors.New("poller: no sink configured")
	}
	st := p.accountState(a.Name)
	select {
	case st.lock <- struct{}{}:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	defer func() { <-st.lock }()
	if err := p.waitLoginDelay(ctx, st); err != nil {
		return res, err
	}
	p.loadStatuses(ctx)
	start := p.now()
	p.beginPass(a.Name, start)
	listed := false
	res, err := p.runPass(ctx, a, st, progress, &listed)
	p.endPass(ctx, a.Name, res, err, listed)
	log := p.log.With("account", a.Name)
	switch {
	case err != nil:
	case res.Fetched > 0 || res.Deleted > 0 || res.Skipped > 0:
		log.Info("poll done", "listed", res.Listed, "fetched", res.Fetched, "bytes", res.Bytes,
			"skipped", res.Skipped, "deleted", res.Deleted, "took", p.now().Sub(start).Round(time.Millisecond))
	default:
		log.Debug("poll done, nothing new", "listed", res.Listed)
	}
	return res, err
}

// runPass is one POP3 session: login, list, compare with the ledger,
// retrieve and commit the new messages, then DELE per policy and QUIT.
// Every DELE is for a message whose content and ledger row were committed
// before it was sent (invariant 1), and is marked pending durably first.
// Any failure closes the connection without QUIT, so no DELE takes effect.
func (p *Poller) runPass(ctx context.Context, a Account, st *acctState, progress func(done, total int), listed *bool) (Result, error) {
	res := Result{Account: a.Name}
	log := p.log.With("account", a.Name)
	// The connection slot first: with thousands of accounts queued for
	// slots, none holds a ledger read (memory, store readers) meanwhile.
	release, err := p.acquireSlot(ctx, a)
	if err != nil {
		return res, err
	}
	defer release()
	ctx = context.WithValue(ctx, heldSlotKey{}, true)
	// The ledger read does not depend on the listing: it runs while the
	// session logs in and lists, and the plan waits for it.
	now := p.now()
	lr := p.startLedgerRead(ctx, a.Name, ledgerQuery(now))
	defer lr.stop()
	sess, err := p.dial(ctx, a)
	if err != nil {
		return res, err
	}
	quitted := false
	defer func() {
		if !quitted {
			sess.Abort()
		}
	}()
	caps := sess.Caps()
	p.mu.Lock()
	st.lastLogin = p.now()
	st.loginDelay = caps.LoginDelay
	p.mu.Unlock()
	p.noteExpire(a, st, caps, log)

	items, err := sess.List(ctx)
	if err != nil {
		return res, accountErr(a, "list", err)
	}
	msgs, err := identify(ctx, sess, items)
	if err != nil {
		return res, accountErr(a, "identify messages", err)
	}
	ledger, err := lr.wait()
	if err != nil {
		return res, accountErr(a, "read ledger", err)
	}
	res.Listed = len(items)
	*listed = true
	pol := policyOf(a)
	pl := makePlan(pol, msgs, ledger, st.verified, now)
	forgetUnlisted(st, pl.listed)

	if len(pl.multi) > 0 {
		for id, n := range pl.multi {
			log.Warn("one identity listed for several messages; telling them apart by content", "uidl", id, "count", n)
		}
	}
	if len(items) == 0 && pl.knownLive > 0 {
		log.Info("upstream listing is empty; ledger entries are kept as tombstones", "known", pl.knownLive)
	}
	if err := p.maintainLedger(ctx, a, st, pl, now, log); err != nil {
		return res, err
	}
	for _, m := range pl.tooLarge {
		if err := p.sink.RecordSkipped(ctx, a.Name, m.id, "", m.item.Size, reasonTooLarge); err != nil {
			return res, accountErr(a, "record skipped message", err)
		}
		res.Skipped++
		log.Warn("message larger than max_message_size, not fetched", "uidl", m.id, "size", m.item.Size, "max", pol.maxSize)
	}

	var out fetchOutcome
	if len(pl.fetch) > 0 {
		out, err = p.fetch(ctx, a, st, sess, &pl, progress, &res, log)
		res.Anomalies = res.Anomalies.Add(out.anomalies)
		if err != nil {
			return res, err
		}
		if err := p.reconcile(ctx, a, st, &pl, out, now, log); err != nil {
			return res, err
		}
	}

	del := deletions(pol, out.proven, now)
	res.Anomalies.Unproven += int64(pl.unproven)
	provenNums := make(map[int]bool, len(out.proven))
	for _, pm := range out.proven {
		provenNums[pm.m.item.Num] = true
	}
	for num := range pl.wanted {
		if !provenNums[num] {
			res.Anomalies.Unproven++
		}
	}
	if res.Anomalies.Unproven > 0 {
		log.Warn("messages the policy deletes were kept on the server: their identity could not be proven",
			"count", res.Anomalies.Unproven)
	}
	if len(del) > 0 {
		ids := make([]string, len(del))
		nums := make([]int, len(del))
		for i, d := range del {
			if d.proof == proofNone {
				// deletions never returns one; refusing here keeps
				// invariant 1 whatever a later change does to it.
				return res, accountErr(a, "delete", fmt.Errorf("message %d (%s) has no proof of being stored: not deleting", d.m.item.Num, d.m.id))
			}
			ids[i], nums[i] = d.m.id, d.m.item.Num
			log.Debug("deleting upstream", "uidl", d.m.id, "why", d.why, "proof", proofName(d.proof))
		}
		// A pass stopped (shutdown, or its node lost the account's
		// lease to another node) deletes nothing.
		if err := passStopped(ctx); err != nil {
			return res, accountErr(a, "delete", fmt.Errorf("not deleting: %w", err))
		}
		if err := p.sink.MarkDeletePending(ctx, a.Name, ids); err != nil {
			return res, accountErr(a, "mark delete pending", err)
		}
		if err := passStopped(ctx); err != nil {
			return res, accountErr(a, "delete", fmt.Errorf("not deleting: %w", err))
		}
		if err := sess.Delete(ctx, nums); err != nil {
			return res, accountErr(a, "delete", err)
		}
		quitted = true
		if err := sess.Quit(ctx); err != nil {
			// The server may not have applied the DELEs: the rows stay
			// pending and the next poll checks the listing.
			return res, accountErr(a, "quit after delete", err)
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
		defer cancel()
		if err := p.sink.MarkDeleted(wctx, a.Name, ids); err != nil {
			return res, accountErr(a, "mark deleted", err)
		}
		res.Deleted = len(del)
	} else {
		quitted = true
		if err := sess.Quit(ctx); err != nil {
			// Nothing was deleted, everything retrieved is committed.
			log.Debug("quit", "err", err)
		}
	}
	p.pruneLedger(ctx, a, st, pl, now, log)
	return res, nil
}

// ledgerRead is a read of an account's ledger keys on its own goroutine,
// started and stopped by runPass.
type ledgerRead struct {
	done   chan struct{}
	cancel context.CancelFunc
	keys   []store.LedgerKey
	err    error
}

// startLedgerRead starts reading the ledger keys of account.
func (p *Poller) startLedgerRead(ctx context.Context, account string, q store.LedgerKeyQuery) *ledgerRead {
	ctx, cancel := context.WithCancel(ctx)
	r := &ledgerRead{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.keys, r.err = p.sink.LedgerKeys(ctx, account, q)
	}()
	return r
}

// wait returns the result of the read once it is done.
func (r *ledgerRead) wait() ([]store.LedgerKey, error) {
	<-r.done
	return r.keys, r.err
}

// stop cancels the read if it is still running and waits for its
// goroutine.
func (r *ledgerRead) stop() {
	r.cancel()
	<-r.done
}

// identify gives every listed message its identity: its UIDL, or for a
// message without one, a synthetic UIDL from its header digest and size.
func identify(ctx context.Context, sess popSession, items []listItem) ([]passMsg, error) {
	var need []int
	for _, it := range items {
		if it.UIDL == "" {
			need = append(need, it.Num)
		}
	}
	var hd map[int]string
	if len(need) > 0 {
		var err error
		if hd, err = sess.HeaderDigests(ctx, need); err != nil {
			return nil, err
		}
	}
	msgs := make([]passMsg, len(items))
	for i, it := range items {
		id := it.UIDL
		if id == "" {
			h := hd[it.Num]
			if h == "" {
				return nil, fmt.Errorf("no header digest for message %d", it.Num)
			}
			id = syntheticUIDL(h, it.Size)
		}
		msgs[i] = passMsg{item: it, id: id}
	}
	return msgs, nil
}

// maintainLedger turns the rows of unlisted identities into tombstones
// (settling pending deletions), clears pending marks the policy dropped
// and refreshes LastSeen.
func (p *Poller) maintainLedger(ctx context.Context, a Account, st *acctState, pl plan, now time.Time, log *slog.Logger) error {
	if len(pl.gone) > 0 {
		if err := p.sink.MarkGone(ctx, a.Name, pl.gone); err != nil {
			return accountErr(a, "mark gone", err)
		}
		if pl.pendingGone > 0 {
			log.Info("pending deletions confirmed by listing", "count", pl.pendingGone)
		}
		if n := len(pl.gone) - pl.pendingGone; n > 0 {
			log.Debug("messages no longer listed upstream", "count", n)
		}
	}
	if len(pl.pendingClear) > 0 {
		if err := p.sink.ClearDeletePending(ctx, a.Name, pl.pendingClear); err != nil {
			return accountErr(a, "clear delete pending", err)
		}
	}
	if len(pl.touch) > 0 {
		if err := p.sink.TouchLedger(ctx, a.Name, pl.touch, now); err != nil {
			return accountErr(a, "touch ledger", err)
		}
	}
	return nil
}

// forgetUnlisted drops the verified sizes of identities the listing does
// not show: a size proven for content holds only while the identity stays
// listed.
func forgetUnlisted(st *acctState, listed map[string]int) {
	for id := range st.verified {
		if listed[id] == 0 {
			delete(st.verified, id)
		}
	}
}

// reconcile brings the ledger rows of the identities a pass retrieved to
// verify or prove in line with what their content turned out to be: a row
// whose content is listed again is live again, a live row whose identity
// now names other content is gone. An identity is reconciled only when
// every message listed under it was retrieved and is stored.
func (p *Poller) reconcile(ctx context.Context, a Account, st *acctState, pl *plan, out fetchOutcome, now time.Time, log *slog.Logger) error {
	if len(pl.rows) == 0 {
		return nil
	}
	seen := map[string]map[string]bool{}
	provenCount := map[string]int{}
	for _, pm := range out.proven {
		if pl.rows[pm.m.id] == nil {
			continue
		}
		if seen[pm.m.id] == nil {
			seen[pm.m.id] = map[string]bool{}
		}
		seen[pm.m.id][pm.digest] = true
		provenCount[pm.m.id]++
	}
	var listed, gone []store.LedgerRef
	for id, rows := range pl.rows {
		if provenCount[id] != pl.listed[id] {
			continue // not every message of the identity is proven: next pass
		}
		for d, e := range rows {
			ref := store.LedgerRef{UIDL: id, Digest: d}
			switch {
			case seen[id][d] && e.Deleted:
				listed = append(listed, ref)
			case !seen[id][d] && !e.Deleted:
				gone = append(gone, ref)
			}
		}
	}
	if len(listed) > 0 {
		if err := p.sink.MarkListed(ctx, a.Name, listed, now); err != nil {
			return accountErr(a, "mark listed", err)
		}
		log.Info("messages listed again after a gap, proven by content", "count", len(listed))
	}
	if len(gone) > 0 {
		if err := p.sink.MarkGone(ctx, a.Name, gone); err != nil {
			return accountErr(a, "mark gone", err)
		}
	}
	return nil
}

// deletions decides the DELEs of a pass. It is the one place that does:
// a message is deleted only when the policy says so and its bytes were
// retrieved in this session and found durable in the store (proven).
func deletions(pol policy, proven []provenMsg, now time.Time) []deletion {
	var del []deletion
	for _, pm := range proven {
		if why := pol.deleteReason(pm.state, now); why != "" {
			del = append(del, deletion{m: pm.m, why: why, proof: proofDigest})
		}
	}
	return del
}

// proofName names a kind of proof for the log.
func proofName(proof int) string {
	switch proof {
	case proofDigest:
		return "content digest"
	}
	return "none"
}

// pruneLedger drops expired tombstones, at most once per pruneEvery, and
// only when the pass's ledger read found some (so that a short-lived
// process such as `popbridge poll` does not pay for a write that would
// drop nothing).
func (p *Poller) pruneLedger(ctx context.Context, a Account, st *acctState, pl plan, now time.Time, log *slog.Logger) {
	if pl.prunable == 0 || (!st.lastPrune.IsZero() && now.Sub(st.lastPrune) < pruneEvery) {
		return
	}
	n, err := p.sink.PruneLedger(ctx, a.Name, now.Add(-ledgerRetention))
	if err != nil {
		log.Warn("pruning ledger", "err", err)
		return
	}
	st.lastPrune = now
	if n > 0 {
		log.Info("pruned expired ledger entries", "count", n)
	}
}

// noteExpire warns once per value when the server's EXPIRE policy
// (RFC 2449) overrides the account's: EXPIRE 0 deletes every retrieved
// message at QUIT, a short EXPIRE deletes mail before delete_after would.
// The pass itself needs nothing more: it QUITs only after every retrieved
// message is committed, so server-side expiry never loses mail.
func (p *Poller) noteExpire(a Account, st *acctState, caps capabilities, log *slog.Logger) {
	exp, ok := caps.Expire, caps.HasExpire && !caps.ExpireNever
	p.mu.Lock()
	key := ""
	if ok {
		key = strconv.FormatInt(int64(exp/time.Hour), 10)
	}
	noted := st.expireNoted == key
	st.expireNoted = key
	p.mu.Unlock()
	if !ok || noted {
		return
	}
	switch {
	case exp == 0 && a.LeaveOnServer:
		log.Warn("server deletes retrieved messages (EXPIRE 0): leave_on_server cannot be honoured")
	case exp > 0 && a.LeaveOnServer && (a.DeleteAfter == 0 || a.DeleteAfter > exp):
		log.Warn("server expires retrieved messages before delete_after", "expire", exp)
	case exp > 0 && a.interval() > exp:
		log.Warn("poll interval longer than the server's EXPIRE", "expire", exp)
	}
}
