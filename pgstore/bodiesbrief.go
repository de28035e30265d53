package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/store"
)

// BodiesBrief is Bodies that also hands fn each message's metadata as
// MetaBrief lists it (no envelope or structure), read in the same
// transaction; with store.BriefHeader, raw is only the message's header
// (raw[:store.HeaderLen(raw)] of its bytes; MessageMeta.Size is still the
// whole message's), read from the message's first 8,000-byte row when the
// header ends in it — nearly always — instead of all of its rows. A header
// sync of clients that ask for header fields without ENVELOPE (Thunderbird
// does) then reads a few kilobytes a message, not the whole mailbox. The
// UID, message id, flags, modseq, size and internal date are always filled
// (want names what a caller needs; more is no cost here). m and raw are
// only valid during the call to fn. Messages are visited in ascending UID
// order, absent UIDs skipped, duplicates once; damaged is always nil.
func (s *Store) BodiesBrief(ctx context.Context, u store.UserID, id store.MailboxID, uids []store.UID, want store.BriefFields,
	fn func(m *store.MessageMeta, raw []byte, damaged error) error) error {
	arr, all, ok := uidArray(uids)
	if !ok {
		return nil
	}
	slices.Sort(arr)
	arr = slices.Compact(arr)
	return s.read(ctx, "message bodies", func(tx pgx.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id, false); err != nil {
			return err
		}
		metas, err := briefMetas(ctx, tx, id, arr, all)
		if err != nil {
			return err
		}
		for len(metas) > 0 {
			part := metas[:min(len(metas), bodiesBatch*8)]
			metas = metas[len(part):]
			var err error
			if want&store.BriefHeader != 0 {
				err = briefHeaders(ctx, tx, part, fn)
			} else {
				err = briefBodies(ctx, tx, part, fn)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// briefMetas lists the entries of mailbox id among uids (all: every one)
// with MetaBrief's metadata, ascending by UID. Entries with identical
// flags share one slice, as selectEntries makes them; one zone value per
// offset.
func briefMetas(ctx context.Context, tx pgx.Tx, id store.MailboxID, uids []int64, all bool) ([]store.MessageMeta, error) {
	query := `SELECT mm.uid, mm.message_id, mm.flags, mm.modseq, m.size, m.internal_date, m.internal_zone
		FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id WHERE mm.mailbox_id = $1`
	args := []any{id}
	if !all {
		query += ` AND mm.uid = ANY ($2)`
		args = append(args, uids)
	}
	rows, err := tx.Query(ctx, query+` ORDER BY mm.uid`, args...)
	if err != nil {
		return nil, fmt.Errorf("query meta: %w", err)
	}
	shared := map[string][]string{}
	zones := map[int32]*time.Location{}
	var (
		out         []store.MessageMeta
		uid, modseq int64
		msg         store.MessageID
		size        int64
		flags       []string
		date        time.Time
		zone        int32
	)
	_, err = pgx.ForEachRow(rows, []any{&uid, &msg, &flags, &modseq, &size, &date, &zone}, func() error {
		key := strings.Join(flags, "\x00")
		f, ok := shared[key]
		if !ok {
			f = slices.Clone(flags)
			if f == nil {
				f = []string{}
			}
			shared[key] = f
		}
		loc, ok := zones[zone]
		if !ok {
			loc = time.FixedZone("", int(zone))
			zones[zone] = loc
		}
		out = append(out, store.MessageMeta{
			Entry:        store.Entry{UID: store.UID(uid), Message: msg, Flags: f, ModSeq: uint64(modseq)},
			InternalDate: date.In(loc),
			Size:         size,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query meta: %w", err)
	}
	return out, nil
}

// headerIn returns the length of the header of a message whose bytes
// begin with prefix (whole: prefix is all of them), and whether prefix
// decides it: store.HeaderLen of the complete lines of prefix, when it
// ends before the last of them (a blank line, or a line that is no field,
// seen whole) or with the last one being blank, equals store.HeaderLen of
// the whole message; a header that runs to the last complete line and is
// not ended by it might go on after it.
func headerIn(prefix []byte, whole bool) (int, bool) {
	if whole {
		return store.HeaderLen(prefix), true
	}
	lines := prefix[:bytes.LastIndexByte(prefix, '\n')+1]
	h := store.HeaderLen(lines)
	if h < len(lines) {
		return h, true
	}
	// Ended by the last complete line when it is blank (HeaderLen stops
	// at the first blank line).
	if h > 0 {
		last := lines[bytes.LastIndexByte(lines[:h-1], '\n')+1 : h]
		if string(last) == "\r\n" || string(last) == "\n" {
			return h, true
		}
	}
	return 0, false
}

// briefHeaders hands fn the header of each message of metas (ascending by
// UID): from its first chunk row when headerIn decides it there, else from
// all of its bytes.
func briefHeaders(ctx context.Context, tx pgx.Tx, metas []store.MessageMeta, fn func(m *store.MessageMeta, raw []byte, damaged error) error) error {
	ids := make([]int64, len(metas))
	for i, m := range metas {
		ids[i] = int64(m.Message)
	}
	// Only up to the first blank line of the row is sent (stored line
	// ends are CRLF): the rows are 8,000 bytes, a header 1-3 KB.
	rows, err := tx.Query(ctx, `SELECT message_id, CASE WHEN p > 0 THEN substring(data FROM 1 FOR p + 3) ELSE data END
		FROM (SELECT message_id, data, position('\x0d0a0d0a'::bytea IN data) AS p FROM message_data
			WHERE message_id = ANY ($1) AND seq = 0) AS first`, ids)
	if err != nil {
		return fmt.Errorf("read message headers: %w", err)
	}
	headers := make(map[store.MessageID][]byte, len(metas))
	size := make(map[store.MessageID]int64, len(metas))
	for _, m := range metas {
		size[m.Message] = m.Size
	}
	var (
		mid   int64
		first []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&mid, &first}, func() error {
		if h, ok := headerIn(first, int64(len(first)) >= size[store.MessageID(mid)]); ok {
			headers[store.MessageID(mid)] = bytes.Clone(first[:h])
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read message headers: %w", err)
	}
	// Headers not decided by their first row: read whole (rare: a
	// header of more than 8,000 bytes).
	var long []int64
	for _, m := range metas {
		if _, ok := headers[m.Message]; !ok {
			long = append(long, int64(m.Message))
		}
	}
	if len(long) > 0 {
		err := readGroup(ctx, tx, long, func(int) []byte { return nil }, func(i int, raw []byte) error {
			headers[store.MessageID(long[i])] = bytes.Clone(raw[:store.HeaderLen(raw)])
			return nil
		})
		if err != nil {
			return err
		}
	}
	for i := range metas {
		h, ok := headers[metas[i].Message]
		if !ok {
			continue // no bytes: passed over, as Bodies does
		}
		if err := fn(&metas[i], h, nil); err != nil {
			return err
		}
	}
	return nil
}

// briefBodies hands fn the whole bytes of each message of metas
// (ascending by UID), bodiesBatch messages per statement.
func briefBodies(ctx context.Context, tx pgx.Tx, metas []store.MessageMeta, fn func(m *store.MessageMeta, raw []byte, damaged error) error) error {
	var buf []byte
	for len(metas) > 0 {
		part := metas[:min(len(metas), bodiesBatch)]
		metas = metas[len(part):]
		ids := make([]int64, len(part))
		for i, m := range part {
			ids[i] = int64(m.Message)
		}
		err := readGroup(ctx, tx, ids, func(int) []byte { return buf[:0] }, func(i int, raw []byte) error {
			buf = raw
			return fn(&part[i], raw, nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
