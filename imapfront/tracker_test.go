package imapfront

import (
	"errors"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

func loadedState(uids ...store.UID) *mailboxState {
	m := newMailboxState(1)
	m.loaded = true
	m.modseq = 10
	for _, u := range uids {
		m.entries = append(m.entries, stateEntry{uid: u})
	}
	return m
}

func addView(m *mailboxState) *view {
	v := &view{mbox: m, notify: make(chan struct{}, 1), ownQueued: map[store.UID]struct{}{}}
	for _, e := range m.entries {
		v.uids = append(v.uids, e.uid)
	}
	m.views[v] = struct{}{}
	return v
}

func TestTrackerApply(t *testing.T) {
	m := loadedState(1, 2, 3)
	v := addView(m)
	changes := []store.Change{
		{Kind: store.ChangeAdd, ModSeq: 9, Entries: []store.Entry{{UID: 9}}}, // older than the state: ignored
		{Kind: store.ChangeAdd, ModSeq: 11, Entries: []store.Entry{{UID: 4}, {UID: 5}}},
		{Kind: store.ChangeExpunge, ModSeq: 12, UIDs: []store.UID{2, 4}},
		{Kind: store.ChangeFlags, ModSeq: 13, Entries: []store.Entry{{UID: 5, Flags: []string{"$A"}}}},
		{Kind: store.ChangeFlags, ModSeq: 13, Entries: []store.Entry{{UID: 5, Flags: []string{"$B"}}}}, // duplicate modseq: ignored
	}
	m.mu.Lock()
	for _, c := range changes {
		m.applyLocked(c)
	}
	m.mu.Unlock()
	res, err := v.drain(true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range res {
		switch o.kind {
		case outExists:
			got = append(got, "EXISTS "+itoa(int(o.n)))
		case outExpunge:
			got = append(got, "EXPUNGE "+itoa(int(o.n)))
		case outFetchFlags:
			got = append(got, "FETCH "+itoa(int(o.n))+" UID "+itoa(int(o.uid))+" "+strings.Join(o.flags, " "))
		case outMailboxFlags:
			got = append(got, "FLAGS")
		}
	}
	// The view is the mailbox's only read-write one: UIDs 4 and 5 are
	// \Recent in it.
	want := []string{"EXISTS 5", "EXPUNGE 2", "EXPUNGE 3", "FLAGS", `FETCH 3 UID 5 \Recent $A`}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if len(m.entries) != 3 || m.uidNext != 6 {
		t.Fatalf("state: %+v uidnext %d", m.entries, m.uidNext)
	}
}

func TestTrackerNoExpungeDuringFetch(t *testing.T) {
	m := loadedState(1, 2)
	v := addView(m)
	m.mu.Lock()
	m.applyLocked(store.Change{Kind: store.ChangeExpunge, ModSeq: 11, UIDs: []store.UID{1}})
	m.applyLocked(store.Change{Kind: store.ChangeAdd, ModSeq: 12, Entries: []store.Entry{{UID: 3}}})
	m.mu.Unlock()
	if res, _ := v.drain(false); len(res) != 0 {
		t.Fatalf("drain without expunges delivered %v", res)
	}
	if res, _ := v.drain(true); len(res) != 3 || res[0].kind != outExpunge || res[1].kind != outExists || res[1].n != 2 || res[2].kind != outRecent || res[2].n != 1 {
		t.Fatalf("drain: %+v", res)
	}
}

func TestTrackerOverflow(t *testing.T) {
	m := loadedState()
	v := addView(m)
	m.mu.Lock()
	for i := 1; i <= maxPending+1; i++ {
		m.applyLocked(store.Change{Kind: store.ChangeAdd, ModSeq: uint64(10 + i), Entries: []store.Entry{{UID: store.UID(i)}}})
	}
	m.mu.Unlock()
	if _, err := v.drain(true); !errors.Is(err, errQueueOverflow) {
		t.Fatalf("drain after overflow: %v", err)
	}
}

func TestTrackerBacklogWhileLoading(t *testing.T) {
	m := newMailboxState(1)
	v := &view{mbox: m, notify: make(chan struct{}, 1), ownQueued: map[store.UID]struct{}{}}
	m.mu.Lock()
	m.applyLocked(store.Change{Kind: store.ChangeAdd, ModSeq: 5, Entries: []store.Entry{{UID: 1}}})
	m.applyLocked(store.Change{Kind: store.ChangeAdd, ModSeq: 6, Entries: []store.Entry{{UID: 2}}})
	m.mu.Unlock()
	// The snapshot already contains modseq 5 (UID 1) but not 6.
	m.install(store.Snapshot{
		Mailbox: store.Mailbox{HighestModSeq: 5, UIDNext: 2},
		Entries: []store.Entry{{UID: 1}},
	})
	m.mu.Lock()
	m.views[v] = struct{}{}
	m.mu.Unlock()
	if len(m.entries) != 2 || m.entries[1].uid != 2 || m.modseq != 6 || m.uidNext != 3 {
		t.Fatalf("after install: entries %+v modseq %d uidnext %d", m.entries, m.modseq, m.uidNext)
	}
	if len(m.backlog) != 0 {
		t.Fatalf("backlog kept: %d", len(m.backlog))
	}
}
