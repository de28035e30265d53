package main

import (
	"encoding/json"
	"testing"
)

// TestStatusJSON: status -json after a poll; on_server is what is left
// upstream after the poll's deletions.
func TestStatusJSON(t *testing.T) {
	keep := newUpstream(t, "bob", "pw", 2, 200)
	take := newUpstream(t, "bob", "pw", 3, 200)
	cfg := writeConfig(t, t.TempDir(),
		acct{name: "keep", up: keep, username: "bob", password: "pw"},
		acct{name: "take", up: take, username: "bob", password: "pw", extra: "leave_on_server = false"})
	if code, out, errs := runCmd("poll", "-config", cfg); code != 0 {
		t.Fatalf("poll: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := runCmd("status", "-config", cfg, "-json")
	if code != 0 {
		t.Fatalf("status -json: exit %d: %s", code, errs)
	}
	var st jsonStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	byName := map[string]jsonAccount{}
	for _, a := range st.Accounts {
		byName[a.Name] = a
	}
	if a := byName["keep"]; !a.Polled || a.Failing || a.Fetched != 2 || a.OnServer != 2 || a.User != "alice" || a.LastSuccess.IsZero() {
		t.Errorf("keep: %+v", a)
	}
	if a := byName["take"]; a.Fetched != 3 || a.OnServer != 0 {
		t.Errorf("take: fetched %d on_server %d, want 3 and 0 (deleted upstream)", a.Fetched, a.OnServer)
	}
	if len(take.Messages()) != 0 {
		t.Fatalf("upstream still has %d messages", len(take.Messages()))
	}
	var inbox *jsonMailbox
	for _, u := range st.Users {
		for i, mb := range u.Mailboxes {
			if u.Name == "alice" && mb.Name == "INBOX" {
				inbox = &u.Mailboxes[i]
			}
		}
	}
	if inbox == nil || inbox.Messages != 5 || inbox.Unseen != 5 || inbox.Size == 0 {
		t.Errorf("alice INBOX: %+v", inbox)
	}
}
