package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// SearchText returns, ascending, the UIDs among uids (nil: all) whose
// decoded text contains q.Needle, case-insensitively, with the semantics
// of the SQLite store's SearchText (store.TextMatcher): for TextHeader
// with a Header name, an empty Needle matches every message that has the
// field.
//
// The texts were decoded and lower-cased when the message was stored; the
// database keeps only the candidates whose text contains the needle
// (position in bytea), and the matcher decides on those.
func (s *Store) SearchText(ctx context.Context, u store.UserID, id store.MailboxID, q store.TextQuery, uids []store.UID) ([]store.UID, error) {
	switch q.Kind {
	case store.TextHeader, store.TextBody, store.TextAll:
	default:
		return nil, fmt.Errorf("search text: unknown text kind %d", q.Kind)
	}
	m := store.NewTextMatcher(q)
	needle := []byte(m.Needle())
	var filter string
	switch q.Kind {
	case store.TextHeader:
		filter = `position($2 IN t.header_text) > 0`
	case store.TextBody:
		filter = `position($2 IN t.body_text) > 0`
	default:
		filter = `(position($2 IN t.header_text) > 0 OR position($2 IN t.body_text) > 0)`
	}
	arr, all, ok := uidArray(uids)
	var out []store.UID
	err := s.read(ctx, "search text", func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id, false); err != nil {
			return err
		}
		if !ok {
			return nil
		}
		query := `SELECT mm.uid, t.header_text, CASE WHEN $3 THEN t.body_text ELSE ''::bytea END
			FROM mailbox_messages mm JOIN message_text t ON t.message_id = mm.message_id
			WHERE mm.mailbox_id = $1 AND ` + filter
		args := []any{id, needle, q.Kind != store.TextHeader}
		if !all {
			query += ` AND mm.uid = ANY ($4)`
			args = append(args, arr)
		}
		rows, err := tx.Query(ctx, query+` ORDER BY mm.uid`, args...)
		if err != nil {
			return fmt.Errorf("query text: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				uid        int64
				head, body []byte
			)
			if err := rows.Scan(&uid, &head, &body); err != nil {
				return fmt.Errorf("scan text: %w", err)
			}
			if m.Match(head, body) {
				out = append(out, store.UID(uid))
			}
		}
		return rows.Err()
	})
	return out, err
}
