package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
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

// Group commit limits: retrieved messages are delivered in one durable
// transaction per batch. A batch is committed when it reaches either limit
// or as soon as the committer is idle (retrieval paused or ended). Since
// the store stopped parsing on delivery, a commit is mostly its two
// fsyncs, so larger batches pay: on the 10,000-message bench fetch, 64
// messages / 8 MB took 2.04 s, 128 / 16 MB 1.84 s, 256 / 32 MB 1.75 s
// (medians of 6). Nothing is deleted upstream before its batch commits,
// so a crash costs at most a re-fetch of one batch.
const (
	commitMaxMsgs  = 256
	commitMaxBytes = 32 << 20
	// bufferMaxBytes bounds the bytes retrieved but not yet committed
	// (two batches in flight).
	bufferMaxBytes = 64 << 20
	// commitGrace is how long commits of already retrieved messages may
	// continue after the pass's context is canceled (shutdown).
	commitGrace = 30 * time.Second
	// commitWorkers is how many batches may be in Deliver at once: the
	// store writes and fsyncs a batch's bytes before taking its writer
	// lock, so one batch's pack write overlaps the other's transaction.
	commitWorkers = 2
)

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
	forgetUnlisted(st, msgs)

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
		if err := p.sink.MarkDeletePending(ctx, a.Name, ids); err != nil {
			return res, accountErr(a, "mark delete pending", err)
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
func forgetUnlisted(st *acctState, msgs []passMsg) {
	if len(st.verified) == 0 {
		return
	}
	listed := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		listed[m.id] = true
	}
	for id := range st.verified {
		if !listed[id] {
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
	listedCount := map[string]int{}
	for _, m := range pl.all {
		listedCount[m.id]++
	}
	var listed, gone []store.LedgerRef
	for id, rows := range pl.rows {
		if provenCount[id] != listedCount[id] {
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

// provenMsg is a retrieved message whose content is durable in the store:
// delivered, or recorded as content already stored.
type provenMsg struct {
	m      passMsg
	digest string
	// state is what the deletion policy knows of it.
	state msgState
}

// fetchOutcome is what the retrieval of a pass established.
type fetchOutcome struct {
	proven    []provenMsg
	anomalies store.IdentityAnomalies
}

// fetch retrieves the planned messages and commits them in groups while
// retrieval continues. It returns the messages proven stored (durable). On
// any error every message already retrieved is committed or not at all,
// batch by batch, and the caller aborts the session.
//
// Messages suspected of breaking an earlier retrieval are fetched last,
// one at a time, each followed by a check that the connection is still in
// step; a suspect that fails suspectSkipAfter such probes in a row is
// recorded as skipped, so one bad message cannot block the maildrop.
func (p *Poller) fetch(ctx context.Context, a Account, st *acctState, sess popSession, pl *plan, progress func(done, total int), res *Result, log *slog.Logger) (fetchOutcome, error) {
	var normal, probes []passMsg
	for _, m := range pl.fetch {
		if _, ok := st.suspects[m.id]; ok {
			probes = append(probes, m)
		} else {
			normal = append(normal, m)
		}
	}
	if progress != nil {
		progress(0, len(pl.fetch))
	}
	cl := newClassifier(pl, st)
	c := p.newCommitter(ctx, a, res, progress, len(pl.fetch), cl, log)
	var (
		rerr     error
		culprits []string
		probeBad string
		probeOK  []string
	)
	if len(normal) > 0 {
		culprits, rerr = p.retrieveBatch(ctx, sess, st, pl, normal, c, log)
	}
	for _, m := range probes {
		if rerr != nil {
			break
		}
		if _, rerr = p.retrieveBatch(ctx, sess, st, pl, []passMsg{m}, c, log); rerr != nil {
			probeBad = m.id
		} else {
			probeOK = append(probeOK, m.id)
		}
	}
	cerr := c.close()
	if cerr == nil {
		cerr = c.recordTwins(ctx)
	}
	out := fetchOutcome{proven: c.proven, anomalies: cl.anomalies()}
	if cerr != nil {
		return out, cerr
	}
	for _, id := range probeOK {
		delete(st.suspects, id)
	}
	if rerr != nil {
		if ctx.Err() == nil {
			for _, id := range culprits {
				if _, ok := st.suspects[id]; !ok {
					st.suspects[id] = 0
				}
			}
			if probeBad != "" {
				p.noteBadProbe(ctx, a, st, probeBad, pl, rerr, res, log)
			}
		}
		return out, accountErr(a, "retrieve", rerr)
	}
	if an := out.anomalies; an.UIDLReused+an.Renumbered+an.Twins > 0 {
		log.Warn("upstream identities did not match content; told apart by whole-message digest",
			"uidl_reused", an.UIDLReused, "renumbered", an.Renumbered, "twins", an.Twins)
	}
	return out, nil
}

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

// retrieveBatch retrieves msgs (pipelined by the session) and hands them
// to the committer as they arrive. The session hands over a message only
// after a correct reply to the "LIST n" sentinel that follows it (see
// session.multi), so a message cut short by an unstuffed "." line never
// reaches the committer and needs no further check here. On error it
// returns the identity that may be to blame: the message being retrieved.
func (p *Poller) retrieveBatch(ctx context.Context, sess popSession, st *acctState, pl *plan, msgs []passMsg, c *committer, log *slog.Logger) (culprits []string, err error) {
	byNum := make(map[int]passMsg, len(msgs))
	items := make([]listItem, len(msgs))
	for i, m := range msgs {
		byNum[m.item.Num] = m
		items[i] = m.item
	}
	received := 0
	err = sess.Retrieve(ctx, items, c.a.MaxMessageSize, func(it listItem, raw []byte) error {
		m, ok := byNum[it.Num]
		if !ok {
			return fmt.Errorf("session returned unrequested message %d", it.Num)
		}
		received++
		// The digest and what it says about the message are worked out
		// by the committer (classify), off the connection's read path.
		return c.put(&fetchedMsg{m: m, raw: raw})
	})
	if err == nil {
		return nil, nil
	}
	if received < len(msgs) {
		log.Debug("retrieval failed at this message; it becomes a suspect", "uidl", msgs[received].id)
		culprits = append(culprits, msgs[received].id)
	}
	return culprits, err
}

// suspectSkipAfter is how many passes in a row a suspect message may fail
// its probe before it is recorded as skipped (a message the server cannot
// deliver intact, such as one that never ends, would otherwise fail every
// poll forever).
const suspectSkipAfter = 3

// noteBadProbe counts a failed probe of a suspect and records it as skipped
// after suspectSkipAfter failures in a row. The message stays on the server
// (it is never deleted); the reason is logged and kept in the ledger.
func (p *Poller) noteBadProbe(ctx context.Context, a Account, st *acctState, id string, pl *plan, rerr error, res *Result, log *slog.Logger) {
	st.suspects[id]++
	n := st.suspects[id]
	if n < suspectSkipAfter {
		return
	}
	var size int64
	for _, m := range pl.fetch {
		if m.id == id {
			size = m.item.Size
		}
	}
	reason := fmt.Sprintf("retrieval failed %d times: %v", n, rerr)
	if err := p.sink.RecordSkipped(ctx, a.Name, id, "", size, reason); err != nil {
		log.Warn("recording a message that cannot be retrieved", "uidl", id, "err", err)
		return
	}
	log.Error("message cannot be retrieved intact, skipping it (it stays on the server)", "uidl", id, "size", size, "err", rerr)
	delete(st.suspects, id)
	res.Skipped++
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

// committer delivers retrieved messages in group commits on its own
// goroutines, so that the network, the digests and the store's writes and
// fsyncs overlap. Each of its commitWorkers batches whatever has arrived
// while the previous commit ran, up to the commit limits. The batches'
// bytes are written in parallel, but their transactions commit in the
// order the messages were retrieved (store.WithCommitTurn), so local UIDs
// follow the upstream order.
type committer struct {
	p        *Poller
	a        Account
	log      *slog.Logger
	ctx      context.Context // commit context: survives the pass's cancel for commitGrace
	cancel   context.CancelFunc
	in       chan *fetchedMsg
	sem      *byteBudget
	stopped  context.Context // done when the workers exit or one fails
	stop     context.CancelFunc
	done     chan struct{}
	graceOff func() bool
	// cl decides what each message is, once its digest is computed.
	cl *classifier

	// takeMu serialises taking batches from in, so that nextTicket
	// numbers them in message order. The store waits (awaitTurn) before a
	// batch's transaction until every earlier batch has finished: turn is
	// the lowest unfinished ticket, doneTickets the finished ones above
	// it, turnChanged closed at every change.
	takeMu      sync.Mutex
	nextTicket  uint64
	turnMu      sync.Mutex
	turn        uint64
	doneTickets map[uint64]bool
	turnChanged chan struct{}

	// mu guards the fields below; they are read after done is closed.
	mu       sync.Mutex
	err      error
	proven   []provenMsg
	twins    []*fetchedMsg // fetchedTwin, for recordTwins
	res      *Result
	progress func(done, total int)
	total    int
	handled  int
}

// newCommitter starts a committer for one pass.
func (p *Poller) newCommitter(ctx context.Context, a Account, res *Result, progress func(done, total int), total int, cl *classifier, log *slog.Logger) *committer {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopped, stop := context.WithCancel(context.Background())
	c := &committer{
		p: p, a: a, log: log, ctx: cctx, cancel: cancel,
		in:      make(chan *fetchedMsg, commitMaxMsgs),
		sem:     newByteBudget(bufferMaxBytes),
		stopped: stopped, stop: stop,
		done: make(chan struct{}),
		res:  res, progress: progress, total: total,
		cl:          cl,
		doneTickets: map[uint64]bool{},
		turnChanged: make(chan struct{}),
	}
	c.graceOff = context.AfterFunc(ctx, func() {
		t := time.AfterFunc(commitGrace, cancel)
		context.AfterFunc(stopped, func() { t.Stop() })
	})
	var wg sync.WaitGroup
	for range commitWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop()
		}()
	}
	go func() {
		wg.Wait()
		c.stop()
		close(c.done)
	}()
	return c
}

// errCommitterStopped is returned by put after the committer failed.
var errCommitterStopped = errors.New("poller: committer stopped")

// put hands a retrieved message to the committer, blocking while too many
// bytes wait for their commit.
func (c *committer) put(f *fetchedMsg) error {
	f.weight = max(1, min(int64(len(f.raw)), bufferMaxBytes))
	if err := c.sem.acquire(c.stopped, f.weight); err != nil {
		return c.failure()
	}
	select {
	case c.in <- f:
		return nil
	case <-c.stopped.Done():
		c.sem.release(f.weight)
		return c.failure()
	}
}

// fail records the first commit error and stops every worker.
func (c *committer) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.stop()
}

// failure returns the committer's error after it stopped.
func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return errCommitterStopped
}

// close ends the input, waits for every queued message to be committed and
// returns the first commit error.
func (c *committer) close() error {
	close(c.in)
	<-c.done
	c.graceOff()
	c.cancel()
	return c.err
}

// loop commits batches until the input is closed or a commit fails.
func (c *committer) loop() {
	for {
		batch, ticket, closed := c.take()
		if batch == nil {
			return
		}
		err := c.commit(batch, ticket)
		c.finished(ticket)
		if err != nil {
			c.fail(err)
			return
		}
		if closed {
			return
		}
	}
}

// take waits for a message, then takes whatever else has arrived, up to
// the commit limits, and numbers the batch: batches are numbered in the
// order of their messages, which is the order their transactions commit
// in. It returns a nil batch when the input is closed or the committer
// stopped; closed reports that the input ended after this batch.
func (c *committer) take() (batch []*fetchedMsg, ticket uint64, closed bool) {
	c.takeMu.Lock()
	defer c.takeMu.Unlock()
	select {
	case f, ok := <-c.in:
		if !ok {
			return nil, 0, true
		}
		batch = []*fetchedMsg{f}
	case <-c.stopped.Done():
		return nil, 0, true
	}
	size := len(batch[0].raw)
drain:
	for len(batch) < commitMaxMsgs && size < commitMaxBytes {
		select {
		case g, ok := <-c.in:
			if !ok {
				closed = true
				break drain
			}
			batch = append(batch, g)
			size += len(g.raw)
		default:
			break drain
		}
	}
	ticket = c.nextTicket
	c.nextTicket++
	return batch, ticket, closed
}

// awaitTurn waits until every batch numbered before ticket has finished
// (committed or failed). The store calls it between writing a batch's
// bytes and beginning its transaction.
func (c *committer) awaitTurn(ticket uint64) error {
	for {
		c.turnMu.Lock()
		turn, changed := c.turn, c.turnChanged
		c.turnMu.Unlock()
		if turn == ticket {
			return nil
		}
		select {
		case <-changed:
		case <-c.stopped.Done():
			return c.failure()
		}
	}
}

// finished records that batch ticket is done and lets the next batches
// whose predecessors are all done take their turn.
func (c *committer) finished(ticket uint64) {
	c.turnMu.Lock()
	defer c.turnMu.Unlock()
	c.doneTickets[ticket] = true
	for c.doneTickets[c.turn] {
		delete(c.doneTickets, c.turn)
		c.turn++
	}
	close(c.turnChanged)
	c.turnChanged = make(chan struct{})
}

// commit makes one batch durable: new messages are delivered with their
// ledger rows in one transaction (in the batch's commit turn), then
// messages whose content is already durable are recorded as duplicates.
// Twins are kept for recordTwins.
func (c *committer) commit(batch []*fetchedMsg, ticket uint64) error {
	now := c.p.now()
	defer func() {
		for _, f := range batch {
			c.sem.release(f.weight)
		}
	}()
	for _, f := range batch {
		f.digest = contentDigest(f.raw)
		c.cl.classify(f)
	}
	var (
		ds     []store.Delivery
		proven []provenMsg
		twins  []*fetchedMsg
		bytes  int64
		fresh  = msgState{Stored: true, StoredAt: now}
	)
	for _, f := range batch {
		if f.kind != fetchedNew {
			continue
		}
		ds = append(ds, store.Delivery{
			Account:      c.a.Name,
			UIDL:         f.m.id,
			Digest:       f.digest,
			User:         c.a.User,
			Folder:       c.a.folder(),
			Raw:          f.raw,
			InternalDate: internalDate(f.raw, now),
		})
		proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: fresh})
		bytes += int64(len(f.raw))
	}
	if len(ds) > 0 {
		ctx := store.WithCommitTurn(c.ctx, func(context.Context) error { return c.awaitTurn(ticket) })
		if _, err := c.p.sink.Deliver(ctx, ds); err != nil {
			return accountErr(c.a, "deliver", err)
		}
		c.cl.committedClaims(batch)
	}
	for _, f := range batch {
		switch f.kind {
		case fetchedKnown:
			proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: stateOf([]store.LedgerKey{f.row})})
		case fetchedTwin:
			twins = append(twins, &fetchedMsg{m: f.m, digest: f.digest, dupOf: f.dupOf, claim: f.claim})
		case fetchedDuplicate:
			if f.renumbered {
				// Before the duplicate is recorded, so that the suspicion
				// survives a crash between the two.
				if err := c.cl.distrustKnown(c.ctx, c.p.sink, c.a.Name); err != nil {
					return accountErr(c.a, "mark gone", err)
				}
			}
			if len(f.moved) > 0 {
				if err := c.p.sink.MarkGone(c.ctx, c.a.Name, f.moved); err != nil {
					return accountErr(c.a, "mark gone", err)
				}
			}
			if err := c.p.sink.RecordSkipped(c.ctx, c.a.Name, f.m.id, f.digest, f.m.item.Size, reasonDuplicatePrefix+f.dupOf); err != nil {
				return accountErr(c.a, "record duplicate", err)
			}
			proven = append(proven, provenMsg{m: f.m, digest: f.digest, state: fresh})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proven = append(c.proven, proven...)
	c.twins = append(c.twins, twins...)
	c.res.Fetched += len(ds)
	c.res.Bytes += bytes
	c.handled += len(batch)
	if c.progress != nil {
		c.progress(c.handled, c.total)
	}
	return nil
}

// recordTwins records, once every batch has finished, the twins whose
// first was delivered: a twin's first may be in a later batch (batches
// are classified as their digests are ready, not in order), so this waits
// for the end of the pass's commits. A twin whose first was not stored is
// left for the next pass.
func (c *committer) recordTwins(ctx context.Context) error {
	now := c.p.now()
	for _, f := range c.twins {
		if !c.cl.isCommitted(f.claim) {
			continue
		}
		if err := c.p.sink.RecordSkipped(ctx, c.a.Name, f.m.id, f.digest, f.m.item.Size, reasonDuplicatePrefix+f.dupOf); err != nil {
			return accountErr(c.a, "record duplicate", err)
		}
		c.proven = append(c.proven, provenMsg{m: f.m, digest: f.digest, state: msgState{Stored: true, StoredAt: now}})
	}
	c.twins = nil
	return nil
}

// byteBudget bounds the bytes retrieved but not yet committed (a weighted
// semaphore for one producer).
type byteBudget struct {
	mu      sync.Mutex
	avail   int64
	changed chan struct{} // closed when bytes are released
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{avail: n, changed: make(chan struct{})}
}

// acquire takes n bytes, waiting for releases; it fails when ctx ends.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.avail >= n {
			b.avail -= n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release returns n bytes.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.avail += n
	close(b.changed)
	b.changed = make(chan struct{})
}
