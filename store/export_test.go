package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestExportMessagesLegacyBodies: a message whose bytes are still in
// message_data (written by an older program, not moved to a pack yet) is
// exported from there; one with no bytes anywhere is exported as damaged.
func TestExportMessagesLegacyBodies(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t)
	out := deliverForExport(t, s, "a", "b", "c")
	if _, err := s.wdb.ExecContext(ctx, `INSERT INTO message_data (message_id, data) VALUES (?, ?)`, out[0], []byte("legacy bytes\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.ExecContext(ctx, `UPDATE messages SET pack = NULL WHERE id IN (?, ?)`, out[0], out[1]); err != nil {
		t.Fatal(err)
	}
	got := map[MessageID]ExportedMessage{}
	if err := s.ExportMessages(ctx, func(m ExportedMessage) error {
		m.Raw = bytes.Clone(m.Raw)
		got[m.ID] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("exported %d messages, want 3", len(got))
	}
	if m := got[out[0]]; m.Err != nil || string(m.Raw) != "legacy bytes\r\n" {
		t.Errorf("legacy message: %q, %v", m.Raw, m.Err)
	}
	if m := got[out[1]]; !errors.Is(m.Err, ErrCorrupt) || m.Raw != nil {
		t.Errorf("message without bytes: %q, %v; want ErrCorrupt", m.Raw, m.Err)
	}
	if m := got[out[2]]; m.Err != nil || !bytes.Contains(m.Raw, []byte("c@example")) {
		t.Errorf("packed message: %q, %v", m.Raw, m.Err)
	}
}

func deliverForExport(t *testing.T, s *Store, tags ...string) []MessageID {
	t.Helper()
	mustUser(t, s, "u")
	var ds []Delivery
	for _, tag := range tags {
		ds = append(ds, Delivery{Account: "acct", UIDL: tag, Digest: tag, User: "u", Raw: testMessage(tag)})
	}
	out, err := s.Deliver(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]MessageID, len(out))
	for i, d := range out {
		ids[i] = d.Message
	}
	return ids
}
