package poller

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func TestDeleteReason(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name string
		pol  policy
		st   msgState
		now  time.Time
		want string
	}{
		{"not stored never", policy{leaveOnServer: false}, msgState{}, t0, ""},
		{"leave on server keeps", policy{leaveOnServer: true}, msgState{Stored: true, StoredAt: t0}, t0.Add(1000 * day), ""},
		{"leave false deletes", policy{leaveOnServer: false}, msgState{Stored: true, StoredAt: t0}, t0, "leave_on_server=false"},
		{"delete_after not yet", policy{leaveOnServer: true, deleteAfter: 14 * day}, msgState{Stored: true, StoredAt: t0}, t0.Add(14*day - time.Second), ""},
		{"delete_after reached", policy{leaveOnServer: true, deleteAfter: 14 * day}, msgState{Stored: true, StoredAt: t0}, t0.Add(14 * day), "delete_after"},
		{"delete_after zero stored time", policy{leaveOnServer: true, deleteAfter: day}, msgState{Stored: true}, t0, ""},
		{"expunge without policy", policy{leaveOnServer: true}, msgState{Stored: true, StoredAt: t0, Expunged: true}, t0, ""},
		{"expunge with policy", policy{leaveOnServer: true, deleteOnExpunge: true}, msgState{Stored: true, StoredAt: t0, Expunged: true}, t0, "delete_on_expunge"},
		{"expunge policy, still local", policy{leaveOnServer: true, deleteOnExpunge: true}, msgState{Stored: true, StoredAt: t0}, t0, ""},
		{"expunged but not stored", policy{leaveOnServer: true, deleteOnExpunge: true}, msgState{Expunged: true}, t0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pol.deleteReason(tt.st, tt.now); got != tt.want {
				t.Errorf("deleteReason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name string
		max  int64
		size int64
		want bool
	}{
		{"no limit", 0, 1 << 40, false},
		{"under", 100, 99, false},
		{"equal", 100, 100, false},
		{"over", 100, 101, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (policy{maxSize: tt.max}).tooLarge(tt.size); got != tt.want {
				t.Errorf("tooLarge = %v", got)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		interval  time.Duration
		permanent bool
		r         float64
		want      time.Duration
	}{
		{"first, low jitter", 1, time.Minute, false, 0, 7500 * time.Millisecond},
		{"first, high jitter", 1, time.Minute, false, 0.999999, 15 * time.Second},
		{"third", 3, time.Hour, false, 0, 30 * time.Second},
		{"capped", 30, time.Hour, false, 0.999999, backoffMax},
		{"capped low", 100, time.Hour, false, 0, backoffMax / 2},
		{"permanent waits the interval", 1, 5 * time.Minute, true, 0, 5 * time.Minute},
		{"permanent long backoff kept", 12, 5 * time.Minute, true, 0, backoffMax / 2},
		{"zero failures treated as one", 0, time.Minute, false, 0, 7500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := backoffDelay(tt.n, tt.interval, tt.permanent, tt.r)
			if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("backoffDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJitterInterval(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.999} {
		got := jitterInterval(10*time.Minute, r)
		if got < 9*time.Minute || got > 11*time.Minute {
			t.Errorf("jitterInterval(10m, %v) = %v", r, got)
		}
	}
	if got := jitterInterval(10*time.Minute, 0.5); got != 10*time.Minute {
		t.Errorf("midpoint = %v", got)
	}
}

func TestIsPermanent(t *testing.T) {
	auth := &AccountError{Account: "a", Op: "login", Err: errors.New("x")}
	tmp := &AccountError{Account: "a", Op: "list", Temporary: true, Err: errors.New("x")}
	if !isPermanent(fmt.Errorf("wrapped: %w", auth)) {
		t.Error("wrapped permanent AccountError not permanent")
	}
	if isPermanent(tmp) || isPermanent(errors.New("dial tcp: refused")) {
		t.Error("temporary error classified permanent")
	}
}

func TestSameMailbox(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"INBOX", "inbox", true},
		{"INBOX/Work", "inbox/Work", true},
		{"INBOX/Work", "INBOX/work", false},
		{"Archive", "archive", false},
		{"Lists", "Lists", true},
	}
	for _, tt := range tests {
		if got := sameMailbox(tt.a, tt.b); got != tt.want {
			t.Errorf("sameMailbox(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestInternalDate(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		raw  string
		want time.Time
	}{
		{"topmost received", "Received: from a by b;\r\n Tue, 3 Mar 2026 10:00:00 +0100\r\nReceived: from c; Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\nbody", time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)},
		{"no received", "Subject: x\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\n\r\nReceived: from x; Tue, 3 Mar 2026 10:00:00 +0100\r\n", time.Time{}},
		{"bad date", "Received: from a; yesterday\r\n\r\n", time.Time{}},
		{"future date", "Received: from a; Tue, 3 Mar 2099 10:00:00 +0100\r\n\r\n", time.Time{}},
		{"lf only", "Received: by x; Tue, 3 Mar 2026 10:00:00 +0000\nSubject: y\n\nb", time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)},
		{"empty", "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := internalDate([]byte(tt.raw), now); !got.Equal(tt.want) {
				t.Errorf("internalDate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSyntheticUIDL(t *testing.T) {
	a := syntheticUIDL("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1234)
	if a != "~h0123456789abcdef0123456789abcdef01234567.1234" {
		t.Errorf("syntheticUIDL = %q", a)
	}
	if syntheticUIDL("ab", 1) == syntheticUIDL("ab", 2) {
		t.Error("size not part of the identity")
	}
	if len(a) > 70 {
		t.Errorf("synthetic UIDL longer than RFC 1939's 70: %d", len(a))
	}
}

func msgsOf(ids ...string) []passMsg {
	var out []passMsg
	for i, id := range ids {
		out = append(out, passMsg{item: listItem{Num: i + 1, Size: 100, UIDL: id}, id: id})
	}
	return out
}

func ids(ms []passMsg) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.id)
	}
	return out
}

func TestMakePlan(t *testing.T) {
	row := func(uidl string, mod func(*store.LedgerKey)) store.LedgerKey {
		e := store.LedgerKey{UIDL: uidl, Digest: "d-" + uidl, Size: 100, StoredAt: t0}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	gone := func(e *store.LedgerKey) { e.Deleted = true }
	syn := syntheticUIDL("hdr", 100)
	keep := policy{leaveOnServer: true}
	tests := []struct {
		name     string
		pol      policy
		msgs     []passMsg
		ledger   []store.LedgerKey
		fetch    []string
		verify   []string // fetched to verify (the rest of fetch is new or prove)
		prove    []string
		gone     []string
		clear    []string
		touch    []string
		tooLarge []string
		wanted   int
	}{
		{name: "nothing known", pol: keep, msgs: msgsOf("a", "b"), fetch: []string{"a", "b"}},
		{name: "all known, idle", pol: keep, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", nil)}},
		{name: "stale rows touched", pol: keep, msgs: msgsOf("a", "b"), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Stale = true }), row("b", nil)}, touch: []string{"a"}},
		{name: "unlisted stale row not touched, but gone", pol: keep, msgs: msgsOf(), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Stale = true })}, gone: []string{"a"}},
		{name: "size differs: verify", pol: keep, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Size = 99 })}, fetch: []string{"a"}, verify: []string{"a"}},
		{name: "leave false: known retrieved to prove before DELE", pol: policy{}, msgs: msgsOf("a", "b"), ledger: []store.LedgerKey{row("a", nil)}, fetch: []string{"a", "b"}, prove: []string{"a"}, wanted: 1},
		// Case 1 and 2 of the issue: a tombstone's UIDL back, same size.
		{name: "tombstone back with its size: verify, never delete unproven", pol: policy{}, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", gone)}, fetch: []string{"a"}, verify: []string{"a"}, wanted: 1},
		{name: "tombstone back, policy keeps: verify", pol: keep, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", gone)}, fetch: []string{"a"}, verify: []string{"a"}},
		{name: "pending listed and policy deletes", pol: policy{}, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.DeletePending = true })}, fetch: []string{"a"}, prove: []string{"a"}, wanted: 1},
		{name: "pending listed, policy keeps", pol: keep, msgs: msgsOf("a"), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.DeletePending = true })}, clear: []string{"a"}},
		{name: "pending gone", pol: keep, msgs: msgsOf(), ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.DeletePending = true })}, gone: []string{"a"}},
		{name: "gone row stays gone, not marked again", pol: keep, msgs: msgsOf(), ledger: []store.LedgerKey{row("a", gone)}},
		{name: "duplicate uidl: both fetched", pol: keep, msgs: msgsOf("a", "a", "b"), fetch: []string{"a", "a", "b"}},
		{name: "known uidl listed twice: verify both, no continuity", pol: policy{}, msgs: msgsOf("a", "a"), ledger: []store.LedgerKey{row("a", nil)}, fetch: []string{"a", "a"}, verify: []string{"a", "a"}, wanted: 2},
		{name: "too large new", pol: policy{leaveOnServer: true, maxSize: 50}, msgs: msgsOf("a"), tooLarge: []string{"a"}},
		{name: "too large known stays skipped", pol: policy{leaveOnServer: true, maxSize: 50}, msgs: msgsOf("a"),
			ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Skipped = reasonTooLarge; e.Digest = "" })}},
		{name: "too large, limit raised", pol: keep, msgs: msgsOf("a"),
			ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Skipped = reasonTooLarge; e.Digest = "" })}, fetch: []string{"a"}},
		{name: "skipped too large never deleted", pol: policy{}, msgs: msgsOf("a"),
			ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Skipped = reasonTooLarge; e.Digest = "" })}, fetch: []string{"a"}},
		{name: "duplicate-of row is deletable", pol: policy{}, msgs: msgsOf("a"),
			ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Skipped = reasonDuplicatePrefix + "z"; e.Expunged = true })}, fetch: []string{"a"}, prove: []string{"a"}, wanted: 1},
		{name: "delete on expunge", pol: policy{leaveOnServer: true, deleteOnExpunge: true}, msgs: msgsOf("a", "b"),
			ledger: []store.LedgerKey{row("a", func(e *store.LedgerKey) { e.Expunged = true }), row("b", nil)}, fetch: []string{"a"}, prove: []string{"a"}, wanted: 1},
		{name: "synthetic known, policy keeps: nothing to do", pol: keep, msgs: msgsOf(syn), ledger: []store.LedgerKey{row(syn, nil)}},
		{name: "synthetic known, policy deletes: prove by content", pol: policy{}, msgs: msgsOf(syn), ledger: []store.LedgerKey{row(syn, nil)},
			fetch: []string{syn}, prove: []string{syn}, wanted: 1},
		// Case 3 of the issue: twins on a server without UIDL.
		{name: "synthetic twins, one stored: verify both", pol: policy{}, msgs: msgsOf(syn, syn), ledger: []store.LedgerKey{row(syn, nil)},
			fetch: []string{syn, syn}, verify: []string{syn, syn}, wanted: 2},
		{name: "synthetic class shrank: verify", pol: keep, msgs: msgsOf(syn),
			ledger: []store.LedgerKey{row(syn, nil), row(syn, func(e *store.LedgerKey) { e.Digest = "d-other" })}, fetch: []string{syn}, verify: []string{syn}},
		{name: "max size lowered under a stored message the policy deletes: unproven, not fetched", pol: policy{maxSize: 50}, msgs: msgsOf("a"),
			ledger: []store.LedgerKey{row("a", gone)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := makePlan(tt.pol, tt.msgs, tt.ledger, nil, t0)
			check := func(what string, got, want []string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			check("fetch", ids(pl.fetch), tt.fetch)
			var verify, prove []string
			for _, m := range pl.fetch {
				switch pl.purpose[m.item.Num] {
				case fetchVerify:
					verify = append(verify, m.id)
				case fetchProve:
					prove = append(prove, m.id)
				}
			}
			check("verify", verify, tt.verify)
			check("prove", prove, tt.prove)
			var goneIDs []string
			for _, r := range pl.gone {
				goneIDs = append(goneIDs, r.UIDL)
			}
			check("gone", goneIDs, tt.gone)
			check("pendingClear", pl.pendingClear, tt.clear)
			check("touch", pl.touch, tt.touch)
			check("tooLarge", ids(pl.tooLarge), tt.tooLarge)
			if len(pl.wanted) != tt.wanted {
				t.Errorf("wanted = %d, want %d", len(pl.wanted), tt.wanted)
			}
		})
	}
}

// TestMakePlanAcrossMessages runs one plan over messages that each need a
// different path (verified size, content to verify against two stored
// digests, pending mark to clear, skipped), with the ledger out of UIDL
// order, so that state kept between messages (buffers, grouping) shows.
func TestMakePlanAcrossMessages(t *testing.T) {
	key := func(uidl, digest string, size int64) store.LedgerKey {
		return store.LedgerKey{UIDL: uidl, Digest: digest, Size: size, StoredAt: t0}
	}
	pending := key("c", "d-c", 100)
	pending.DeletePending = true
	skipped := key("e", "", 100)
	skipped.Skipped = "retrieval failed 3 times"
	ledger := []store.LedgerKey{key("b", "d-b1", 50), pending, key("a", "d-a", 99), skipped, key("d", "d-d", 100), key("b", "d-b2", 60), key("d", "d-d2", 70)}
	pl := makePlan(policy{leaveOnServer: true}, msgsOf("a", "c", "b", "d", "e", "f"), ledger, map[string]int64{"a": 100}, t0)
	if got := ids(pl.fetch); !slices.Equal(got, []string{"b", "f"}) {
		t.Errorf("fetch = %v, want [b f]", got)
	}
	if len(pl.rows) != 1 {
		t.Errorf("identities to verify = %v, want b only", pl.rows)
	}
	if got := pl.rows["b"]; len(got) != 2 || got["d-b1"].Size != 50 || got["d-b2"].Size != 60 {
		t.Errorf("known digests of b = %v, want d-b1 and d-b2", got)
	}
	if !slices.Equal(pl.pendingClear, []string{"c"}) {
		t.Errorf("pendingClear = %v, want [c]", pl.pendingClear)
	}
	if pl.knownLive != 4 || pl.newCount != 1 || len(pl.wanted) != 0 || len(pl.touch) != 0 {
		t.Errorf("knownLive %d, newCount %d, wanted %v, touch %v", pl.knownLive, pl.newCount, pl.wanted, pl.touch)
	}
}
