package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// openPacked opens a store in dir with opts, closed at cleanup.
func openPacked(tb testing.TB, dir string, opts Options) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// packMessage is a message of about size bytes whose body and subject
// carry tag, so a search can find it.
func packMessage(tag string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@example.org\r\nSubject: pack %s\r\nMessage-ID: <%s@example.org>\r\n\r\nmark-%s-end\r\n", tag, tag, tag)
	for b.Len() < size {
		b.WriteString("filler line of the message body, repeated to reach the size\r\n")
	}
	return []byte(b.String())
}

// packFiles returns the names of the pack files in dir.
func packFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, blobDirName))
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// appendN appends n messages to INBOX of a new user and returns the user,
// the mailbox and the raw message of each UID.
func appendN(tb testing.TB, s *Store, n, size int) (User, Mailbox, map[UID][]byte) {
	tb.Helper()
	u := mustUser(tb, s, "packs")
	mb := mustMailbox(tb, s, u.ID, Inbox)
	raws := map[UID][]byte{}
	for i := range n {
		raw := packMessage(fmt.Sprint(i), size)
		e, _, err := s.Append(context.Background(), u.ID, mb.ID, raw, nil, time.Time{})
		if err != nil {
			tb.Fatal(err)
		}
		raws[e.UID] = raw
	}
	return u, mb, raws
}

// expungeUIDs marks uids \Deleted and expunges them.
func expungeUIDs(tb testing.TB, s *Store, u UserID, mb MailboxID, uids []UID) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.UpdateFlags(ctx, u, mb, uids, FlagsAdd, []string{`\Deleted`}); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Expunge(ctx, u, mb, nil); err != nil {
		tb.Fatal(err)
	}
}

// checkBodies asserts that Body, Bodies and SearchText find exactly want.
func checkBodies(tb testing.TB, s *Store, u UserID, mb MailboxID, want map[UID][]byte) {
	tb.Helper()
	ctx := context.Background()
	var all []UID
	for uid, raw := range want {
		all = append(all, uid)
		got, err := s.Body(ctx, u, mb, uid)
		if err != nil {
			tb.Fatalf("Body(%d): %v", uid, err)
		}
		if !bytes.Equal(got, raw) {
			tb.Fatalf("Body(%d): %d bytes differ from the %d appended", uid, len(got), len(raw))
		}
	}
	slices.Sort(all)
	var seen []UID
	err := s.Bodies(ctx, u, mb, all, func(uid UID, raw []byte, _ error) error {
		seen = append(seen, uid)
		if !bytes.Equal(raw, want[uid]) {
			return fmt.Errorf("Bodies: uid %d differs", uid)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if !slices.Equal(seen, all) {
		tb.Fatalf("Bodies visited %v, want %v", seen, all)
	}
	for _, uid := range all {
		tag := strings.TrimPrefix(strings.SplitN(string(want[uid]), "\r\n", 3)[1], "Subject: pack ")
		got, err := s.SearchText(ctx, u, mb, TextQuery{Kind: TextBody, Needle: "MARK-" + tag + "-END"}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		if !slices.Equal(got, []UID{uid}) {
			tb.Fatalf("SearchText(mark-%s-end) = %v, want [%d]", tag, got, uid)
		}
	}
}

func TestPacksHoldBodiesOutsideTheDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openPacked(t, dir, Options{})
	u, mb, raws := appendN(t, s, 20, 3000)
	checkBodies(t, s, u.ID, mb.ID, raws)
	var dataRows, textRows int
	if err := s.rdb.QueryRow(`SELECT (SELECT count(*) FROM message_data), (SELECT count(*) FROM message_text)`).Scan(&dataRows, &textRows); err != nil {
		t.Fatal(err)
	}
	if dataRows != 0 || textRows != 0 {
		t.Errorf("legacy tables hold %d/%d rows, want none", dataRows, textRows)
	}
	if files := packFiles(t, dir); len(files) != 1 || files[0] != packName(1) {
		t.Errorf("pack files %v, want [%s]", files, packName(1))
	}
	// Reopened, every message reads back the same.
	s.Close()
	s = openPacked(t, dir, Options{})
	checkBodies(t, s, u.ID, mb.ID, raws)
}

func TestPackCorruptionIsReported(t *testing.T) {
	dir := t.TempDir()
	s := openPacked(t, dir, Options{})
	u, mb, raws := appendN(t, s, 3, 2000)
	var loc blobLoc
	var id MessageID
	if err := scanLoc(s.rdb.QueryRow(`SELECT m.id, `+locColumns("m.")+` FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id WHERE mm.uid = 2`), &loc, &id); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, blobDirName, packName(loc.pack))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if loc.textPack != loc.pack {
		t.Fatalf("an appended message's texts are in pack %d, its bytes in %d", loc.textPack, loc.pack)
	}
	data[loc.off+loc.size-5] ^= 0x20 // a byte of the message
	data[loc.textOff+3] ^= 1         // a byte of its header text (its body text is derived from the bytes)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openPacked(t, dir, Options{})
	ctx := context.Background()
	if _, err := s.Body(ctx, u.ID, mb.ID, 2); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "uid 2") {
		t.Errorf("Body of the damaged message: %v, want ErrCorrupt naming uid 2", err)
	}
	// Bodies hands the damaged message over as such and reads the others.
	var read, damaged []UID
	err = s.Bodies(ctx, u.ID, mb.ID, []UID{1, 2, 3}, func(uid UID, raw []byte, bad error) error {
		if bad != nil {
			if !errors.Is(bad, ErrCorrupt) || raw != nil {
				t.Errorf("uid %d: damaged %v with %d bytes, want ErrCorrupt and none", uid, bad, len(raw))
			}
			damaged = append(damaged, uid)
			return nil
		}
		if !bytes.Equal(raw, raws[uid]) {
			t.Errorf("Bodies: uid %d differs", uid)
		}
		read = append(read, uid)
		return nil
	})
	if err != nil || !slices.Equal(read, []UID{1, 3}) || !slices.Equal(damaged, []UID{2}) {
		t.Errorf("Bodies over the damaged message: read %v, damaged %v, err %v; want [1 3], [2], nil", read, damaged, err)
	}
	// SearchText skips the damaged text and answers from the others.
	hits, err := s.SearchText(ctx, u.ID, mb.ID, TextQuery{Kind: TextAll, Needle: "filler"}, nil)
	if err != nil || !slices.Equal(hits, []UID{1, 3}) {
		t.Errorf("SearchText over the damaged text: %v, %v; want [1 3]", hits, err)
	}
	if got := s.DamageStats(); got.Messages != 1 || got.Texts != 1 {
		t.Errorf("DamageStats = %+v, want 1 message and 1 text", got)
	}
	// The others are intact.
	for _, uid := range []UID{1, 3} {
		got, err := s.Body(ctx, u.ID, mb.ID, uid)
		if err != nil || !bytes.Equal(got, raws[uid]) {
			t.Errorf("Body(%d) beside the damage: %v", uid, err)
		}
	}
	// A pack cut short is reported the same way.
	if err := os.Truncate(path, loc.off+10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Body(ctx, u.ID, mb.ID, 3); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Body past the end of a truncated pack: %v, want ErrCorrupt", err)
	}
}

func TestCompactionReclaimsExpungedSpace(t *testing.T) {
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: 16 << 10}), Options{})
	u, mb, raws := appendN(t, s, 60, 3000)
	ctx := context.Background()
	before := packFiles(t, dir)
	if len(before) < 8 {
		t.Fatalf("%d packs, want several (packs of 16 KB)", len(before))
	}
	// Expunge four of every five.
	var gone []UID
	for uid := range raws {
		if uid%5 != 0 {
			gone = append(gone, uid)
		}
	}
	expungeUIDs(t, s, u.ID, mb.ID, gone)
	for _, uid := range gone {
		delete(raws, uid)
	}
	n, err := s.compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := packFiles(t, dir)
	if n == 0 || len(after) >= len(before) {
		t.Errorf("compaction retired %d packs: %d files before, %d after", n, len(before), len(after))
	}
	var onDisk int64
	for _, name := range after {
		fi, err := os.Stat(filepath.Join(dir, blobDirName, name))
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	var live int64
	if err := s.rdb.QueryRow(`SELECT SUM(size + head_len + text_len) FROM messages`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	// Every sealed pack is at least half live; the active one may hold
	// up to one pack of dead bytes.
	if limit := 2*live + 16<<10 + 4000; onDisk > limit {
		t.Errorf("%d bytes in packs for %d live bytes (limit %d)", onDisk, live, limit)
	}
	checkBodies(t, s, u.ID, mb.ID, raws)
	s.Close()
	s = openPacked(t, hooked(t, dir, testHooks{packMaxBytes: 16 << 10}), Options{})
	checkBodies(t, s, u.ID, mb.ID, raws)
}

func TestCompactionRunsInBackgroundAfterExpunge(t *testing.T) {
	runs := make(chan int, 16)
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: 8 << 10, onCompacted: func(n int, err error) {
		if err != nil {
			t.Errorf("background compaction: %v", err)
		}
		runs <- n
	}}), Options{})
	if n := <-runs; n != 0 { // the run at Open, on an empty store
		t.Fatalf("compaction at open retired %d packs", n)
	}
	u, mb, raws := appendN(t, s, 12, 3000)
	all := slices.Collect(func(yield func(UID) bool) {
		for uid := range raws {
			if !yield(uid) {
				return
			}
		}
	})
	expungeUIDs(t, s, u.ID, mb.ID, all)
	select {
	case n := <-runs:
		if n == 0 {
			t.Errorf("background compaction after expunging everything retired no pack")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no background compaction within 30 s of the expunge")
	}
	if files := packFiles(t, dir); len(files) != 1 {
		t.Errorf("pack files after expunging everything: %v, want only the active one", files)
	}
}

func TestReadsDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: 16 << 10}), Options{})
	u, mb, raws := appendN(t, s, 80, 2500)
	ctx := context.Background()
	keep := map[UID][]byte{}
	var gone []UID
	for uid, raw := range raws {
		if uid%4 == 0 {
			keep[uid] = raw
		} else {
			gone = append(gone, uid)
		}
	}
	kept := slices.Sorted(func(yield func(UID) bool) {
		for uid := range keep {
			if !yield(uid) {
				return
			}
		}
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.Bodies(ctx, u.ID, mb.ID, kept, func(uid UID, raw []byte, _ error) error {
					if !bytes.Equal(raw, keep[uid]) {
						return fmt.Errorf("uid %d read back differently during compaction", uid)
					}
					return nil
				})
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	expungeUIDs(t, s, u.ID, mb.ID, gone)
	n, err := s.compact(ctx)
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err != nil || n == 0 {
		t.Fatalf("compact: %d packs, %v", n, err)
	}
	checkBodies(t, s, u.ID, mb.ID, keep)
}

func TestLegacyBodiesMoveIntoPacks(t *testing.T) {
	dir := t.TempDir()
	s := openPacked(t, dir, Options{})
	u, mb, raws := appendN(t, s, 30, 2000)
	ctx := context.Background()
	// Turn the store into what an older program left: bytes and texts in
	// message_data and message_text, no packs.
	r := s.blobs.begin()
	rows, err := s.rdb.Query(`SELECT id, ` + locColumns("") + ` FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	type legacy struct {
		id              MessageID
		raw, head, text []byte
	}
	var old []legacy
	for rows.Next() {
		var l legacy
		var loc blobLoc
		if err := scanLoc(rows, &loc, &l.id); err != nil {
			t.Fatal(err)
		}
		b, err1 := r.body(loc)
		l.raw = slices.Clone(b)
		h, err2 := r.head(loc)
		l.head = slices.Clone(h)
		x, err3 := r.text(loc)
		l.text = slices.Clone(x)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		old = append(old, l)
	}
	rows.Close()
	r.end()
	for _, l := range old {
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO message_data (message_id, data) VALUES (?, ?)`, []any{l.id, l.raw}},
			{`INSERT INTO message_text (message_id, header_text, body_text) VALUES (?, ?, ?)`, []any{l.id, string(l.head), string(l.text)}},
			{`UPDATE messages SET pack = NULL, pack_off = 0, body_crc = 0, indexed = 1, text_pack = NULL, text_off = 0,
				head_len = 0, text_len = 0, head_crc = 0, text_crc = 0 WHERE id = ?`, []any{l.id}},
		} {
			if _, err := s.wdb.ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, blobDirName)); err != nil {
		t.Fatal(err)
	}
	s = openPacked(t, dir, Options{})
	var legacyRows, unpacked int
	if err := s.rdb.QueryRow(`SELECT (SELECT count(*) FROM message_data) + (SELECT count(*) FROM message_text), (SELECT count(*) FROM messages WHERE pack IS NULL)`).Scan(&legacyRows, &unpacked); err != nil {
		t.Fatal(err)
	}
	if legacyRows != 0 || unpacked != 0 {
		t.Errorf("after the move: %d legacy rows, %d messages without a pack", legacyRows, unpacked)
	}
	checkBodies(t, s, u.ID, mb.ID, raws)
}

// TestCompactionWaitsForWritesInFlight seals a mostly dead pack while a
// batch staged into it has not committed yet, compacts, and checks that the delivered message is intact once
// it commits, also after a reopen: a pack is never retired under a write
// whose rows are still to come.
func TestCompactionWaitsForWritesInFlight(t *testing.T) {
	const packMax = 16 << 10
	dir := t.TempDir()
	s := openPacked(t, hooked(t, dir, testHooks{packMaxBytes: packMax, noIndexer: true}), Options{})
	u, mb, raws := appendN(t, s, 3, 2000)
	ctx := context.Background()
	expungeUIDs(t, s, u.ID, mb.ID, slices.Sorted(maps.Keys(raws)))
	held := packFiles(t, dir)[len(packFiles(t, dir))-1]

	// A delivery big enough to fill the active pack, held between its
	// pack write and its transaction.
	big := packMessage("held", packMax)
	staged, err := s.Stage(ctx, []Delivery{{Account: "a", UIDL: "held", Digest: "d", User: "packs", Raw: big}})
	if err != nil {
		t.Fatal(err)
	}
	defer staged.Release()
	// The next write starts a new pack: the held one is sealed, and all
	// that its committed rows name is dead.
	mustAppend(t, s, u.ID, mb.ID, "next")
	if files := packFiles(t, dir); files[len(files)-1] == held {
		t.Fatalf("no new pack after filling %s: %v", held, files)
	}
	if _, err := s.compact(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(packFiles(t, dir), held) {
		t.Fatalf("%s was compacted away while a delivery into it was staged", held)
	}
	out, err := staged.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		got, err := s.Body(ctx, u.ID, mb.ID, out[0].UID)
		if err != nil || string(got) != string(big) {
			t.Fatalf("held delivery reads back %d bytes, %v", len(got), err)
		}
	}
	check()
	// Now it may be compacted (or not); either way the message survives.
	if _, err := s.compact(ctx); err != nil {
		t.Fatal(err)
	}
	check()
	s.Close()
	s = openPacked(t, hooked(t, dir, testHooks{packMaxBytes: packMax, noIndexer: true}), Options{})
	check()
}
