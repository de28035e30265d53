package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Shared benchmark fixtures are built once per process and removed by
// TestMain.
var (
	fixtureMu   sync.Mutex
	fixtureDirs = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range fixtureDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// fixtureDir returns the fixture directory recorded under key, or makes
// and records a new, empty one (fresh). Must be called with fixtureMu held.
func fixtureDir(b *testing.B, key string) (dir string, fresh bool) {
	b.Helper()
	if d, ok := fixtureDirs[key]; ok {
		return d, false
	}
	d, err := os.MkdirTemp("", "storebench")
	if err != nil {
		b.Fatal(err)
	}
	fixtureDirs[key] = d
	return d, true
}

// fixture returns a store directory holding one user "bench" whose INBOX
// has n messages made by mk, building it on first use.
func fixture(b *testing.B, n int, mk func(i int) []byte) string {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	dir, fresh := fixtureDir(b, fmt.Sprint(n))
	if !fresh {
		return dir
	}
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.EnsureUser(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	for i := 0; i < n; i += batch {
		var ds []Delivery
		for j := i; j < min(n, i+batch); j++ {
			ds = append(ds, Delivery{Account: "bench", UIDL: strconv.Itoa(j), Digest: "d", User: "bench", Raw: mk(j)})
		}
		if _, err := s.Deliver(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// message8K is a plain message of about 8 KB.
func message8K(i int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "From: Sender %d <sender%d@example.org>\r\nTo: alice@example.net\r\nSubject: benchmark message %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <%d@bench.example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, i, i, i)
	for sb.Len() < 8<<10 {
		sb.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	return []byte(sb.String())
}

// messageMultipart is a 2-part message of about 2 KB.
func messageMultipart(i int) []byte {
	return fmt.Appendf(nil, "From: Sender <s%d@example.org>\r\nTo: a@example.net, b@example.net\r\nCc: c@example.net\r\n"+
		"Subject: =?utf-8?q?multipart_n=C2=B0%d?=\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <%d@bench>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\nContent-Type: text/plain\r\n\r\n%s\r\n"+
		"--bb\r\nContent-Type: application/octet-stream; name=x.bin\r\nContent-Disposition: attachment; filename=x.bin\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--bb--\r\n", i, i, i, strings.Repeat("text ", 150), strings.Repeat("QUJD", 150))
}

func openFixture(b *testing.B, dir string) (*Store, User, Mailbox) {
	b.Helper()
	return openFixtureOpts(b, dir, Options{})
}

func openFixtureOpts(b *testing.B, dir string, opts Options) (*Store, User, Mailbox) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	u, err := s.UserByName(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	mb, err := s.MailboxByName(ctx, u.ID, Inbox)
	if err != nil {
		b.Fatal(err)
	}
	return s, u, mb
}

// BenchmarkDeliver measures durable (synchronous=FULL) delivery of 8 KB
// messages, one per transaction and 32 per transaction.
func BenchmarkDeliver(b *testing.B) {
	for _, per := range []int{1, 32} {
		b.Run(fmt.Sprintf("per_tx=%d", per), func(b *testing.B) {
			s := mustOpen(b)
			mustUser(b, s, "bench")
			ctx := context.Background()
			raws := make([][]byte, per)
			for i := range raws {
				raws[i] = message8K(i)
			}
			n := 0
			b.SetBytes(int64(per * len(raws[0])))
			b.ResetTimer()
			for b.Loop() {
				ds := make([]Delivery, per)
				for i := range ds {
					n++
					ds[i] = Delivery{Account: "a", UIDL: strconv.Itoa(n), Digest: "d", User: "bench", Raw: raws[i]}
				}
				if _, err := s.Deliver(ctx, ds); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkMeta10k measures ENVELOPE+BODYSTRUCTURE+FLAGS of 10,000 messages
// (FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)):
//
//   - cold: the metadata cache is emptied before every call (every message
//     is read and decoded, and the cache filled);
//   - warm: every message's metadata is cached;
//   - nocache: the cache is disabled;
//   - json-cold: like cold, on rows in the legacy JSON encoding;
//   - batch256-warm: the way imapfront's FETCH calls it, 256 UIDs per call.
func BenchmarkMeta10k(b *testing.B) {
	const n = 10000
	run := func(b *testing.B, dir string, opts Options, cold bool, batch int) {
		s, u, mb := openFixtureOpts(b, dir, opts)
		ctx := context.Background()
		var all []UID
		if batch > 0 {
			snap, err := s.Snapshot(ctx, u.ID, mb.ID)
			if err != nil {
				b.Fatal(err)
			}
			all = uids(snap.Entries)
		}
		if _, err := s.Meta(ctx, u.ID, mb.ID, nil); err != nil { // warm up
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if cold {
				s.metaCache = newMetaCache(DefaultMetaCacheEntries, DefaultMetaCacheBytes)
			}
			got := 0
			if batch == 0 {
				m, err := s.Meta(ctx, u.ID, mb.ID, nil)
				if err != nil {
					b.Fatal(err)
				}
				got = len(m)
			}
			for start := 0; batch > 0 && start < len(all); start += batch {
				m, err := s.Meta(ctx, u.ID, mb.ID, all[start:min(len(all), start+batch)])
				if err != nil {
					b.Fatal(err)
				}
				got += len(m)
			}
			if got != n {
				b.Fatalf("Meta returned %d messages, want %d", got, n)
			}
		}
		// CPU time (all threads, GC included) is steadier than wall time
		// on a shared machine.
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
		if !cold && opts.MetaCacheEntries >= 0 {
			entries, bytes, _, _ := s.metaCache.stats()
			b.ReportMetric(float64(bytes)/float64(max(entries, 1)), "cache-B/msg")
		}
	}
	dir := fixture(b, n, messageMultipart)
	b.Run("cold", func(b *testing.B) { run(b, dir, Options{}, true, 0) })
	b.Run("warm", func(b *testing.B) { run(b, dir, Options{}, false, 0) })
	b.Run("nocache", func(b *testing.B) { run(b, dir, Options{MetaCacheEntries: -1}, false, 0) })
	b.Run("json-cold", func(b *testing.B) { run(b, jsonFixture(b, n, messageMultipart), Options{}, true, 0) })
	b.Run("batch256-warm", func(b *testing.B) { run(b, dir, Options{}, false, 256) })
}

// cpuTime returns the user+system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// jsonFixture is fixture with every envelope and structure rewritten in the
// legacy JSON encoding (rows written before the binary encoding existed).
func jsonFixture(b *testing.B, n int, mk func(i int) []byte) string {
	b.Helper()
	src := fixture(b, n, mk)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	dir, fresh := fixtureDir(b, fmt.Sprint(n, "-json"))
	if !fresh {
		return dir
	}
	ctx := context.Background()
	// VACUUM INTO copies the source database consistently; the copy's
	// rows are then re-encoded.
	srcStore, err := Open(ctx, src, Options{})
	if err != nil {
		b.Fatal(err)
	}
	_, err = srcStore.wdb.ExecContext(ctx, `VACUUM INTO ?`, filepath.Join(dir, dbFileName))
	srcStore.Close()
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := rewriteMetaJSON(ctx, s); err != nil {
		b.Fatal(err)
	}
	return dir
}

// rewriteMetaJSON rewrites every message's envelope and structure in the
// legacy JSON encoding, as TEXT, the way the first version stored them.
func rewriteMetaJSON(ctx context.Context, s *Store) error {
	return s.write(ctx, "rewrite json", func(w *writeTx) error {
		rows, err := w.QueryContext(ctx, `SELECT id, envelope, structure FROM messages`)
		if err != nil {
			return err
		}
		type row struct {
			id      MessageID
			env, st string
		}
		var all []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.env, &r.st); err != nil {
				rows.Close()
				return err
			}
			all = append(all, r)
		}
		rows.Close()
		for _, r := range all {
			e, _, err := decodeEnvelope(r.env)
			if err != nil {
				return err
			}
			p, _, err := decodeStructure(r.st)
			if err != nil {
				return err
			}
			ej, err := json.Marshal(e)
			if err != nil {
				return err
			}
			pj, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if _, err := w.ExecContext(ctx, `UPDATE messages SET envelope = ?, structure = ? WHERE id = ?`, string(ej), string(pj), r.id); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkUpdateFlags10k measures STORE +FLAGS / -FLAGS \Seen over 10,000
// messages (every entry changes each time).
func BenchmarkUpdateFlags10k(b *testing.B) {
	s, u, mb := openFixture(b, fixture(b, 10000, messageMultipart))
	ctx := context.Background()
	snap, err := s.Snapshot(ctx, u.ID, mb.ID)
	if err != nil {
		b.Fatal(err)
	}
	all := uids(snap.Entries)
	ops := []FlagOp{FlagsAdd, FlagsRemove}
	i := 0
	for b.Loop() {
		got, err := s.UpdateFlags(ctx, u.ID, mb.ID, all, ops[i%2], []string{FlagSeen})
		if err != nil || len(got) != len(all) {
			b.Fatalf("UpdateFlags: %d, %v", len(got), err)
		}
		i++
	}
}

const snapshotChildEnv = "POPBRIDGE_STORE_SNAPSHOT_DIR"

// TestSnapshotRSSChild is run by BenchmarkSnapshot100k in a fresh process:
// it opens the store, takes a Snapshot of INBOX and prints the process's
// peak RSS.
func TestSnapshotRSSChild(t *testing.T) {
	dir := os.Getenv(snapshotChildEnv)
	if dir == "" {
		t.Skip("child of BenchmarkSnapshot100k only")
	}
	ctx := context.Background()
	start := time.Now()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.UserByName(ctx, "bench")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := s.MailboxByName(ctx, u.ID, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, u.ID, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("SNAPSHOT entries=%d ms=%d heapMB=%.1f peakRSSkB=%d\n", len(snap.Entries), elapsed.Milliseconds(),
		float64(ms.HeapInuse)/(1<<20), peakRSSkB())
}

// peakRSSkB reads VmHWM (peak resident set) from /proc/self/status; 0 when
// unavailable.
func peakRSSkB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkSnapshot100k measures Snapshot of a 100,000-message mailbox in
// this process (time, allocations) and, in a fresh child process, open +
// Snapshot with the child's peak RSS (goal: under 100 MB).
func BenchmarkSnapshot100k(b *testing.B) {
	const n = 100000
	dir := fixture(b, n, func(i int) []byte { return testMessage(strconv.Itoa(i)) })
	s, u, mb := openFixture(b, dir)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		snap, err := s.Snapshot(ctx, u.ID, mb.ID)
		if err != nil || len(snap.Entries) != n {
			b.Fatalf("Snapshot: %d, %v", len(snap.Entries), err)
		}
	}
	b.StopTimer()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotRSSChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), snapshotChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(l, "SNAPSHOT ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "peakRSSkB":
				b.ReportMetric(f/1024, "child-peakRSS-MB")
			case "ms":
				b.ReportMetric(f, "child-open+snapshot-ms")
			}
		}
		return
	}
	b.Fatalf("child printed no result:\n%s", out)
}

// BenchmarkDeliverRealistic measures durable delivery of realistic mail
// (realisticMessage: about 50 KB mean, text+HTML, quoted-printable, base64
// attachments, encoded words) in batches of 64, the poller's full-fetch
// shape. It reports messages per second and CPU time (user+system, every
// goroutine) per message.
func BenchmarkDeliverRealistic(b *testing.B) {
	const per, distinct = 64, 256
	raws := make([][]byte, distinct)
	total := 0
	for i := range raws {
		raws[i] = realisticMessage(i)
		total += len(raws[i])
	}
	s := mustOpen(b)
	mustUser(b, s, "bench")
	ctx := context.Background()
	n := 0
	b.SetBytes(int64(per * total / distinct))
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		ds := make([]Delivery, per)
		for i := range ds {
			ds[i] = Delivery{Account: "a", UIDL: strconv.Itoa(n), Digest: "d", User: "bench", Raw: raws[n%distinct]}
			n++
		}
		if _, err := s.Deliver(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/msg")
	b.ReportMetric(float64(total)/distinct/1024, "KB/msg")
}

// BenchmarkParse measures parsing alone (envelope, structure, search texts),
// one message per op, single-threaded: on realisticMessage mail, or on
// every file of the Maildir named by POPBRIDGE_BENCH_MAILDIR (e.g. the
// 10,000-message corpus of docs/BENCHMARKS.md, exported as a Maildir).
func BenchmarkParse(b *testing.B) {
	var raws [][]byte
	if dir := os.Getenv("POPBRIDGE_BENCH_MAILDIR"); dir != "" {
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				raw, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				raws = append(raws, normalizeCRLF(raw))
			}
		}
		if len(raws) == 0 {
			b.Fatalf("no messages in %s/{cur,new}", dir)
		}
	} else {
		for i := range 256 {
			raws = append(raws, realisticMessage(i))
		}
	}
	var total int64
	for _, r := range raws {
		total += int64(len(r))
	}
	b.SetBytes(total / int64(len(raws)))
	i := 0
	for b.Loop() {
		pm := parseMessage(raws[i%len(raws)])
		if pm.structure == nil {
			b.Fatal("no structure")
		}
		i++
	}
}

// BenchmarkBodiesBriefHeader10k is the store's side of a header sync of
// 10,000 messages (UID FETCH 1:* (RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS
// (…)])): BodiesBrief with BriefHeader in imapfront's chunks of 1,024,
// reading only each header (header checksums, migration 0007) or, for
// rows stored before, each whole message ("whole").
func BenchmarkBodiesBriefHeader10k(b *testing.B) {
	const n = 10000
	run := func(b *testing.B, whole bool) {
		dir := fixture(b, n, messageMultipart)
		if whole {
			// A copy: the fixture is shared.
			cp := b.TempDir()
			if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
				b.Fatal(err)
			}
			dir = cp
		}
		s, u, mb := openFixtureOpts(b, dir, Options{})
		ctx := context.Background()
		if whole {
			if _, err := s.wdb.Exec(`UPDATE messages SET raw_head_len = NULL, raw_head_crc = NULL`); err != nil {
				b.Fatal(err)
			}
		}
		snap, err := s.Snapshot(ctx, u.ID, mb.ID)
		if err != nil {
			b.Fatal(err)
		}
		all := uids(snap.Entries)
		var bytes int64
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			got := 0
			for start := 0; start < len(all); start += 1024 {
				err := s.BodiesBrief(ctx, u.ID, mb.ID, all[start:min(len(all), start+1024)], BriefHeader, func(m *MessageMeta, raw []byte, damaged error) error {
					if damaged != nil {
						return damaged
					}
					got++
					bytes += int64(len(raw))
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			if got != n {
				b.Fatalf("%d messages, want %d", got, n)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
		b.ReportMetric(float64(bytes)/float64(b.N*n), "B/msg")
	}
	b.Run("header", func(b *testing.B) { run(b, false) })
	b.Run("whole", func(b *testing.B) { run(b, true) })
}
