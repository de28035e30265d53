package store

import (
	"context"
	"testing"
)

// BenchmarkCheckPacks10k measures the pack check Open runs (every pack
// the database refers to, for presence and length) over 10,000 messages.
func BenchmarkCheckPacks10k(b *testing.B) {
	dir := fixture(b, 10000, message8K)
	s, _, _ := openFixtureOpts(b, hooked(b, dir, testHooks{noIndexer: true}), Options{})
	ctx := context.Background()
	for b.Loop() {
		if probs, err := s.checkPacks(ctx, false); err != nil || len(probs) != 0 {
			b.Fatalf("checkPacks: %v, %v", probs, err)
		}
	}
}

// BenchmarkVerify10k measures popbridge verify's check of a store of
// 10,000 messages of 8 KB (integrity_check, packs, every record read and
// checksummed), read-only as beside serve; it reports MB/s of mail.
func BenchmarkVerify10k(b *testing.B) {
	dir := fixture(b, 10000, message8K)
	s, _, _ := openFixtureOpts(b, dir, Options{ReadOnly: true})
	ctx := context.Background()
	var bytes int64
	for b.Loop() {
		rep, err := s.Verify(ctx, nil)
		if err != nil || !rep.OK() || rep.Messages != 10000 {
			b.Fatalf("Verify: %+v, %v", rep, err)
		}
		bytes += 10000 * int64(len(message8K(1)))
	}
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}
