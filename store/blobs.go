package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Message bytes and their decoded search text live in append-only pack
// files, dir/blobs/pack-NNNNNNNN, not in SQLite. SQLite in WAL mode writes
// every byte twice (once to the WAL, once more at checkpoint) and checksums
// it on the way; a pack is written once, sequentially, and a whole group
// commit costs one fdatasync. Each message has two records: its raw bytes
// (written at delivery) and its texts, the decoded header text followed by
// the decoded body text (written when it is indexed, see index.go). The
// messages row names each record's pack and offset, its lengths and a
// CRC-32C of each part, checked on every read.
//
// Durability: a record is written and the pack fdatasync'd before the
// transaction that refers to it begins, so a committed row never points at
// bytes that are not on disk. A new pack file is created, and the blobs
// directory fsync'd, before anything is written to it. A crash between the
// pack write and the commit leaves unreferenced bytes in the pack: dead
// space, like the records of deleted messages, which compaction reclaims.
//
// Compaction rewrites the live records of a sealed pack (not the one being
// appended to) whose live bytes are less than half its size into the
// active pack, moves the rows in a transaction, and then unlinks the old
// pack. Readers never see a pack disappear under them: every read of pack
// bytes happens between blobStore.begin and end, begun before the read
// transaction, and a retired pack's file stays open (unlinked) until no
// read is in flight, so a read whose snapshot still names the old location
// reads the old file.

const (
	// blobDirName is the directory of the pack files inside the data
	// directory.
	blobDirName = "blobs"
	// packPrefix begins every pack file's name; the rest is its number.
	packPrefix = "pack-"
	// defaultPackMaxBytes is the size at which the active pack is sealed
	// and a new one started (a group commit is never split, so a pack may
	// end up one batch larger).
	defaultPackMaxBytes = 64 << 20
	// compactLiveRatio: a sealed pack whose live bytes are below this
	// fraction of its size is compacted.
	compactLiveRatio = 0.5
)

// crcTable is CRC-32C (Castagnoli), hardware-accelerated on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by the error of a read whose bytes fail their
// checksum, lie outside their pack file, sit in a pack that is missing, or
// can't be read from the disk (EIO).
var ErrCorrupt = errors.New("store: stored message data is corrupt")

// blobLoc is where a message's records live: its raw bytes, and (once
// indexed) its texts.
type blobLoc struct {
	pack, off, size int64
	bodyCRC         uint32
	// indexed is set once the message's metadata and texts are stored;
	// the text fields are meaningful only then.
	indexed          bool
	textPack         int64
	textOff          int64
	headLen, textLen int64
	headCRC, textCRC uint32
	// rawHeadLen is the length of the message's header at the start of
	// its bytes (HeaderLen) and rawHeadCRC its CRC-32C, when rawHead is
	// set (not for messages stored before they were recorded, migration
	// 0007).
	rawHead    bool
	rawHeadLen int64
	rawHeadCRC uint32
	// textDerived: the body text is not stored (textLen is 0) but
	// derived from the message's bytes from textFrom on (textform.go).
	textDerived bool
	textFrom    int64
}

// blobRec is one record to append: up to two parts, written back to back.
type blobRec [2][]byte

// recordLoc is where put wrote a record, with the CRC of each part, the
// length of its first part, and the CRC of the whole record.
type recordLoc struct {
	pack, off int64
	crc       [2]uint32
	len0      int64
	sum       uint32
}

// rawRecord is the record of a message's bytes, in two parts written back
// to back: its header (HeaderLen) and the rest. Its locations's sum is
// the messages row's body_crc, len0 and crc[0] its raw_head_len and
// raw_head_crc.
func rawRecord(raw []byte) blobRec {
	hl := HeaderLen(raw)
	return blobRec{raw[:hl], raw[hl:]}
}

// textRecord is the record of a parsed message's texts. They are viewed in
// place (no copy): writes only read them.
func textRecord(pm *parsedMessage) blobRec {
	return blobRec{stringBytes(pm.headerText), stringBytes(pm.storedBodyText())}
}

// stringBytes returns the bytes of s without copying; they must not be
// modified.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// blobStore is the set of pack files of one Store.
type blobStore struct {
	dir      string
	readOnly bool
	log      *slog.Logger
	// maxBytes is the size at which the active pack is sealed.
	maxBytes int64

	mu sync.Mutex
	// packs are the open pack files by number.
	packs map[int64]*os.File
	// retired are compacted packs, unlinked but still open until no read
	// is in flight (readers == 0).
	retired map[int64]*os.File
	readers int
	// writers counts, per pack, the puts whose records may not be
	// committed yet (put until its caller's done). A sealed pack is only
	// compacted once it has none: no writer can start on a sealed pack,
	// so from then on every row that will ever name it is committed.
	writers map[int64]int
	// active is the pack appended to (nil until the first write); end is
	// where the next record goes; next is the number of the next new pack.
	active   *os.File
	activeID int64
	end      int64
	next     int64
	// persisted is the counter next_pack as this Store last read or
	// wrote it: pack numbers below it are recorded as taken.
	persisted int64
	// syncs shares the fdatasync of a pack between concurrent puts
	// (packSync), by pack number; only the newest packs have one.
	syncs map[int64]*packSync
}

// packSync shares fdatasync calls on one pack between concurrent puts: a
// put whose bytes are written needs a sync that starts after that, so
// every put that finishes writing while a sync runs is covered by the one
// next sync, made once for all of them. A failed sync fails every put it
// was to cover (a later sync's success proves nothing about pages whose
// write-back failed).
type packSync struct {
	mu       sync.Mutex
	cond     sync.Cond
	running  bool
	started  uint64 // syncs started
	finished uint64 // syncs finished (the last to have started, when none runs)
	failed   map[uint64]error
	waiting  int // callers waiting for a sync another one runs
}

// sync returns once a call of do (fdatasync of the pack) that started
// after this call has succeeded, or with its error.
func (ps *packSync) sync(do func() error) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cond.L == nil {
		ps.cond.L = &ps.mu
	}
	target := ps.started + 1
	for ps.finished < target {
		if ps.running {
			ps.waiting++
			ps.cond.Wait()
			ps.waiting--
			continue
		}
		ps.running = true
		ps.started++
		n := ps.started
		ps.mu.Unlock()
		err := do()
		ps.mu.Lock()
		ps.running, ps.finished = false, n
		if err != nil {
			if ps.failed == nil {
				ps.failed = map[uint64]error{}
			}
			ps.failed[n] = err
		}
		ps.cond.Broadcast()
	}
	return ps.failed[target]
}

// packSyncFor returns pack id's packSync, forgetting those of packs more
// than one before it (a put still finishing on one of those gets a fresh
// packSync: correct, only not shared).
func (b *blobStore) packSyncFor(id int64) *packSync {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ps := b.syncs[id]; ps != nil {
		return ps
	}
	if b.syncs == nil {
		b.syncs = map[int64]*packSync{}
	}
	for old := range b.syncs {
		if old < id-1 {
			delete(b.syncs, old)
		}
	}
	ps := &packSync{}
	b.syncs[id] = ps
	return ps
}

// openBlobs opens dir/blobs (creating it unless readOnly) and every pack in
// it.
func openBlobs(dir string, readOnly bool, maxBytes int64, log *slog.Logger) (*blobStore, error) {
	if maxBytes <= 0 {
		maxBytes = defaultPackMaxBytes
	}
	b := &blobStore{
		dir:      filepath.Join(dir, blobDirName),
		readOnly: readOnly,
		log:      log,
		maxBytes: maxBytes,
		packs:    map[int64]*os.File{},
		retired:  map[int64]*os.File{},
		writers:  map[int64]int{},
		next:     1,
	}
	if readOnly {
		// Packs are opened when first read: another process may add
		// and retire them while this Store is open.
		return b, nil
	}
	if err := os.Mkdir(b.dir, 0o700); err == nil {
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("create %s: %w", b.dir, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create pack directory: %w", err)
	}
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("list pack directory: %w", err)
	}
	for _, e := range ents {
		id, ok := packID(e.Name())
		if !ok {
			continue
		}
		f, err := os.OpenFile(filepath.Join(b.dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("open pack: %w", err)
		}
		b.packs[id] = f
		b.next = max(b.next, id+1)
	}
	return b, nil
}

// packID parses a pack file name.
func packID(name string) (int64, bool) {
	num, ok := strings.CutPrefix(name, packPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(num, 10, 64)
	return id, err == nil && id > 0
}

func packName(id int64) string { return fmt.Sprintf("%s%08d", packPrefix, id) }

// close closes every pack file.
func (b *blobStore) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	for _, m := range []map[int64]*os.File{b.packs, b.retired} {
		for id, f := range m {
			err = errors.Join(err, f.Close())
			delete(m, id)
		}
	}
	b.active = nil
	return err
}

// put appends recs to the active pack and makes them durable (fdatasync)
// before returning their locations. Concurrent puts write disjoint ranges
// and share their syncs (packSync). The caller (writeRecords) must call done once the
// transaction that refers to the records has committed or failed (until
// then the pack is not compacted); on error put has called it.
func (b *blobStore) put(recs []blobRec) (locs []recordLoc, done func(), err error) {
	if b.readOnly {
		return nil, nil, ErrReadOnly
	}
	locs = make([]recordLoc, len(recs))
	var total int64
	for i, r := range recs {
		for k, part := range r {
			locs[i].crc[k] = crc32.Checksum(part, crcTable)
			total += int64(len(part))
		}
		locs[i].len0 = int64(len(r[0]))
		locs[i].sum = crc32.Update(locs[i].crc[0], crcTable, r[1])
	}
	f, id, off, err := b.reserve(total)
	if err != nil {
		return nil, nil, err
	}
	done = func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.writers[id]--; b.writers[id] == 0 {
			delete(b.writers, id)
		}
	}
	pos := off
	for i, r := range recs {
		locs[i].pack, locs[i].off = id, pos
		for _, part := range r {
			if len(part) == 0 {
				continue
			}
			if _, err := f.WriteAt(part, pos); err != nil {
				b.unreserve(f, off, total)
				done()
				return nil, nil, fmt.Errorf("write pack %d: %w", id, err)
			}
			pos += int64(len(part))
		}
	}
	if err := b.packSyncFor(id).sync(func() error { return fdatasync(f) }); err != nil {
		b.unreserve(f, off, total)
		done()
		return nil, nil, fmt.Errorf("sync pack %d: %w", id, err)
	}
	return locs, done, nil
}

// writeRecords stores recs and the rows that name them: it writes and
// syncs the records (put), runs fn in one write transaction with their
// locations (commitRecords), and then lets compaction see the pack again.
// Every write of message bytes goes through put and commitRecords, so no
// caller can commit rows naming bytes that are not durable; Stage splits
// the two steps and keeps the pack from compaction until its Commit or
// Release.
func (s *Store) writeRecords(ctx context.Context, op string, recs []blobRec, fn func(w *writeTx, locs []recordLoc) error) error {
	locs, done, err := s.blobs.put(recs)
	if err != nil {
		return fmt.Errorf("%s: %w", op, s.classify(err))
	}
	defer done()
	return s.commitRecords(ctx, op, locs, fn)
}

// commitRecords runs fn in one write transaction with the locations of
// records put has made durable, recording the packs they use.
func (s *Store) commitRecords(ctx context.Context, op string, locs []recordLoc, fn func(w *writeTx, locs []recordLoc) error) error {
	return s.submit(ctx, op, len(locs), func(w *writeTx) error {
		if err := s.recordNextPack(w, locs); err != nil {
			return err
		}
		return fn(w, locs)
	})
}

// unreserve gives back the space of a put that failed (a full disk),
// when no later put reserved space after it: the pack is cut back to
// where it was, so a failed write leaves no garbage behind.
func (b *blobStore) unreserve(f *os.File, off, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active != f || b.end != off+n {
		return
	}
	if err := f.Truncate(off); err != nil {
		b.log.Warn("cut back a pack after a failed write", "pack", b.activeID, "err", err)
		return
	}
	b.end = off
}

// reserve returns the active pack (starting a new one when there is none
// or it is full) and the offset at which n bytes may be written.
func (b *blobStore) reserve(n int64) (*os.File, int64, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active == nil || b.end >= b.maxBytes {
		if err := b.startPack(); err != nil {
			return nil, 0, 0, err
		}
	}
	off := b.end
	b.end += n
	b.writers[b.activeID]++
	return b.active, b.activeID, off, nil
}

// startPack creates the next pack file and makes it the active one. Its
// directory entry is durable before anything refers to it. Called with mu
// held.
func (b *blobStore) startPack() error {
	id := b.next
	path := filepath.Join(b.dir, packName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create pack: %w", err)
	}
	if err := syncDir(b.dir); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create pack %d: %w", id, err)
	}
	b.next = id + 1
	b.packs[id] = f
	b.active, b.activeID, b.end = f, id, 0
	return nil
}

// syncDir fsyncs a directory, making its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// compactBatchBytes bounds the bytes one compaction step moves (one pack
// write and one transaction).
const compactBatchBytes = 8 << 20

// locColumns returns the messages columns scanLoc reads, in its order,
// each qualified with prefix ("" or "m.").
func locColumns(prefix string) string {
	cols := []string{"pack", "pack_off", "size", "body_crc", "indexed", "text_pack", "text_off", "head_len", "text_len", "head_crc", "text_crc", "text_from", "raw_head_len", "raw_head_crc"}
	for i, c := range cols {
		cols[i] = prefix + c
	}
	return strings.Join(cols, ", ")
}

// scanLoc scans the leading columns into keys (pointers: the message's
// id, its UID…) and then locColumns into l.
func scanLoc(rows interface{ Scan(...any) error }, l *blobLoc, keys ...any) error {
	var (
		bc, hc, tc           int64
		textPack, textFrom   sql.NullInt64
		rawHeadLen, rawHeadC sql.NullInt64
	)
	if err := rows.Scan(append(keys, &l.pack, &l.off, &l.size, &bc, &l.indexed, &textPack, &l.textOff, &l.headLen, &l.textLen, &hc, &tc, &textFrom, &rawHeadLen, &rawHeadC)...); err != nil {
		return err
	}
	l.rawHead = rawHeadLen.Valid && rawHeadC.Valid
	l.rawHeadLen, l.rawHeadCRC = rawHeadLen.Int64, uint32(rawHeadC.Int64)
	l.bodyCRC, l.headCRC, l.textCRC = uint32(bc), uint32(hc), uint32(tc)
	l.textPack = textPack.Int64
	l.textDerived, l.textFrom = textFrom.Valid, textFrom.Int64
	return nil
}
