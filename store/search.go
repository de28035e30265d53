package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// SearchText returns, ascending, the UIDs among uids (nil: all) whose decoded
// text contains q.Needle, case-insensitively. For TextHeader with a Header
// name, an empty Needle matches every message that has the field.
func (s *Store) SearchText(ctx context.Context, u UserID, id MailboxID, q TextQuery, uids []UID) ([]UID, error) {
	needle := collapseSpace(strings.ToLower(q.Needle))
	field := strings.ToLower(strings.TrimSpace(q.Header))
	var out []UID
	err := s.read(ctx, "search text", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		f := newUIDFilter(uids)
		if f.none {
			return nil
		}
		args := append([]any{id}, f.args...)
		var cond string
		cols := "mm.uid"
		switch {
		case q.Kind == TextHeader && field != "":
			cols = "mm.uid, t.header_text"
		case q.Kind == TextHeader:
			cond = " AND " + sqlContains("t.header_text")
			args = append(args, needle)
		case q.Kind == TextBody:
			cond = " AND " + sqlContains("t.body_text")
			args = append(args, needle)
		case q.Kind == TextAll:
			cond = " AND (" + sqlContains("t.header_text") + " OR " + sqlContains("t.body_text") + ")"
			args = append(args, needle, needle)
		default:
			return fmt.Errorf("unknown text kind %d", q.Kind)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM mailbox_messages mm JOIN message_text t ON t.message_id = mm.message_id
			WHERE mm.mailbox_id = ?`+f.clause+cond+` ORDER BY mm.uid`, args...)
		if err != nil {
			return fmt.Errorf("query text: %w", err)
		}
		defer rows.Close()
		prefix := field + ": "
		for rows.Next() {
			var (
				uid int64
				ht  string
			)
			dest := []any{&uid}
			if field != "" && q.Kind == TextHeader {
				dest = append(dest, &ht)
			}
			if err := rows.Scan(dest...); err != nil {
				return fmt.Errorf("scan text: %w", err)
			}
			if !f.keep(UID(uid)) {
				continue
			}
			if len(dest) == 2 && !headerFieldContains(ht, prefix, needle) {
				continue
			}
			out = append(out, UID(uid))
		}
		return rows.Err()
	})
	return out, err
}

// headerFieldContains reports whether a field line starting with prefix
// ("name: ") in the stored header text contains needle.
func headerFieldContains(ht, prefix, needle string) bool {
	for line := range strings.SplitSeq(ht, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok && strings.Contains(v, needle) {
			return true
		}
	}
	return false
}
