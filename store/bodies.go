package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// bodiesMinRun is the shortest run of consecutive UIDs Bodies reads with a
// range scan rather than as part of a UID IN list.
const bodiesMinRun = 8

// Bodies calls fn with the raw bytes (as stored, CRLF line ends) of each
// message of the mailbox id among uids, in ascending UID order; UIDs that
// are absent (never existed or expunged) are skipped, and duplicates are
// visited once. The mailbox's ownership by u is checked once (ErrNotFound
// otherwise), and every body is read in the same read transaction: one
// range scan per run of consecutive UIDs, one UID IN query per batch of
// the others.
//
// raw is only valid during the call to fn: it points into a buffer reused
// for the next message, and fn must copy whatever it keeps. A message whose
// bytes cannot be read (they fail their checksum, or their pack is missing
// or too short) is passed to fn with raw nil and damaged, an error wrapping
// ErrCorrupt; it is logged and counted in DamageStats, and the other
// messages are read as usual. Iteration stops at the first error fn
// returns, and Bodies returns that error (wrapped; errors.Is finds it).
func (s *Store) Bodies(ctx context.Context, u UserID, id MailboxID, uids []UID, fn func(uid UID, raw []byte, damaged error) error) error {
	return s.bodies(ctx, u, id, uids, brief{}, func(m *MessageMeta, raw []byte, damaged error) error {
		return fn(m.UID, raw, damaged)
	})
}

// BriefFields names the metadata BodiesBrief reads beyond the UID, flags
// and size of each message: each column read costs a conversion per row,
// and a header sync reads 100,000 rows.
type BriefFields uint8

const (
	// BriefInternalDate: MessageMeta.InternalDate.
	BriefInternalDate BriefFields = 1 << iota
	// BriefIDs: MessageMeta.Message and MessageMeta.ModSeq.
	BriefIDs
	// BriefHeader: raw is only the message's header, raw[:HeaderLen(raw)]
	// of its bytes (MessageMeta.Size is still the whole message's). A
	// message stored with its header's checksum (migration 0007) has only
	// those bytes read and checked: damage after its header is not seen.
	BriefHeader
)

// BodiesBrief is Bodies that also hands fn each message's metadata as
// MetaBrief lists it (no envelope or structure), read by the same query:
// a header sync needs nothing more. Only the UID, flags and size are
// always filled; the fields of want are read too, the others are left
// zero. m, like raw, is only valid during the call (fn copies what it
// keeps; its Flags may be kept, they are not reused).
func (s *Store) BodiesBrief(ctx context.Context, u UserID, id MailboxID, uids []UID, want BriefFields, fn func(m *MessageMeta, raw []byte, damaged error) error) error {
	return s.bodies(ctx, u, id, uids, brief{on: true, want: want}, fn)
}

// brief is the metadata bodies reads besides the bytes: with on, the UID,
// flags and size and the fields of want; else only the UID.
type brief struct {
	on   bool
	want BriefFields
}

// bodies is Bodies and BodiesBrief.
func (s *Store) bodies(ctx context.Context, u UserID, id MailboxID, uids []UID, withMeta brief, fn func(m *MessageMeta, raw []byte, damaged error) error) error {
	set := slices.Clone(uids)
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) > 0 && set[0] == 0 {
		set = set[1:]
	}
	r := s.blobs.begin()
	defer r.end()
	r.readAhead() // one read transaction, records mostly in UID order
	return s.read(ctx, "message bodies", func(tx *sql.Tx) error {
		if _, err := mailboxByID(ctx, tx, u, id); err != nil {
			return err
		}
		var sparse []UID // pending UIDs for a UID IN query, ascending
		flush := func() error {
			for len(sparse) > 0 {
				n := min(len(sparse), sqlMaxVars-1)
				args := make([]any, 0, n+1)
				args = append(args, id)
				for _, uid := range sparse[:n] {
					args = append(args, int64(uid))
				}
				sparse = sparse[n:]
				if err := s.scanBodies(ctx, tx, r, id, withMeta, ` AND mm.uid IN (?`+strings.Repeat(", ?", n-1)+`)`, args, fn); err != nil {
					return err
				}
			}
			return nil
		}
		for i := 0; i < len(set); {
			j := i + 1
			for j < len(set) && set[j] == set[j-1]+1 {
				j++
			}
			if j-i < bodiesMinRun {
				sparse = append(sparse, set[i:j]...)
				i = j
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if err := s.scanBodies(ctx, tx, r, id, withMeta, ` AND mm.uid BETWEEN ? AND ?`, []any{id, int64(set[i]), int64(set[j-1])}, fn); err != nil {
				return err
			}
			i = j
		}
		return flush()
	})
}

// scanBodies runs one query of the mailbox args[0] restricted by clause,
// reads each message's bytes from its pack through r and hands them to fn,
// ascending by UID, with the metadata withMeta asks for.
func (s *Store) scanBodies(ctx context.Context, tx *sql.Tx, r *blobReader, mbox MailboxID, withMeta brief, clause string, args []any, fn func(m *MessageMeta, raw []byte, damaged error) error) error {
	// Only the columns needed: every column scanned costs a conversion
	// per row, and a header sync scans 100,000 rows. The integer columns
	// are scanned into interface values, which database/sql assigns
	// without reflection (into an *int64 it reflects, per column and row).
	var (
		m                   MessageMeta
		loc                 blobLoc
		uid64, crc, headLen int64
		msgID, modseq, bits int64
		kw                  string
		date                sql.RawBytes
	)
	header := withMeta.on && withMeta.want&BriefHeader != 0
	cols := `mm.uid, m.pack, m.pack_off, m.size, m.body_crc`
	ints := []*int64{&uid64, &loc.pack, &loc.off, &loc.size, &crc}
	if header {
		// One more column, not two: the checksum of what is read.
		cols = `mm.uid, m.pack, m.pack_off, m.size, IFNULL(m.raw_head_crc, m.body_crc), IFNULL(m.raw_head_len, -1)`
		ints = append(ints, &headLen)
	}
	if withMeta.on {
		cols += `, mm.flags`
		ints = append(ints, &bits)
		if withMeta.want&BriefIDs != 0 {
			cols += `, mm.message_id, mm.modseq`
			ints = append(ints, &msgID, &modseq)
		}
	}
	slots := make([]any, len(ints))
	dest := make([]any, len(ints), len(ints)+2)
	for i := range slots {
		dest[i] = &slots[i]
	}
	if withMeta.on {
		cols += `, mm.keywords`
		dest = append(dest, &kw)
		if withMeta.want&BriefInternalDate != 0 {
			cols += `, m.internal_date`
			dest = append(dest, &date)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
		WHERE mm.mailbox_id = ?`+clause+` ORDER BY mm.uid`, args...)
	if err != nil {
		return fmt.Errorf("query bodies: %w", err)
	}
	defer rows.Close()
	fi := flagInterner{}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("scan body: %w", err)
		}
		for i, p := range ints {
			v, ok := slots[i].(int64)
			if !ok {
				return fmt.Errorf("scan body: column %d is %T, want an integer", i, slots[i])
			}
			*p = v
		}
		m.UID = UID(uid64)
		if withMeta.on {
			m.Flags, m.Message, m.ModSeq, m.Size = fi.get(bits, kw), MessageID(msgID), uint64(modseq), loc.size
			if withMeta.want&BriefInternalDate != 0 {
				if m.InternalDate, err = parseTime(string(date)); err != nil {
					return fmt.Errorf("uid %d: %w", m.UID, err)
				}
			}
		}
		uid := m.UID
		var raw []byte
		if header {
			loc.rawHead, loc.rawHeadLen = headLen >= 0, headLen
			loc.bodyCRC, loc.rawHeadCRC = uint32(crc), uint32(crc)
			raw, err = r.header(loc)
		} else {
			loc.bodyCRC = uint32(crc)
			raw, err = r.body(loc)
		}
		if isCorruptRead(err) {
			err = fmt.Errorf("uid %d: %w", uid, err)
			s.noteDamagedMessage("read message", mbox, uid, err)
			if err := fn(&m, nil, err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("uid %d: %w", uid, err)
		}
		if err := fn(&m, raw, nil); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bodies: %w", err)
	}
	return nil
}
