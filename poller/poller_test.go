package poller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPollFetchesOnceAndIdlePollIsCheap(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(5)
	r := h.mustPoll()
	if r.Fetched != 5 || r.Listed != 5 || r.Deleted != 0 {
		t.Fatalf("first poll = %+v", r)
	}
	h.checkStored(5)
	// Batches may commit out of listing order (two committers): look
	// message 1 up by its UIDL.
	i := slices.IndexFunc(h.sink.msgs, func(m storedMsg) bool { return m.uidl == "uid-1" })
	if i < 0 {
		t.Fatal("uid-1 not stored")
	}
	if m := h.sink.msgs[i]; m.user != "alice" || m.folder != "INBOX" || string(m.raw) != testMessage(1) {
		t.Errorf("stored message uid-1 = %+v", m)
	}

	retrs, reads, writes := h.srv.stat(&h.srv.retrs), h.sink.ledgerRead, h.sink.writes
	r = h.mustPoll()
	if r.Fetched != 0 || r.Listed != 5 {
		t.Fatalf("idle poll = %+v", r)
	}
	if got := h.srv.stat(&h.srv.retrs) - retrs; got != 0 {
		t.Errorf("idle poll retrieved %d messages", got)
	}
	if got := h.srv.stat(&h.srv.tops); got != 0 {
		t.Errorf("idle poll with UIDL sent %d TOPs", got)
	}
	if got := h.sink.ledgerRead - reads; got != 1 {
		t.Errorf("idle poll read the ledger %d times, want 1", got)
	}
	if got := h.sink.writes - writes; got != 0 {
		t.Errorf("idle poll made %d ledger writes, want 0", got)
	}
	h.checkStored(5)
	if st := h.p.Status()[0]; st.Fetched != 5 || st.LastError != "" || st.LastSuccess.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if ps := h.sink.statuses["work"]; ps.Fetched != 5 || ps.UpstreamCount != 5 || ps.FetchedBytes == 0 {
		t.Errorf("persisted status = %+v", ps)
	}
}

func TestGroupCommitAndNoDeleBeforeCommit(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(300)
	h.srv.beforeDele = func(uidls []string) {
		for _, u := range uidls {
			if _, ok := h.sink.row("work", u); !ok {
				t.Errorf("DELE of %s before its commit", u)
			}
		}
	}
	var calls []int
	r, err := h.p.PollOnce(context.Background(), "work", func(done, total int) {
		if total != 300 {
			t.Errorf("progress total = %d", total)
		}
		calls = append(calls, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Fetched != 300 || r.Deleted != 300 {
		t.Fatalf("poll = %+v", r)
	}
	h.checkStored(300)
	// status: what is left upstream after the deletions, not the listing.
	if ps := h.sink.statuses["work"]; ps.UpstreamCount != 0 {
		t.Errorf("persisted UpstreamCount = %d after deleting all 300, want 0", ps.UpstreamCount)
	}
	if h.srv.count() != 0 {
		t.Errorf("upstream still holds %d", h.srv.count())
	}
	for _, b := range h.sink.batches {
		if b > commitMaxMsgs {
			t.Errorf("batch of %d > %d", b, commitMaxMsgs)
		}
	}
	if least := (300 + commitMaxMsgs - 1) / commitMaxMsgs; len(h.sink.batches) < least {
		t.Errorf("%d batches for 300 messages, want at least %d", len(h.sink.batches), least)
	}
	if !slices.IsSorted(calls) || calls[0] != 0 || calls[len(calls)-1] != 300 {
		t.Errorf("progress calls = %v", calls)
	}
}

func TestCutBetweenCommitAndDele(t *testing.T) {
	tests := []struct {
		name string
		set  func(h *harness)
	}{
		{"dele fails", func(h *harness) { h.srv.failDele = 1 }},
		{"quit fails", func(h *harness) { h.srv.failQuit = 1 }},
		{"quit reply lost after update", func(h *harness) { h.srv.lostQuit = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
			h.fill(10)
			tt.set(h)
			if _, err := h.poll(); err == nil {
				t.Fatal("first poll succeeded")
			}
			h.checkStored(10)
			if r, ok := h.sink.row("work", "uid-3"); !ok || r.DeletedAt.IsZero() == false {
				t.Errorf("uid-3 row after failed poll = %+v", r)
			}
			r := h.mustPoll()
			if r.Fetched != 0 {
				t.Errorf("second poll fetched %d", r.Fetched)
			}
			h.checkStored(10)
			if h.srv.count() != 0 {
				t.Errorf("upstream holds %d after second poll", h.srv.count())
			}
			for i := 1; i <= 10; i++ {
				row, _ := h.sink.row("work", fmt.Sprintf("uid-%d", i))
				if row.DeletePending || row.DeletedAt.IsZero() {
					t.Errorf("uid-%d: pending=%v deleted=%v", i, row.DeletePending, row.DeletedAt)
				}
			}
		})
	}
}

func TestQuitFailureLeavesPending(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(3)
	h.srv.failQuit = 1
	_, err := h.poll()
	var ae *AccountError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an AccountError", err)
	}
	row, _ := h.sink.row("work", "uid-1")
	if !row.DeletePending || !row.DeletedAt.IsZero() {
		t.Fatalf("after QUIT failure row = %+v, want pending", row)
	}
	if h.srv.count() != 3 {
		t.Fatalf("upstream = %d, DELEs applied without QUIT", h.srv.count())
	}
	if st := h.p.Status()[0]; !strings.Contains(st.LastError, "can't update maildrop") && !strings.Contains(st.LastError, "quit") {
		t.Errorf("status error = %q", st.LastError)
	}
	r := h.mustPoll()
	if r.Deleted != 3 || r.Fetched != 0 || h.srv.count() != 0 {
		t.Errorf("second poll = %+v, upstream %d", r, h.srv.count())
	}
}

func TestPendingClearedWhenPolicyChanges(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(2)
	h.srv.failQuit = 1
	h.poll()
	a := h.acct
	a.LeaveOnServer = true
	h.p.SetAccounts([]Account{a})
	h.mustPoll()
	if h.srv.count() != 2 {
		t.Errorf("upstream = %d, want 2 kept", h.srv.count())
	}
	if row, _ := h.sink.row("work", "uid-1"); row.DeletePending {
		t.Errorf("pending not cleared: %+v", row)
	}
}

func TestReusedUIDL(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.add("u1", testMessage(1))
	h.mustPoll()
	// The server deletes it and gives its UIDL to a new message.
	h.srv.mu.Lock()
	h.srv.msgs = []*fakeMsg{{uidl: "u1", raw: []byte(testMessage(1) + "longer body\r\n")}}
	h.srv.mu.Unlock()
	r := h.mustPoll()
	if r.Fetched != 1 {
		t.Fatalf("reused UIDL poll fetched %d", r.Fetched)
	}
	h.checkStored(2)
	r = h.mustPoll()
	if r.Fetched != 0 || h.srv.stat(&h.srv.retrs) != 2 {
		t.Errorf("third poll fetched %d, retrs %d", r.Fetched, h.srv.retrs)
	}
}

func TestListSizeLieIsVerifiedOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.add("u1", testMessage(1))
	h.mustPoll()
	h.srv.mu.Lock()
	h.srv.msgs[0].sizeLie = 7
	h.srv.mu.Unlock()
	for i := 0; i < 3; i++ {
		if r := h.mustPoll(); r.Fetched != 0 {
			t.Fatalf("poll %d fetched %d", i, r.Fetched)
		}
	}
	if got := h.srv.stat(&h.srv.retrs); got != 2 {
		t.Errorf("retrs = %d, want 2 (fetch + one verification)", got)
	}
	h.checkStored(1)
}

func TestUIDLLessServerAndReorder(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.noUIDL = true
	h.srv.shuffle = true
	h.fill(20)
	if r := h.mustPoll(); r.Fetched != 20 {
		t.Fatalf("fetched %d", r.Fetched)
	}
	for i := 0; i < 3; i++ {
		if r := h.mustPoll(); r.Fetched != 0 {
			t.Fatalf("poll %d fetched %d", i, r.Fetched)
		}
	}
	h.srv.add("", testMessage(21))
	if r := h.mustPoll(); r.Fetched != 1 {
		t.Fatalf("new message: fetched %d", r.Fetched)
	}
	h.checkStored(21)
	if got := h.srv.stat(&h.srv.retrs); got != 21 {
		t.Errorf("retrs = %d, want 21", got)
	}
	if m := h.sink.msgs[0]; !strings.HasPrefix(m.uidl, syntheticUIDLPrefix) {
		t.Errorf("UIDL-less identity = %q", m.uidl)
	}
}

func TestReorderedNumbersWithDelete(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.DeleteOnExpunge = true })
	h.srv.shuffle = true
	h.fill(30)
	h.mustPoll()
	h.sink.expunge("work", "uid-7")
	h.sink.expunge("work", "uid-19")
	r := h.mustPoll()
	if r.Deleted != 2 || r.Fetched != 0 {
		t.Fatalf("poll = %+v", r)
	}
	h.srv.mu.Lock()
	for _, m := range h.srv.msgs {
		if m.uidl == "uid-7" || m.uidl == "uid-19" {
			t.Errorf("%s still upstream: the wrong message number was deleted", m.uidl)
		}
	}
	h.srv.mu.Unlock()
	if h.srv.count() != 28 {
		t.Errorf("upstream = %d", h.srv.count())
	}
}

func TestMassUIDLChange(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(25)
	h.mustPoll()
	// The server renumbers every UIDL and one genuinely new message arrives.
	h.srv.mu.Lock()
	for _, m := range h.srv.msgs {
		m.uidl = "new-" + m.uidl
	}
	h.srv.mu.Unlock()
	h.srv.add("fresh", testMessage(99))
	r := h.mustPoll()
	if r.Fetched != 1 {
		t.Fatalf("mass change poll fetched %d, want only the new one", r.Fetched)
	}
	h.checkStored(26)
	retrs := h.srv.stat(&h.srv.retrs)
	if r := h.mustPoll(); r.Fetched != 0 {
		t.Fatalf("after mass change fetched %d", r.Fetched)
	}
	if got := h.srv.stat(&h.srv.retrs) - retrs; got != 0 {
		t.Errorf("third poll retrieved %d again", got)
	}
}

func TestEmptyListingKeepsLedger(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(25)
	h.mustPoll()
	h.srv.mu.Lock()
	saved := h.srv.msgs
	h.srv.msgs = nil
	h.srv.mu.Unlock()
	if r := h.mustPoll(); r.Listed != 0 || r.Fetched != 0 {
		t.Fatalf("empty poll = %+v", r)
	}
	h.clock.Advance(30 * 24 * time.Hour)
	h.mustPoll()
	h.srv.mu.Lock()
	h.srv.msgs = saved
	h.srv.mu.Unlock()
	if r := h.mustPoll(); r.Fetched != 0 {
		t.Fatalf("listing back: fetched %d", r.Fetched)
	}
	h.checkStored(25)
}

func TestDuplicateUIDLsInListing(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.add("d", testMessage(1))
	h.srv.add("d", testMessage(2))
	h.srv.add("e", testMessage(3))
	// One UIDL for two messages: neither identity nor size can tell
	// them apart, their content does. Both are stored.
	r := h.mustPoll()
	if r.Fetched != 3 || r.Anomalies.Twins != 2 {
		t.Fatalf("poll = %+v, want 3 fetched and 2 twins", r)
	}
	h.checkStored(3)
	if r := h.mustPoll(); r.Fetched != 0 {
		t.Errorf("second poll fetched %d", r.Fetched)
	}
}

func TestMaxMessageSize(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.MaxMessageSize = 200 })
	h.srv.add("small", testMessage(1))
	h.srv.add("big", testMessage(2)+strings.Repeat("x", 500)+"\r\n")
	r := h.mustPoll()
	if r.Fetched != 1 || r.Skipped != 1 {
		t.Fatalf("poll = %+v", r)
	}
	r = h.mustPoll()
	if r.Skipped != 0 || r.Fetched != 0 {
		t.Fatalf("second poll = %+v (skip re-counted?)", r)
	}
	if got := h.srv.stat(&h.srv.retrs); got != 1 {
		t.Errorf("retrs = %d: the large message was retrieved", got)
	}
	if st := h.p.Status()[0]; st.Skipped != 1 {
		t.Errorf("status skipped = %d", st.Skipped)
	}
	// Raising the limit fetches it.
	a := h.acct
	a.MaxMessageSize = 0
	h.p.SetAccounts([]Account{a})
	if r := h.mustPoll(); r.Fetched != 1 {
		t.Errorf("after raising the limit fetched %d", r.Fetched)
	}
	h.checkStored(2)
}

func TestDeleteAfter(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.DeleteAfter = 14 * 24 * time.Hour })
	h.fill(3)
	h.mustPoll()
	h.clock.Advance(13 * 24 * time.Hour)
	if r := h.mustPoll(); r.Deleted != 0 {
		t.Fatalf("deleted %d after 13 days", r.Deleted)
	}
	h.srv.add("later", testMessage(4))
	h.clock.Advance(24 * time.Hour)
	r := h.mustPoll()
	if r.Deleted != 3 || r.Fetched != 1 {
		t.Fatalf("after 14 days: %+v", r)
	}
	if h.srv.count() != 1 {
		t.Errorf("upstream = %d, want the new one kept", h.srv.count())
	}
}

func TestRetrieveCutAndDeliverFailure(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.LeaveOnServer = false })
	h.fill(50)
	h.srv.cutAfter = 20
	if _, err := h.poll(); err == nil {
		t.Fatal("cut poll succeeded")
	}
	// Every message the session handed over (each past its LIST sentinel)
	// is committed; the one being retrieved when the cut came is not.
	h.checkStored(20)
	if h.srv.count() != 50 {
		t.Fatalf("upstream = %d after an aborted session", h.srv.count())
	}
	h.sink.mu.Lock()
	h.sink.deliverErr = errors.New("disk full")
	h.sink.mu.Unlock()
	if _, err := h.poll(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want disk full", err)
	}
	if h.srv.count() != 50 {
		t.Fatalf("upstream = %d after a failed commit", h.srv.count())
	}
	h.sink.mu.Lock()
	h.sink.deliverErr = nil
	h.sink.mu.Unlock()
	r := h.mustPoll()
	if r.Fetched != 30 || r.Deleted != 50 {
		t.Fatalf("recovery poll = %+v", r)
	}
	h.checkStored(50)
}

func TestPollOnceUnknownAccountAndAll(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.p.PollOnce(context.Background(), "nope", nil); !errors.Is(err, errUnknownAccount) {
		t.Errorf("err = %v", err)
	}
	h.fill(2)
	b := h.acct
	b.Name = "other"
	h.p.SetAccounts([]Account{h.acct, b})
	r, err := h.p.PollOnce(context.Background(), "", nil)
	if err != nil || r.Fetched != 4 {
		t.Errorf("all accounts: %+v, %v", r, err)
	}
}

func TestCheckLogin(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.p.CheckLogin(context.Background(), h.acct, 0); err != nil {
		t.Fatal(err)
	}
	if h.srv.stat(&h.srv.quits) != 1 {
		t.Errorf("quits = %d", h.srv.quits)
	}
	h.srv.dialErr = &AccountError{Account: "work", Op: "login", Reply: "-ERR [AUTH] nope", Err: errors.New("auth")}
	var ae *AccountError
	if err := h.p.CheckLogin(context.Background(), h.acct, 0); !errors.As(err, &ae) || ae.Reply != "-ERR [AUTH] nope" {
		t.Errorf("err = %v", err)
	}
}

func TestPoisonMessageProbedThenSkipped(t *testing.T) {
	h := newHarness(t, nil)
	h.fill(10)
	h.srv.poison = "uid-3"
	// Fails at uid-3; uid-1 and uid-2 were handed over by the session
	// (each past its LIST sentinel) and are committed.
	if r, err := h.poll(); err == nil || r.Fetched != 2 {
		t.Fatalf("first poll = %+v, %v", r, err)
	}
	// The suspect goes last, probed on its own: uid-3 fails again.
	if r, err := h.poll(); err == nil || r.Fetched != 7 {
		t.Fatalf("second poll = %+v, %v", r, err)
	}
	for i := 2; i < suspectSkipAfter; i++ {
		if r, err := h.poll(); err == nil || r.Skipped != 0 {
			t.Fatalf("probe %d = %+v, %v", i, r, err)
		}
	}
	r, err := h.poll()
	if err == nil || r.Skipped != 1 {
		t.Fatalf("probe %d = %+v, %v; want the message skipped", suspectSkipAfter, r, err)
	}
	if row, _ := h.sink.row("work", "uid-3"); !strings.HasPrefix(row.Skipped, "retrieval failed") {
		t.Errorf("ledger row = %+v", row)
	}
	if r := h.mustPoll(); r.Fetched != 0 || r.Skipped != 0 {
		t.Errorf("after skip: %+v", r)
	}
	h.checkStored(9)
	if h.srv.count() != 10 {
		t.Errorf("upstream = %d: the unretrievable message must stay", h.srv.count())
	}
}

func TestStatusCountersSurviveRestart(t *testing.T) {
	h := newHarness(t, func(a *Account) { a.MaxMessageSize = 300 })
	h.fill(3)
	h.srv.add("big", testMessage(9)+strings.Repeat("z", 400))
	h.mustPoll()
	p2 := New(Options{Sink: h.sink, Accounts: []Account{h.acct}, Now: h.clock.Now})
	p2.connect = h.srv.dial
	p2.dial = p2.limited(h.srv.dial)
	h.srv.add("u4", testMessage(4))
	if _, err := p2.PollOnce(context.Background(), "work", nil); err != nil {
		t.Fatal(err)
	}
	st := p2.Status()[0]
	if st.Fetched != 4 || st.Skipped != 1 || st.Bytes == 0 {
		t.Errorf("status after restart = %+v", st)
	}
	if ps := h.sink.statuses["work"]; ps.Fetched != 4 || ps.Skipped != 1 || ps.UpstreamCount != 5 {
		t.Errorf("persisted = %+v", ps)
	}
}

// TestCommitFailureWithFullBuffer pins that a failing commit stops the
// retrieval even when the byte budget of uncommitted messages is exhausted
// (no deadlock between the committer workers and the session).
func TestCommitFailureWithFullBuffer(t *testing.T) {
	h := newHarness(t, nil)
	for i := 1; i <= 200; i++ {
		h.srv.add(fmt.Sprintf("big-%d", i), testMessage(i)+strings.Repeat("b", 400_000)+"\r\n")
	}
	h.sink.mu.Lock()
	h.sink.deliverErr = errors.New("disk full")
	h.sink.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := h.poll()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("poll hung after a commit failure")
	}
	if n := h.srv.stat(&h.srv.retrs); n >= 200 {
		t.Errorf("retrieval went on to the end (%d RETR) after the commit failed", n)
	}
	h.checkStored(0)
}
