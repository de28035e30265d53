package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// sealed returns the packs that are not being appended to and have no
// write in flight, with their sizes.
func (b *blobStore) sealed() (map[int64]int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[int64]int64{}
	for id, f := range b.packs {
		if f == b.active || b.writers[id] > 0 {
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("stat pack %d: %w", id, err)
		}
		out[id] = fi.Size()
	}
	return out, nil
}

// retire unlinks pack id; its file stays open until no read is in flight.
func (b *blobStore) retire(id int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.packs[id]
	if f == nil || f == b.active {
		return nil
	}
	delete(b.packs, id)
	b.retired[id] = f
	if err := os.Remove(filepath.Join(b.dir, packName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pack %d: %w", id, err)
	}
	if b.readers == 0 {
		b.closeRetired()
	}
	return nil
}

// compact rewrites every sealed pack whose live bytes are below
// compactLiveRatio of its size and retires it. It returns how many packs it
// retired. It stops early, without harm, when ctx is cancelled.
func (s *Store) compact(ctx context.Context) (int, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	sizes, err := s.blobs.sealed()
	if err != nil {
		return 0, err
	}
	if len(sizes) == 0 {
		return 0, nil
	}
	live := map[int64]int64{}
	err = s.perPack(ctx, "SUM(size)", "SUM(head_len + text_len)", func(id, n int64) { live[id] += n })
	if err != nil {
		return 0, err
	}
	ids := make([]int64, 0, len(sizes))
	for id := range sizes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	retired := 0
	for _, id := range ids {
		if float64(live[id]) >= compactLiveRatio*float64(sizes[id]) {
			continue
		}
		if err := s.compactPack(ctx, id); err != nil {
			return retired, err
		}
		retired++
		s.log.Info("compacted pack", "pack", id, "size", sizes[id], "live", live[id])
	}
	return retired, nil
}

// packRecord is one record in a pack being compacted: a message's raw
// bytes or its texts.
type packRecord struct {
	msg   MessageID
	texts bool
	off   int64
	lens  [2]int64
	crcs  [2]uint32
}

// compactPack moves every record still in pack id to the active pack, then
// retires it.
func (s *Store) compactPack(ctx context.Context, id int64) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("compact pack %d: %w", id, err)
		}
		var batch []packRecord
		err := s.read(ctx, "pack records", func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT id, 0, pack_off, size, 0, body_crc, 0 FROM messages WHERE pack = ?
				UNION ALL SELECT id, 1, text_off, head_len, text_len, head_crc, text_crc FROM messages WHERE text_pack = ?
				ORDER BY 3`, id, id)
			if err != nil {
				return err
			}
			defer rows.Close()
			var n int64
			for n < compactBatchBytes && rows.Next() {
				var (
					r      packRecord
					c0, c1 int64
				)
				if err := rows.Scan(&r.msg, &r.texts, &r.off, &r.lens[0], &r.lens[1], &c0, &c1); err != nil {
					return err
				}
				r.crcs = [2]uint32{uint32(c0), uint32(c1)}
				batch = append(batch, r)
				n += r.lens[0] + r.lens[1]
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("compact pack %d: %w", id, err)
		}
		if len(batch) == 0 {
			return s.blobs.retire(id)
		}
		recs := make([]blobRec, len(batch))
		br := s.blobs.begin()
		for i, m := range batch {
			off := m.off
			for k := range 2 {
				part, err := br.read(id, off, m.lens[k], m.crcs[k], "record")
				if err != nil {
					br.end()
					return fmt.Errorf("compact pack %d: message %d: %w", id, m.msg, err)
				}
				// Copied: the reader's buffer is reused.
				recs[i][k] = slices.Clone(part)
				off += m.lens[k]
			}
		}
		br.end()
		err = s.writeRecords(ctx, "move records", recs, func(w *writeTx, locs []recordLoc) error {
			moveRaw, err := w.stmt(`UPDATE messages SET pack = ?, pack_off = ? WHERE id = ? AND pack = ? AND pack_off = ?`)
			if err != nil {
				return err
			}
			moveText, err := w.stmt(`UPDATE messages SET text_pack = ?, text_off = ? WHERE id = ? AND text_pack = ? AND text_off = ?`)
			if err != nil {
				return err
			}
			for i, m := range batch {
				st := moveRaw
				if m.texts {
					st = moveText
				}
				if _, err := st.ExecContext(w.ctx, locs[i].pack, locs[i].off, m.msg, id, m.off); err != nil {
					return fmt.Errorf("move message %d: %w", m.msg, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("compact pack %d: %w", id, err)
		}
	}
}
