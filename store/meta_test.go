package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openDir(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestMetaLegacyRows stores messages, rewrites their metadata in the legacy
// JSON encoding, adds binary rows, and checks that Meta decodes both, cold
// and then from the cache.
func TestMetaLegacyRows(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	corpus := readCorpus(t)
	want := map[MessageID]parsedMessage{}
	legacy := map[MessageID]bool{}

	s := openDir(t, dir, Options{})
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	appendAll := func(s *Store, isLegacy bool) {
		for _, raw := range corpus {
			e, _, err := s.Append(ctx, u.ID, inbox.ID, raw, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			want[e.Message] = parseMessageUnsafe(normalizeCRLF(raw))
			legacy[e.Message] = isLegacy
		}
	}
	appendAll(s, true)
	if err := rewriteMetaJSON(ctx, s); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM messages WHERE substr(envelope, 1, 1) = '{' AND substr(structure, 1, 1) = '{'`).Scan(&n); err != nil || n != len(corpus) {
		t.Fatalf("%d legacy rows (%v), want %d", n, err, len(corpus))
	}
	s.Close()

	s = openDir(t, dir, Options{})
	defer s.Close()
	appendAll(s, false)
	s.Close()

	s = openDir(t, dir, Options{}) // empty cache
	defer s.Close()
	cold, err := s.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cold) != len(want) {
		t.Fatalf("Meta returned %d messages, want %d", len(cold), len(want))
	}
	for _, m := range cold {
		pm, ok := want[m.Message]
		if !ok {
			t.Fatalf("unexpected message %d", m.Message)
		}
		if m.Size != int64(len(pm.raw)) {
			t.Errorf("message %d: size %d, want %d", m.Message, m.Size, len(pm.raw))
		}
		if legacy[m.Message] {
			ge, _ := json.Marshal(m.Envelope)
			gs, _ := json.Marshal(m.Structure)
			we, _ := json.Marshal(pm.envelope)
			ws := legacyStructureJSON(t, pm.structure)
			if !bytes.Equal(ge, we) || !bytes.Equal(gs, ws) {
				t.Errorf("legacy message %d: %s %s, want %s %s", m.Message, ge, gs, we, ws)
			}
			continue
		}
		checkSameEnvelope(t, m.Envelope, pm.envelope)
		checkSamePart(t, m.Structure, pm.structure)
	}
	warm, err := s.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range warm {
		if warm[i].Envelope != cold[i].Envelope || warm[i].Structure != cold[i].Structure || !warm[i].InternalDate.Equal(cold[i].InternalDate) {
			t.Errorf("uid %d: second Meta did not return the cached metadata", warm[i].UID)
		}
	}
	if _, _, hits, _ := s.metaCache.stats(); hits < int64(len(warm)) {
		t.Errorf("%d cache hits, want at least %d", hits, len(warm))
	}
}

// TestMetaCacheLifecycle follows the cache through delivery, copies,
// expunges and a restart.
func TestMetaCacheLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir, Options{})
	defer s.Close()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	archive := mustMailbox(t, s, u.ID, "Archive")
	var ents []Entry
	for i := range 3 {
		ents = append(ents, mustAppend(t, s, u.ID, inbox.ID, strconv.Itoa(i)))
	}
	if n, _, _, _ := s.metaCache.stats(); n != 3 {
		t.Fatalf("%d cached after 3 appends, want 3 (warmed at delivery)", n)
	}
	m1, err := s.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil || len(m1) != 3 {
		t.Fatalf("Meta = %d, %v", len(m1), err)
	}
	if _, _, hits, misses := s.metaCache.stats(); hits != 3 || misses != 0 {
		t.Errorf("hits %d misses %d after delivery-warmed Meta, want 3/0", hits, misses)
	}
	for i, m := range m1 {
		if m.Envelope.Subject != "test "+strconv.Itoa(i) || m.Envelope.MessageID != strconv.Itoa(i)+"@example.org" {
			t.Errorf("uid %d: envelope %+v", m.UID, m.Envelope)
		}
	}
	// A copy shares the message, hence the cached metadata.
	if _, err := s.Copy(ctx, u.ID, inbox.ID, []UID{ents[0].UID}, archive.ID); err != nil {
		t.Fatal(err)
	}
	ma, err := s.Meta(ctx, u.ID, archive.ID, nil)
	if err != nil || len(ma) != 1 || ma[0].Envelope != m1[0].Envelope || ma[0].Structure != m1[0].Structure {
		t.Fatalf("copied message metadata not shared: %v, %v", ma, err)
	}
	// Expunging one of two entries keeps the message and its cache entry;
	// expunging the last one drops both.
	expunge := func(mb MailboxID, uid UID) {
		t.Helper()
		if _, err := s.UpdateFlags(ctx, u.ID, mb, []UID{uid}, FlagsAdd, []string{FlagDeleted}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Expunge(ctx, u.ID, mb, nil); err != nil || len(got) != 1 {
			t.Fatalf("Expunge = %v, %v", got, err)
		}
	}
	expunge(inbox.ID, ents[0].UID)
	if n, _, _, _ := s.metaCache.stats(); n != 3 {
		t.Errorf("%d cached after expunging a copied message from one mailbox, want 3", n)
	}
	expunge(archive.ID, ma[0].UID)
	if n, _, _, _ := s.metaCache.stats(); n != 2 {
		t.Errorf("%d cached after the message was deleted, want 2", n)
	}
	m2, err := s.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil || len(m2) != 2 || m2[0].Envelope != m1[1].Envelope {
		t.Fatalf("Meta after expunge = %v, %v", m2, err)
	}

	// A fresh store decodes the same values from disk.
	s.Close()
	s2 := openDir(t, dir, Options{})
	defer s2.Close()
	m3, err := s2.Meta(ctx, u.ID, inbox.ID, nil)
	if err != nil || len(m3) != 2 {
		t.Fatalf("Meta after reopen = %v, %v", m3, err)
	}
	for i := range m3 {
		if m3[i].Envelope == m2[i].Envelope {
			t.Fatal("a new store shares the old store's cache")
		}
		checkSameEnvelope(t, m3[i].Envelope, m2[i].Envelope)
		checkSamePart(t, m3[i].Structure, m2[i].Structure)
		if !m3[i].InternalDate.Equal(m2[i].InternalDate) || m3[i].InternalDate.Location().String() != m2[i].InternalDate.Location().String() || m3[i].Size != m2[i].Size {
			t.Errorf("uid %d: date/size %v %d after reopen, %v %d before", m3[i].UID, m3[i].InternalDate, m3[i].Size, m2[i].InternalDate, m2[i].Size)
		}
	}
	if _, _, hits, misses := s2.metaCache.stats(); hits != 0 || misses != 2 {
		t.Errorf("fresh store: hits %d misses %d, want 0/2", hits, misses)
	}
}

func TestMetaCacheBounds(t *testing.T) {
	info := func(cost int64) *messageInfo { return &messageInfo{cost: cost} }
	has := func(c *metaCache, ids ...MessageID) []bool {
		infos := make([]*messageInfo, len(ids))
		c.lookup(ids, infos)
		out := make([]bool, len(ids))
		for i := range infos {
			out[i] = infos[i] != nil
		}
		return out
	}
	tests := []struct {
		name  string
		run   func(c *metaCache)
		check func(c *metaCache) error
		max   int
		bytes int64
	}{
		{"entry bound evicts oldest unreferenced", func(c *metaCache) {
			for id := MessageID(1); id <= 5; id++ {
				c.add([]MessageID{id}, []*messageInfo{info(10)})
			}
		}, func(c *metaCache) error {
			if got := fmt.Sprint(has(c, 1, 2, 3, 4, 5)); got != "[false false true true true]" {
				return fmt.Errorf("cached %s", got)
			}
			return nil
		}, 3, 1 << 20},
		{"referenced entries get a second chance", func(c *metaCache) {
			c.add([]MessageID{1, 2, 3}, []*messageInfo{info(10), info(10), info(10)})
			has(c, 1)
			c.add([]MessageID{4}, []*messageInfo{info(10)})
		}, func(c *metaCache) error {
			if got := fmt.Sprint(has(c, 1, 2, 3, 4)); got != "[true false true true]" {
				return fmt.Errorf("cached %s", got)
			}
			return nil
		}, 3, 1 << 20},
		{"byte bound", func(c *metaCache) {
			c.add([]MessageID{1, 2, 3}, []*messageInfo{info(40), info(40), info(40)})
			c.add([]MessageID{4}, []*messageInfo{info(200)}) // larger than the cache
		}, func(c *metaCache) error {
			n, b, _, _ := c.stats()
			if n != 2 || b != 80 || fmt.Sprint(has(c, 2, 3, 4)) != "[true true false]" {
				return fmt.Errorf("%d entries, %d bytes, cached %v", n, b, has(c, 1, 2, 3, 4))
			}
			return nil
		}, 100, 100},
		{"remove frees and slots are reused", func(c *metaCache) {
			c.add([]MessageID{1, 2}, []*messageInfo{info(10), info(10)})
			c.remove([]MessageID{1, 7})
			c.add([]MessageID{3, 2}, []*messageInfo{info(10), info(99)}) // 2 already cached: kept
		}, func(c *metaCache) error {
			n, b, _, _ := c.stats()
			if n != 2 || b != 20 || len(c.slots) != 2 || fmt.Sprint(has(c, 1, 2, 3)) != "[false true true]" {
				return fmt.Errorf("%d entries, %d bytes, %d slots, cached %v", n, b, len(c.slots), has(c, 1, 2, 3))
			}
			return nil
		}, 10, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newMetaCache(tt.max, tt.bytes)
			tt.run(c)
			if err := tt.check(c); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("disabled", func(t *testing.T) {
		for _, c := range []*metaCache{newMetaCache(0, 10), newMetaCache(10, -1)} {
			if c != nil {
				t.Fatal("cache not disabled")
			}
			c.add([]MessageID{1}, []*messageInfo{info(1)})
			c.remove([]MessageID{1})
			if has(c, 1)[0] {
				t.Error("disabled cache found an entry")
			}
		}
	})
}

// TestMetaBatches checks Meta on UID sets of every shape (contiguous,
// dense, sparse, large and sparse, with absent UIDs) without a cache, on
// enough messages that rows are decoded by parallel workers.
func TestMetaBatches(t *testing.T) {
	ctx := context.Background()
	s := openDir(t, t.TempDir(), Options{MetaCacheEntries: -1})
	defer s.Close()
	usr := mustUser(t, s, "bench")
	const n = 800
	ds := make([]Delivery, n)
	want := map[UID]parsedMessage{}
	for i := range ds {
		ds[i] = Delivery{Account: "a", UIDL: strconv.Itoa(i), Digest: "d", User: "bench", Raw: messageMultipart(i)}
	}
	got, err := s.Deliver(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		want[d.UID] = parseMessageUnsafe(normalizeCRLF(ds[i].Raw))
	}
	u, mb := usr.ID, got[0].Mailbox
	every := func(step int, extra ...UID) []UID {
		var out []UID
		for uid := UID(1); uid <= n; uid += UID(step) {
			out = append(out, uid)
		}
		return append(out, extra...)
	}
	tests := []struct {
		name string
		uids []UID
		want int
	}{
		{"all", nil, n},
		{"contiguous", every(1)[100:356], 256},
		{"dense", every(2), n / 2},
		{"sparse", every(7, 0, n+5), (n + 6) / 7},
		{"large with gaps", slices.DeleteFunc(every(1), func(u UID) bool { return u%10 == 0 }), n - n/10},
		{"reversed with duplicates", []UID{700, 3, 3, 450, 1}, 4},
		{"absent only", []UID{0, n + 1, n + 100}, 0},
		{"empty", []UID{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := s.Meta(ctx, u, mb, tt.uids)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != tt.want {
				t.Fatalf("%d messages, want %d", len(ms), tt.want)
			}
			for i, m := range ms {
				if i > 0 && ms[i-1].UID >= m.UID {
					t.Fatalf("UIDs not ascending: %d then %d", ms[i-1].UID, m.UID)
				}
				pm, ok := want[m.UID]
				if !ok {
					t.Fatalf("unexpected UID %d", m.UID)
				}
				checkSameEnvelope(t, m.Envelope, pm.envelope)
				checkSamePart(t, m.Structure, pm.structure)
			}
		})
	}
}

// TestMetaCacheConcurrent reads through a tiny cache while messages are
// appended, copied and expunged; run with -race.
func TestMetaCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openDir(t, t.TempDir(), Options{MetaCacheEntries: 16})
	defer s.Close()
	u := mustUser(t, s, "alice")
	inbox := mustMailbox(t, s, u.ID, Inbox)
	trash := mustMailbox(t, s, u.ID, "Trash")
	for i := range 40 {
		mustAppend(t, s, u.ID, inbox.ID, "seed"+strconv.Itoa(i))
	}
	var (
		wg   sync.WaitGroup
		done = make(chan struct{})
		errs = make(chan error, 8)
	)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mbs := []MailboxID{inbox.ID, trash.ID}
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				ms, err := s.Meta(ctx, u.ID, mbs[(i+r)%2], nil)
				if err != nil {
					errs <- err
					return
				}
				for _, m := range ms {
					tag := strings.TrimPrefix(m.Envelope.Subject, "test ")
					if m.Envelope.MessageID != tag+"@example.org" || m.Structure.Type != "text" || m.Size == 0 {
						errs <- fmt.Errorf("uid %d: inconsistent metadata %+v", m.UID, m.Envelope)
						return
					}
				}
			}
		}()
	}
	for i := range 12 {
		e := mustAppend(t, s, u.ID, inbox.ID, "new"+strconv.Itoa(i))
		if _, err := s.Copy(ctx, u.ID, inbox.ID, []UID{e.UID}, trash.ID); err != nil {
			t.Error(err)
			break
		}
		if _, err := s.UpdateFlags(ctx, u.ID, inbox.ID, []UID{e.UID - 5}, FlagsAdd, []string{FlagDeleted}); err != nil {
			t.Error(err)
			break
		}
		if _, err := s.Expunge(ctx, u.ID, inbox.ID, nil); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, _, _, _ := s.metaCache.stats(); n > 16 {
		t.Errorf("cache holds %d entries, bound 16", n)
	}
}
