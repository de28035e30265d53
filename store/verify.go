package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Origin is where a stored message came from: a POP ledger entry.
type Origin struct {
	Account string
	UIDL    string
	// Digest is the SHA-256 (hex) of the whole message as retrieved.
	Digest string
}

// MailboxEntry is one place a message is filed: a user's mailbox and UID.
type MailboxEntry struct {
	User      string
	UserID    UserID
	Mailbox   string
	MailboxID MailboxID
	UID       UID
}

// DamagedMessage is a stored message whose data can't be read.
type DamagedMessage struct {
	Message MessageID
	// Bytes is set when the message's own bytes are unreadable; when only
	// its search texts are, the bytes are intact and the texts can be
	// rebuilt from them.
	Bytes bool
	Err   error
	// Entries are the mailboxes and UIDs that show the message (none for
	// a message no mailbox holds any more); Origins its ledger entries.
	Entries []MailboxEntry
	Origins []Origin
	Size    int64
	// Subject and From are from the stored envelope ("" when unknown).
	Subject, From string
	Date          time.Time
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	// Integrity lists what SQLite's integrity_check found wrong (empty
	// when the database is sound).
	Integrity []string
	// Packs are the pack files the database refers to that are missing
	// or truncated.
	Packs []PackProblem
	// Messages is how many stored messages were read and checked.
	Messages int
	// Unpacked counts messages that have no bytes in any pack.
	Unpacked int
	Damaged  []DamagedMessage
}

// OK reports whether Verify found nothing wrong.
func (r *VerifyReport) OK() bool {
	return len(r.Integrity) == 0 && len(r.Packs) == 0 && r.Unpacked == 0 && len(r.Damaged) == 0
}

// verifyBatch is how many messages one read transaction of Verify checks.
const verifyBatch = 512

// Verify checks the whole store: the database (PRAGMA integrity_check),
// the pack files against the database, and every message's bytes and
// search texts against their checksums. It works on a read-only Store
// beside a running writer (a message seen damaged is read again in a new
// snapshot before it is reported, so a record moved by compaction
// meanwhile is not mistaken for damage). progress, when not nil, is
// called with the messages checked so far.
func (s *Store) Verify(ctx context.Context, progress func(done int)) (VerifyReport, error) {
	var rep VerifyReport
	if err := s.read(ctx, "integrity check", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `PRAGMA integrity_check`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			if line != "ok" {
				rep.Integrity = append(rep.Integrity, line)
			}
		}
		return rows.Err()
	}); err != nil {
		if !errors.Is(err, ErrDatabaseCorrupt) {
			return rep, err
		}
		rep.Integrity = append(rep.Integrity, err.Error())
	}
	problems, err := s.checkPacks(ctx, false)
	if err != nil {
		if !errors.Is(err, ErrDatabaseCorrupt) {
			return rep, err
		}
		rep.Integrity = append(rep.Integrity, err.Error())
	}
	rep.Packs = problems

	var damaged []MessageID
	var after MessageID
	for {
		var ids []MessageID
		var locs []blobLoc
		err := s.read(ctx, "verify messages", func(tx *sql.Tx) error {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE pack IS NULL`).Scan(&rep.Unpacked); err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, `SELECT id, `+locColumns("")+` FROM messages WHERE pack IS NOT NULL AND id > ? ORDER BY id LIMIT ?`, after, verifyBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id MessageID
				var l blobLoc
				if err := scanLoc(rows, &l, &id); err != nil {
					return err
				}
				ids, locs = append(ids, id), append(locs, l)
			}
			return rows.Err()
		})
		if err != nil {
			if errors.Is(err, ErrDatabaseCorrupt) {
				rep.Integrity = append(rep.Integrity, err.Error())
				break
			}
			return rep, err
		}
		if len(ids) == 0 {
			break
		}
		r := s.blobs.begin()
		for i, l := range locs {
			if _, _, err := checkRecords(r, l); err != nil {
				damaged = append(damaged, ids[i])
			}
		}
		r.end()
		rep.Messages += len(ids)
		after = ids[len(ids)-1]
		if progress != nil {
			progress(rep.Messages)
		}
	}
	for _, id := range damaged {
		d, ok, err := s.describeDamage(ctx, id)
		if err != nil {
			return rep, err
		}
		if ok {
			rep.Damaged = append(rep.Damaged, d)
		}
	}
	return rep, nil
}

// checkRecords reads a message's records through r: its bytes and, once
// indexed, its texts. bytesBad tells which failed.
func checkRecords(r *blobReader, l blobLoc) (bytesBad, textsBad bool, err error) {
	if _, err := r.body(l); err != nil {
		return true, false, err
	}
	if l.rawHead {
		// The header's own checksum, which a header-only FETCH
		// relies on (blobReader.header).
		if _, err := r.header(l); err != nil {
			return true, false, err
		}
	}
	if !l.indexed {
		return false, false, nil
	}
	if _, err := r.head(l); err != nil {
		return false, true, err
	}
	if _, err := r.text(l); err != nil {
		return false, true, err
	}
	return false, false, nil
}

// describeDamage reads message id again, in a new snapshot, and when it is
// still damaged describes it: where it is filed and where it came from.
// ok is false when the message reads fine now (or is gone).
func (s *Store) describeDamage(ctx context.Context, id MessageID) (DamagedMessage, bool, error) {
	d := DamagedMessage{Message: id}
	r := s.blobs.begin()
	defer r.end()
	found := false
	err := s.read(ctx, "describe damaged message", func(tx *sql.Tx) error {
		var l blobLoc
		var date string
		var env []byte
		err := scanLoc(tx.QueryRowContext(ctx, `SELECT internal_date, envelope, `+locColumns("")+` FROM messages WHERE id = ? AND pack IS NOT NULL`, id), &l, &date, &env)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		bytesBad, textsBad, rerr := checkRecords(r, l)
		if !bytesBad && !textsBad {
			return nil
		}
		found = true
		d.Bytes, d.Err, d.Size = bytesBad, rerr, l.size
		if t, err := parseTime(date); err == nil {
			d.Date = t
		}
		if l.indexed {
			if e, _, err := decodeEnvelope(string(env)); err == nil && e != nil {
				d.Subject = e.Subject
				if len(e.From) > 0 {
					d.From = e.From[0].Mailbox + "@" + e.From[0].Host
				}
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT u.name, u.id, mb.name, mb.id, mm.uid FROM mailbox_messages mm
			JOIN mailboxes mb ON mb.id = mm.mailbox_id JOIN users u ON u.id = mb.user_id
			WHERE mm.message_id = ? ORDER BY u.name, mb.name, mm.uid`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e MailboxEntry
			if err := rows.Scan(&e.User, &e.UserID, &e.Mailbox, &e.MailboxID, &e.UID); err != nil {
				rows.Close()
				return err
			}
			d.Entries = append(d.Entries, e)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT account, uidl, digest FROM pop_ledger WHERE message_id = ? ORDER BY id`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o Origin
			if err := rows.Scan(&o.Account, &o.UIDL, &o.Digest); err != nil {
				return err
			}
			d.Origins = append(d.Origins, o)
		}
		return rows.Err()
	})
	return d, found, err
}

// RawBytes returns the bytes of message id when they are readable, for
// rebuilding its texts; an error wrapping ErrCorrupt when they are not.
func (s *Store) RawBytes(ctx context.Context, id MessageID) ([]byte, error) {
	r := s.blobs.begin()
	defer r.end()
	var l blobLoc
	err := s.read(ctx, "message bytes", func(tx *sql.Tx) error {
		err := scanLoc(tx.QueryRowContext(ctx, `SELECT `+locColumns("")+` FROM messages WHERE id = ? AND pack IS NOT NULL`, id), &l)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("message %d: %w", id, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	raw, err := r.body(l)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", id, err)
	}
	return slices.Clone(raw), nil
}

// ReplaceMessage stores raw as the bytes of message id (every mailbox
// entry showing it shows the new bytes; flags and UIDs are kept) and
// indexes it: new records are written, and the row is pointed at them in
// one transaction. It is how popbridge verify -repair restores a damaged
// message from its upstream copy, rebuilds damaged texts from intact
// bytes, or puts a notice in place of bytes that are lost. Callers check
// that raw is the message's content (the ledger's digest).
func (s *Store) ReplaceMessage(ctx context.Context, id MessageID, raw []byte) error {
	if err := s.writable("replace message"); err != nil {
		return err
	}
	raw = normalizeCRLF(raw)
	pm := s.parseStoredForm(raw)
	var date string
	if err := s.read(ctx, "replace message", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT internal_date FROM messages WHERE id = ?`, id).Scan(&date)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("message %d: %w", id, ErrNotFound)
		}
		return err
	}); err != nil {
		return err
	}
	size := int64(len(raw))
	em, err := encodeMeta(&pm, size, date)
	if err != nil {
		return fmt.Errorf("replace message %d: %w", id, err)
	}
	return s.writeRecords(ctx, "replace message", []blobRec{rawRecord(raw), textRecord(&pm)}, func(w *writeTx, locs []recordLoc) error {
		res, err := w.ExecContext(w.ctx, `UPDATE messages SET size = ?, envelope = ?, structure = ?, indexed = 1,
			pack = ?, pack_off = ?, body_crc = ?, text_pack = ?, text_off = ?, head_len = ?, text_len = ?, head_crc = ?, text_crc = ?, text_from = ?,
			raw_head_len = ?, raw_head_crc = ?
			WHERE id = ?`, size, em.env, em.st, locs[0].pack, locs[0].off, int64(locs[0].sum),
			locs[1].pack, locs[1].off, len(pm.headerText), len(pm.storedBodyText()), int64(locs[1].crc[0]), int64(locs[1].crc[1]), pm.textFromArg(),
			locs[0].len0, int64(locs[0].crc[0]), id)
		if err != nil {
			return fmt.Errorf("update message %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("message %d: %w", id, ErrNotFound)
		}
		w.deletedMsgs = append(w.deletedMsgs, id)
		w.newMsgs = append(w.newMsgs, id)
		w.newInfos = append(w.newInfos, em.info)
		return nil
	})
}

// DamagedMailbox is the mailbox popbridge verify -repair moves messages
// whose data could not be recovered into.
const DamagedMailbox = "Damaged"

// Quarantine moves the entry uid of mailbox src of user u into the user's
// DamagedMailbox (created when missing) and returns its new UID.
func (s *Store) Quarantine(ctx context.Context, u UserID, src MailboxID, uid UID) (UID, error) {
	dst, err := s.MailboxByName(ctx, u, DamagedMailbox)
	if errors.Is(err, ErrNotFound) {
		dst, err = s.CreateMailbox(ctx, u, DamagedMailbox, "")
	}
	if err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	if dst.ID == src {
		return uid, nil
	}
	res, err := s.Move(ctx, u, src, []UID{uid}, dst.ID)
	if err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	if len(res.Dest) != 1 {
		return 0, fmt.Errorf("quarantine uid %d: %w", uid, ErrNotFound)
	}
	return res.Dest[0], nil
}

// DamageNotice is the message put in place of bytes that are lost: it
// says what the message was, as far as the store knows, and why it is
// gone, so the mailbox holds no broken rows.
func DamageNotice(d DamagedMessage, why string) []byte {
	var b strings.Builder
	subj := d.Subject
	if subj == "" {
		subj = "(unknown)"
	}
	date := d.Date
	if date.IsZero() {
		date = time.Now()
	}
	fmt.Fprintf(&b, "From: popbridge <postmaster@popbridge.invalid>\r\n")
	fmt.Fprintf(&b, "Subject: [damaged] %s\r\n", strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, subj))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <damaged-%d@popbridge.invalid>\r\n", d.Message)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "The stored copy of this message was damaged and could not be recovered:\r\n%s\r\n\r\n", why)
	fmt.Fprintf(&b, "What is known of it:\r\n  subject: %s\r\n  from: %s\r\n  date: %s\r\n  size: %d bytes\r\n", subj, d.From, d.Date.Format(time.RFC1123Z), d.Size)
	for _, o := range d.Origins {
		fmt.Fprintf(&b, "  fetched from account %q, UIDL %q, SHA-256 %s\r\n", o.Account, o.UIDL, o.Digest)
	}
	return []byte(b.String())
}
