package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// SearchText returns, ascending, the UIDs among uids (nil: all) whose decoded
// text contains q.Needle, case-insensitively. For TextHeader with a Header
// name, an empty Needle matches every message that has the field.
//
// The decoded texts were stored, lower-cased, next to each message's bytes
// at delivery: a search reads those (from the page cache, usually) and
// never decodes a message again. A message whose text cannot be read
// (ErrCorrupt) does not match: it is logged, counted in DamageStats and
// skipped, and the search answers from the others.
func (s *Store) SearchText(ctx context.Context, u UserID, id MailboxID, q TextQuery, uids []UID) ([]UID, error) {
	needle := []byte(collapseSpace(strings.ToLower(q.Needle)))
	field := strings.ToLower(strings.TrimSpace(q.Header))
	switch q.Kind {
	case TextHeader, TextBody, TextAll:
	default:
		return nil, fmt.Errorf("search text: unknown text kind %d", q.Kind)
	}
	r := s.blobs.begin()
	defer r.end()
	r.readAhead() // one read transaction, records mostly in UID order
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
		rows, err := tx.QueryContext(ctx, `SELECT mm.uid, `+locColumns("m.")+` FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
			WHERE mm.mailbox_id = ?`+f.clause+` ORDER BY mm.uid`, args...)
		if err != nil {
			return fmt.Errorf("query text: %w", err)
		}
		defer rows.Close()
		prefix := []byte(field + ": ")
		for rows.Next() {
			var (
				uid UID
				loc blobLoc
			)
			if err := scanLoc(rows, &loc, &uid); err != nil {
				return fmt.Errorf("scan text: %w", err)
			}
			if !f.keep(uid) {
				continue
			}
			head := func() ([]byte, error) { return r.head(loc) }
			body := func(needle []byte) (bool, error) { return r.textContains(loc, needle) }
			if !loc.indexed {
				// Not indexed yet (index.go): the texts come from
				// parsing the message, as the indexer will.
				pm, err := s.parseStored(r, loc)
				if isCorruptRead(err) {
					s.noteDamagedText(id, uid, err)
					continue
				}
				if err != nil {
					return fmt.Errorf("uid %d: %w", uid, err)
				}
				head = func() ([]byte, error) { return stringBytes(pm.headerText), nil }
				body = func(needle []byte) (bool, error) { return bytes.Contains(stringBytes(pm.bodyText), needle), nil }
			}
			ok, err := textMatches(head, body, q.Kind, q.Kind == TextHeader && field != "", prefix, needle)
			if isCorruptRead(err) {
				// A damaged text costs only its own message: it
				// does not match, and the search goes on.
				s.noteDamagedText(id, uid, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("uid %d: %w", uid, err)
			}
			if ok {
				out = append(out, uid)
			}
		}
		return rows.Err()
	})
	return out, err
}

// textMatches reports whether a message's texts match: for TextHeader
// with a field, a line of that field (prefix "name: ") containing needle;
// otherwise the header text, the body text or either containing needle.
// head returns the header text, body reports whether the body text
// contains a needle; a call of body may invalidate what head returned.
func textMatches(head func() ([]byte, error), body func(needle []byte) (bool, error), kind TextKind, byField bool, prefix, needle []byte) (bool, error) {
	if kind == TextHeader || kind == TextAll {
		ht, err := head()
		if err != nil {
			return false, err
		}
		if byField {
			return headerFieldContains(ht, prefix, needle), nil
		}
		if bytes.Contains(ht, needle) {
			return true, nil
		}
		if kind == TextHeader {
			return false, nil
		}
	}
	return body(needle)
}

// headerFieldContains reports whether a field line starting with prefix
// ("name: ") in the stored header text contains needle.
func headerFieldContains(ht, prefix, needle []byte) bool {
	for line := range bytes.SplitSeq(ht, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, prefix); ok && bytes.Contains(v, needle) {
			return true
		}
	}
	return false
}
