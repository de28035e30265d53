package poller

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/popbridge/popbridge/store"
)

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
