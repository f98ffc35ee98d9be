package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// BenchmarkSnapshot1M writes and streams back a 1,000,000-customer
// snapshot in a database file on disk (b.TempDir):
//
//	go test -run '^$' -bench Snapshot1M -benchtime 1x ./internal/store/sqlite/
func BenchmarkSnapshot1M(b *testing.B) {
	ctx := context.Background()
	s, err := OpenPath(ctx, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchSnapshot(b, s, storetest.BenchCustomers)
}

// BenchmarkTargets100k claims and records 100,000 targets in batches of 100.
func BenchmarkTargets100k(b *testing.B) {
	s, err := OpenPath(context.Background(), filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchTargets(b, s, 100_000, 100)
}

// BenchmarkMaterialize1M materializes a 1,000,000-member audience in a
// database file on disk:
//
//	go test -run '^$' -bench Materialize1M -benchtime 1x ./internal/store/sqlite/
//
// RETENTION_BENCH_CUSTOMERS=10000 runs a small audience to check it works.
func BenchmarkMaterialize1M(b *testing.B) {
	s, snapshotID, segment, n := benchAudience(b)
	storetest.BenchMaterialize(b, s, snapshotID, segment, n)
}

// BenchmarkMeasure1M measures a 1,000,000-target run against a later
// snapshot (every tenth customer converted):
//
//	go test -run '^$' -bench Measure1M -benchtime 1x ./internal/store/sqlite/
func BenchmarkMeasure1M(b *testing.B) {
	s, snapshotID, segment, n := benchAudience(b)
	storetest.BenchMeasure(b, s, snapshotID, segment, n)
}

// benchAudience opens a store in a database file on disk and writes the
// materialization benchmarks' audience (storetest.BenchAudience) of
// storetest.BenchSize() customers; the store closes with the benchmark.
func benchAudience(b *testing.B) (s *Store, snapshotID int64, segment string, n int) {
	s, err := OpenPath(context.Background(), filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	n = storetest.BenchSize()
	snapshotID, segment = storetest.BenchAudience(b, s, n)
	return s, snapshotID, segment, n
}

// BenchmarkMembershipApply moves a 300,000-member segment on by 1%,
// applied in full and as changes, in a database file on disk:
//
//	go test -run '^$' -bench MembershipApply -benchtime 3x ./internal/store/sqlite/
func BenchmarkMembershipApply(b *testing.B) {
	s, err := OpenPath(context.Background(), filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchMembershipApply(b, s, storetest.BenchMembers)
}
