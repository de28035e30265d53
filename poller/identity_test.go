package poller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/lib/pop3mem"
)

// sameSizeOther returns a message of exactly len(raw) bytes with other
// content: the same header, another body.
func sameSizeOther(t *testing.T, raw []byte) []byte {
	t.Helper()
	s := string(raw)
	i := strings.Index(s, "\r\n\r\n")
	if i < 0 {
		t.Fatal("message without a header/body separator")
	}
	body := []byte(s[i+4:])
	for j := range body {
		if body[j] >= 'a' && body[j] <= 'y' {
			body[j]++
			break
		}
	}
	out := []byte(s[:i+4] + string(body))
	if len(out) != len(raw) || string(out) == s {
		t.Fatalf("could not make a same-size variant")
	}
	return out
}

func (u *upstreamHarness) mustPoll() Result {
	u.t.Helper()
	r, err := u.poll(30 * time.Second)
	if err != nil {
		u.t.Fatalf("poll: %v", err)
	}
	return r
}

func msgsOfRaw(raws ...[]byte) []pop3mem.Message {
	var out []pop3mem.Message
	for _, r := range raws {
		out = append(out, pop3mem.Message{Raw: r})
	}
	return out
}

// TestReusedUIDLSameSizeIsStoredBeforeDele is case 1 of the identity
// issue: A (UIDL r1) is fetched and deleted; the server gives r1 to B of
// exactly A's size. B must be stored before it is deleted.
func TestReusedUIDLSameSizeIsStoredBeforeDele(t *testing.T) {
	u := newUpstream(t, func(a *Account) { a.LeaveOnServer = false })
	a := []byte(testMessage(1))
	u.srv.AddMessageUIDL("r1", a)
	if r := u.mustPoll(); r.Fetched != 1 || r.Deleted != 1 {
		t.Fatalf("first poll = %+v", r)
	}
	b := sameSizeOther(t, a)
	u.srv.SetMessages([]pop3mem.Message{{UIDL: "r1", Raw: b}})
	r := u.mustPoll()
	if r.Fetched != 1 || r.Deleted != 1 || r.Anomalies.UIDLReused != 1 {
		t.Fatalf("poll with r1 reused = %+v, want B fetched, deleted, one reuse", r)
	}
	u.wantExact(msgsOfRaw(a, b))
	if n := len(u.srv.Messages()); n != 0 {
		t.Errorf("upstream holds %d messages", n)
	}
}

// TestReusedUIDLAfterGap is case 2: A vanishes (another client deleted
// it), later B appears under A's UIDL with A's size; and A itself coming
// back after a gap is recognised by content, not stored twice.
func TestReusedUIDLAfterGap(t *testing.T) {
	u := newUpstream(t, nil)
	a := []byte(testMessage(1))
	u.srv.AddMessageUIDL("r1", a)
	u.mustPoll()
	u.srv.SetMessages(nil)
	u.mustPoll() // r1 is not listed: its row becomes a tombstone
	b := sameSizeOther(t, a)
	u.srv.SetMessages([]pop3mem.Message{{UIDL: "r1", Raw: b}})
	if r := u.mustPoll(); r.Fetched != 1 || r.Anomalies.UIDLReused != 1 {
		t.Fatalf("B under r1 = %+v, want fetched 1, one reuse", r)
	}
	u.wantExact(msgsOfRaw(a, b))
	// Now A comes back under r1 (B gone): known content, recorded, not stored.
	u.srv.SetMessages([]pop3mem.Message{{UIDL: "r1", Raw: a}})
	if r := u.mustPoll(); r.Fetched != 0 {
		t.Fatalf("A back = %+v, want nothing stored", r)
	}
	u.wantExact(msgsOfRaw(a, b))
	// And A, now listed continuously, is not retrieved again.
	retrs := u.srv.Count("RETR")
	u.mustPoll()
	if n := u.srv.Count("RETR") - retrs; n != 0 {
		t.Errorf("idle poll retrieved %d messages", n)
	}
}

// TestTwinsWithoutUIDL is case 3: on a server without UIDL, two messages
// with byte-identical headers and sizes but different bodies share the
// synthetic identity. Both are stored before anything is deleted.
func TestTwinsWithoutUIDL(t *testing.T) {
	for _, leave := range []bool{false, true} {
		t.Run(map[bool]string{false: "delete", true: "leave"}[leave], func(t *testing.T) {
			u := newUpstream(t, func(a *Account) { a.LeaveOnServer = leave })
			u.srv.SetFaults(pop3mem.Faults{NoUIDL: true})
			a := []byte(testMessage(1))
			b := sameSizeOther(t, a)
			u.srv.SetMessages(msgsOfRaw(a, b))
			r := u.mustPoll()
			if r.Fetched != 2 || r.Anomalies.Twins != 2 {
				t.Fatalf("poll = %+v, want both twins fetched", r)
			}
			u.wantExact(msgsOfRaw(a, b))
			left := len(u.srv.Messages())
			if (leave && left != 2) || (!leave && left != 0) {
				t.Fatalf("upstream holds %d messages", left)
			}
			retrs := u.srv.Count("RETR")
			if r := u.mustPoll(); r.Fetched != 0 {
				t.Fatalf("second poll = %+v", r)
			}
			if n := u.srv.Count("RETR") - retrs; n != 0 {
				t.Errorf("second poll retrieved %d messages, want none", n)
			}
			u.wantExact(msgsOfRaw(a, b))
		})
	}
}

// TestSyntheticIdentityNeverProvesDele: on a server without UIDL, a known
// message that the policy deletes later (delete_after) is retrieved and
// its content compared before the DELE; a same-header, same-size stranger
// in its place is stored, not deleted unseen.
func TestSyntheticIdentityNeverProvesDele(t *testing.T) {
	u := newUpstream(t, func(a *Account) { a.DeleteAfter = time.Hour })
	u.srv.SetFaults(pop3mem.Faults{NoUIDL: true})
	a := []byte(testMessage(1))
	u.srv.SetMessages(msgsOfRaw(a))
	u.mustPoll()
	// Between polls another client deleted A, and B with A's header and
	// size arrived.
	b := sameSizeOther(t, a)
	u.srv.SetMessages(msgsOfRaw(b))
	u.p.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	r := u.mustPoll()
	if r.Fetched != 1 {
		t.Fatalf("poll = %+v, want the stranger stored", r)
	}
	u.wantExact(msgsOfRaw(a, b))
	// B was stored this session, so delete_after counts from now: kept.
	if n := len(u.srv.Messages()); n != 1 {
		t.Errorf("upstream holds %d, want B kept", n)
	}
}

// TestSmallMailboxRenumbered is case 4: a 4-message mailbox whose UIDLs
// all change is stored once, with leave_on_server true and false.
func TestSmallMailboxRenumbered(t *testing.T) {
	for _, leave := range []bool{true, false} {
		t.Run(map[bool]string{false: "delete", true: "leave"}[leave], func(t *testing.T) {
			u := newUpstream(t, func(a *Account) { a.LeaveOnServer = leave })
			raws := smallMessages(4)
			for i, r := range raws {
				u.srv.AddMessageUIDL("old-"+string(rune('a'+i)), r)
			}
			if !leave {
				// The DELEs of the first poll are lost (QUIT fails), so the
				// messages are still there when the server renumbers.
				u.srv.SetFaults(pop3mem.Faults{QuitErr: true})
			}
			u.poll(30 * time.Second)
			u.srv.SetFaults(pop3mem.Faults{})
			var renum []pop3mem.Message
			for i, r := range raws {
				renum = append(renum, pop3mem.Message{UIDL: "new-" + string(rune('a'+i)), Raw: r})
			}
			u.srv.SetMessages(renum)
			r := u.mustPoll()
			if r.Fetched != 0 || r.Anomalies.Renumbered != 4 {
				t.Fatalf("renumbered poll = %+v, want nothing stored, 4 renumbered", r)
			}
			u.wantExact(msgsOfRaw(raws...))
			left := len(u.srv.Messages())
			if (leave && left != 4) || (!leave && left != 0) {
				t.Errorf("upstream holds %d messages", left)
			}
		})
	}
}

// TestIdenticalTwinsUnderTwoUIDLs: byte-identical messages under two
// UIDLs are stored once and both deleted (each is proven by content).
func TestIdenticalTwinsUnderTwoUIDLs(t *testing.T) {
	u := newUpstream(t, func(a *Account) { a.LeaveOnServer = false })
	a := []byte(testMessage(7))
	u.srv.AddMessageUIDL("x1", a)
	u.srv.AddMessageUIDL("x2", a)
	r := u.mustPoll()
	if r.Fetched != 1 || r.Deleted != 2 || r.Anomalies.Twins != 1 {
		t.Fatalf("poll = %+v, want 1 stored, 2 deleted, 1 twin", r)
	}
	u.wantExact(msgsOfRaw(a))
}

// TestStatusShowsAnomalies: the counters reach the persisted status.
func TestStatusShowsAnomalies(t *testing.T) {
	u := newUpstream(t, nil)
	a := []byte(testMessage(1))
	u.srv.AddMessageUIDL("r1", a)
	u.mustPoll()
	u.srv.SetMessages([]pop3mem.Message{{UIDL: "r2", Raw: a}})
	u.mustPoll()
	sts, err := u.st.AccountStatuses(t.Context())
	if err != nil || len(sts) != 1 {
		t.Fatalf("statuses = %v, %v", sts, err)
	}
	if got := sts[0].Anomalies.Renumbered; got != 1 {
		t.Errorf("persisted renumbered = %d, want 1", got)
	}
	if got := u.p.Status()[0].Anomalies.Renumbered; got != 1 {
		t.Errorf("in-memory renumbered = %d, want 1", got)
	}
}

// TestRenumberingServerReusingAnOldUIDL: between two polls the server
// gives every message a new UIDL, another client deletes the one that had
// old-0, and the server gives old-0 to a stranger of that message's size.
// The renumbered content is recorded, not stored; since most of the
// maildrop was renumbered, old-0 is no longer trusted, and the next poll
// retrieves it and stores the stranger.
func TestRenumberingServerReusingAnOldUIDL(t *testing.T) {
	u := newUpstream(t, nil)
	raws := smallMessages(4)
	for i, r := range raws {
		u.srv.AddMessageUIDL(fmt.Sprintf("old-%d", i), r)
	}
	u.mustPoll()
	stranger := sameSizeOther(t, raws[0])
	var next []pop3mem.Message
	for i, r := range raws[1:] {
		next = append(next, pop3mem.Message{UIDL: fmt.Sprintf("new-%d", i+1), Raw: r})
	}
	next = append(next, pop3mem.Message{UIDL: "old-0", Raw: stranger})
	u.srv.SetMessages(next)
	if r := u.mustPoll(); r.Fetched != 0 || r.Anomalies.Renumbered != 3 {
		t.Fatalf("renumbering poll = %+v", r)
	}
	if r := u.mustPoll(); r.Fetched != 1 || r.Anomalies.UIDLReused != 1 {
		t.Fatalf("next poll = %+v, want the stranger under old-0 stored", r)
	}
	u.wantExact(msgsOfRaw(append(raws, stranger)...))
	retrs := u.srv.Count("RETR")
	u.mustPoll()
	if n := u.srv.Count("RETR") - retrs; n != 0 {
		t.Errorf("settled poll retrieved %d messages", n)
	}
}

// TestOneMessageWithANewUIDLDoesNotDistrustTheRest: another client moves
// one message out of INBOX and back (a new UIDL for known content): it is
// recorded, and the rest of the maildrop is not retrieved again.
func TestOneMessageWithANewUIDLDoesNotDistrustTheRest(t *testing.T) {
	u := newUpstream(t, nil)
	raws := smallMessages(6)
	var msgs []pop3mem.Message
	for i, r := range raws {
		msgs = append(msgs, pop3mem.Message{UIDL: fmt.Sprintf("m-%d", i), Raw: r})
	}
	u.srv.SetMessages(msgs)
	u.mustPoll()
	msgs[0].UIDL = "m-moved"
	u.srv.SetMessages(msgs)
	if r := u.mustPoll(); r.Fetched != 0 || r.Anomalies.Renumbered != 1 {
		t.Fatalf("poll = %+v", r)
	}
	retrs := u.srv.Count("RETR")
	u.mustPoll()
	if n := u.srv.Count("RETR") - retrs; n != 0 {
		t.Errorf("poll after one renumbered message retrieved %d messages, want none", n)
	}
	u.wantExact(msgsOfRaw(raws...))
}
