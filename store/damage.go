package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// Damage is kept where it is. A message whose bytes or texts cannot be read
// (they fail their checksum, lie past the end of their pack, or their pack
// is gone) costs only that message: Bodies hands it to its caller as an
// error of its own and goes on with the others, SearchText skips it, Meta
// marks it Damaged, the indexer passes over it. Each such read is logged
// and counted (DamageStats). Corruption reported by the database itself
// (SQLITE_CORRUPT, SQLITE_NOTADB) cannot be contained that way: it is
// remembered and reported by Health until the process restarts, and the
// failing operation's error wraps ErrDatabaseCorrupt. A full disk (ENOSPC,
// EDQUOT, SQLITE_FULL) makes writes fail with an error wrapping
// ErrNoSpace; nothing half-written is committed.

var (
	// ErrDatabaseCorrupt is wrapped by the error of an operation that
	// failed because the database file is damaged (a malformed page).
	ErrDatabaseCorrupt = errors.New("store: database file is corrupt")
	// ErrNoSpace is wrapped by the error of a write that failed because
	// the file system of the data directory is full or over quota.
	ErrNoSpace = errors.New("store: no space left in the data directory")
)

// DamageStats counts the reads of stored data that failed their checks
// since Open.
type DamageStats struct {
	// Messages counts message bytes that could not be read (FETCH of a
	// body, parsing an unindexed message).
	Messages int64
	// Texts counts search-text records that could not be read and were
	// skipped by a search.
	Texts int64
}

// damage is a Store's record of what it found damaged.
type damage struct {
	messages, texts atomic.Int64

	mu sync.Mutex
	// dbErr is the first database corruption seen at run time; packs are
	// the problems found by the pack check at Open.
	dbErr error
	packs []PackProblem
}

// DamageStats returns the counts of damaged reads since Open.
func (s *Store) DamageStats() DamageStats {
	return DamageStats{Messages: s.damage.messages.Load(), Texts: s.damage.texts.Load()}
}

// noteDamagedMessage logs and counts a message whose bytes could not be
// read.
func (s *Store) noteDamagedMessage(op string, id MailboxID, uid UID, err error) {
	s.damage.messages.Add(1)
	s.log.Error("damaged message data skipped (run popbridge verify)", "op", op, "mailbox_id", int64(id), "uid", int64(uid), "err", err)
}

// noteDamagedText logs and counts a search text that could not be read.
func (s *Store) noteDamagedText(id MailboxID, uid UID, err error) {
	s.damage.texts.Add(1)
	s.log.Error("damaged search text skipped (run popbridge verify)", "mailbox_id", int64(id), "uid", int64(uid), "err", err)
}

// classify wraps err with ErrDatabaseCorrupt or ErrNoSpace when the
// database or the file system reported that condition, and remembers
// database corruption for Health.
func (s *Store) classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrDatabaseCorrupt), errors.Is(err, ErrNoSpace):
		return err
	case isDBCorrupt(err):
		s.damage.mu.Lock()
		first := s.damage.dbErr == nil
		if first {
			s.damage.dbErr = err
		}
		s.damage.mu.Unlock()
		if first {
			s.log.Error("the database reports corruption: stop popbridge and run popbridge verify", "err", err)
		}
		return fmt.Errorf("%w: %w", ErrDatabaseCorrupt, err)
	case isNoSpace(err):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// isNoSpace reports whether err is a full file system or an exceeded quota,
// from the operating system or from SQLite.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || isDBFull(err)
}

// isCorruptRead reports whether err is a read of stored data that failed
// its checks (as opposed to the store being closed, a context ending, …).
func isCorruptRead(err error) bool { return errors.Is(err, ErrCorrupt) }

// PackProblem is a pack file that the database refers to but that is
// missing or shorter than the records it should hold.
type PackProblem struct {
	Pack int64
	// Missing: the file does not exist. Otherwise Size is its length and
	// Want the end of the furthest record the database places in it.
	Missing    bool
	Size, Want int64
}

func (p PackProblem) String() string {
	if p.Missing {
		return fmt.Sprintf("pack %d (%s) is missing", p.Pack, packName(p.Pack))
	}
	return fmt.Sprintf("pack %d (%s) is truncated: %d bytes, records reach %d", p.Pack, packName(p.Pack), p.Size, p.Want)
}

// Health reports what the store knows to be damaged: database corruption
// seen since Open and the packs found missing or truncated at Open. It
// returns nil when it knows of none. Damage of single records (a checksum
// that fails) is counted in DamageStats, not reported here.
func (s *Store) Health() error {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	var errs []error
	if s.damage.dbErr != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrDatabaseCorrupt, s.damage.dbErr))
	}
	for _, p := range s.damage.packs {
		errs = append(errs, fmt.Errorf("%s: %w", p, ErrCorrupt))
	}
	return errors.Join(errs...)
}

// PackProblems returns the packs found missing or truncated at Open.
func (s *Store) PackProblems() []PackProblem {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	return append([]PackProblem(nil), s.damage.packs...)
}

// missingPackErr is the error of a read from a pack that does not exist.
func missingPackErr(id int64, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pack %d is missing: %w", id, ErrCorrupt)
	}
	return fmt.Errorf("open pack %d: %w", id, err)
}

// packUse is what the database says of one pack: the end of the furthest
// record it places there.
type packUse map[int64]int64

// packUsage reads, from the database, the end of the furthest record in
// each pack the messages refer to.
func (s *Store) packUsage(ctx context.Context) (packUse, error) {
	use := packUse{}
	err := s.perPack(ctx, "MAX(pack_off + size)", "MAX(text_off + head_len + text_len)", func(id, end int64) {
		use[id] = max(use[id], end)
	})
	return use, err
}

// perPack runs one aggregate over the message records of each pack (msg
// over the message bytes, text over the text records; both grouped by
// pack) and hands every (pack, value) row to fn.
func (s *Store) perPack(ctx context.Context, msg, text string, fn func(pack, v int64)) error {
	return s.read(ctx, "pack usage", func(tx *sql.Tx) error {
		for _, q := range []string{
			`SELECT pack, ` + msg + ` FROM messages WHERE pack IS NOT NULL GROUP BY pack`,
			`SELECT text_pack, ` + text + ` FROM messages WHERE text_pack IS NOT NULL GROUP BY text_pack`,
		} {
			rows, err := tx.QueryContext(ctx, q)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id, v int64
				if err := rows.Scan(&id, &v); err != nil {
					rows.Close()
					return err
				}
				fn(id, v)
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkPacks compares the pack files with what the database says of them.
// A pack the database refers to that is missing or shorter than its
// records is a PackProblem: logged loudly, kept for Health, and the Store
// still serves everything else (reads of the affected messages fail with
// ErrCorrupt, each for itself). Pack numbers are never reused: the next
// new pack is numbered above every pack on disk, every pack the database
// refers to and the highest number ever recorded (counter next_pack). At
// Open of a writable Store (atOpen), empty pack files nothing refers to
// (left by a restart on a full disk) are removed, except the newest, which
// becomes the active pack instead of a new one being created.
func (s *Store) checkPacks(ctx context.Context, atOpen bool) ([]PackProblem, error) {
	use, err := s.packUsage(ctx)
	if err != nil {
		return nil, err
	}
	var recorded int64
	err = s.read(ctx, "pack counter", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'next_pack'`).Scan(&recorded)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	b := s.blobs
	var problems []PackProblem
	for id, want := range use {
		fi, err := os.Stat(filepath.Join(b.dir, packName(id)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problems = append(problems, PackProblem{Pack: id, Missing: true, Want: want})
		case err != nil:
			return nil, fmt.Errorf("check pack %d: %w", id, err)
		case fi.Size() < want:
			problems = append(problems, PackProblem{Pack: id, Size: fi.Size(), Want: want})
		}
	}
	slices.SortFunc(problems, func(a, b PackProblem) int { return cmp.Compare(a.Pack, b.Pack) })

	b.mu.Lock()
	defer b.mu.Unlock()
	next := max(b.next, recorded)
	for id := range use {
		next = max(next, id+1)
	}
	b.persisted = max(b.persisted, recorded)
	if !b.readOnly && atOpen {
		var empty []int64
		for id, f := range b.packs {
			if _, used := use[id]; used {
				continue
			}
			if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
				empty = append(empty, id)
			}
		}
		slices.Sort(empty)
		for i, id := range empty {
			if i == len(empty)-1 && id+1 >= next && id >= recorded {
				// The newest pack is empty: append to it.
				b.active, b.activeID, b.end = b.packs[id], id, 0
				continue
			}
			b.packs[id].Close()
			delete(b.packs, id)
			if err := os.Remove(filepath.Join(b.dir, packName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove empty pack %d: %w", id, err)
			}
			s.log.Info("removed an empty pack", "pack", id)
		}
	}
	b.next = next
	return problems, nil
}

// recordNextPack makes sure the database knows that pack numbers below
// the highest of locs+1 are taken, so that none is reused even after the
// pack is deleted. It writes only when a write first lands in a new pack.
func (s *Store) recordNextPack(w *writeTx, locs []recordLoc) error {
	var top int64
	for _, l := range locs {
		top = max(top, l.pack+1)
	}
	b := s.blobs
	b.mu.Lock()
	known := b.persisted
	b.mu.Unlock()
	if top <= known {
		return nil
	}
	if _, err := w.ExecContext(w.ctx, `INSERT INTO counters (name, value) VALUES ('next_pack', ?)
		ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)`, top); err != nil {
		return fmt.Errorf("record pack number: %w", err)
	}
	// Only once committed: a transaction (or a grouped write's savepoint)
	// that rolls back takes the counter's update with it.
	w.afterCommit = append(w.afterCommit, func() {
		b.mu.Lock()
		b.persisted = max(b.persisted, top)
		b.mu.Unlock()
	})
	return nil
}

// notePackProblems runs checkPacks at Open and keeps and logs what it
// found.
func (s *Store) notePackProblems(ctx context.Context) error {
	problems, err := s.checkPacks(ctx, true)
	if errors.Is(err, ErrDatabaseCorrupt) {
		// Remembered for Health and logged by classify; the rest of
		// the store may still be served, and verify must be able to
		// open it to say what is wrong.
		return nil
	}
	if err != nil {
		return fmt.Errorf("check packs: %w", err)
	}
	for _, p := range problems {
		s.log.Error("damaged pack: the messages stored in it can't be read; the rest is served (run popbridge verify -repair)",
			"pack", p.Pack, "missing", p.Missing, "size", p.Size, "records_end", p.Want)
	}
	s.damage.mu.Lock()
	s.damage.packs = problems
	s.damage.mu.Unlock()
	return nil
}
