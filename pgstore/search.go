package pgstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// SearchText returns, ascending, the UIDs among uids (nil: all) whose
// decoded text contains q.Needle, case-insensitively, with the semantics
// of the SQLite store's SearchText (store.TextMatcher): for TextHeader
// with a Header name, an empty Needle matches every message that has the
// field.
//
// The texts were decoded and lower-cased when the message was indexed;
// the database keeps only the candidates whose text contains the needle
// (position in bytea), and the matcher decides on those. Messages not
// indexed yet are parsed here, with the same parser.
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
		// An unindexed message (no texts yet) is a candidate too: its
		// bytes are parsed below for its texts.
		query := `SELECT mm.uid, mm.message_id, t.message_id IS NULL, t.header_text, CASE WHEN $3 THEN t.body_text ELSE ''::bytea END
			FROM mailbox_messages mm LEFT JOIN message_text t ON t.message_id = mm.message_id
			WHERE mm.mailbox_id = $1 AND (t.message_id IS NULL OR ` + filter + `)`
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
		var (
			unindexed []int64           // message ids
			uidsOf    map[int64][]int64 // message id -> its UIDs here
		)
		for rows.Next() {
			var (
				uid, msg   int64
				noText     bool
				head, body []byte
			)
			if err := rows.Scan(&uid, &msg, &noText, &head, &body); err != nil {
				return fmt.Errorf("scan text: %w", err)
			}
			if noText {
				if uidsOf == nil {
					uidsOf = map[int64][]int64{}
				}
				if uidsOf[msg] == nil {
					unindexed = append(unindexed, msg)
				}
				uidsOf[msg] = append(uidsOf[msg], uid)
				continue
			}
			if m.Match(head, body) {
				out = append(out, store.UID(uid))
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query text: %w", err)
		}
		if len(unindexed) == 0 {
			return nil
		}
		err = s.parseUnindexed(ctx, tx, unindexed, func(id int64, pm *store.ParsedMessage) error {
			body := pm.BodyText
			if q.Kind == store.TextHeader {
				body = ""
			}
			if m.Match([]byte(pm.HeaderText), []byte(body)) {
				for _, uid := range uidsOf[id] {
					out = append(out, store.UID(uid))
				}
			}
			return nil
		})
		slices.Sort(out)
		return err
	})
	return out, err
}
