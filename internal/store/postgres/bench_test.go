package postgres_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
	"github.com/retention-dev/retention-operator/internal/store/postgres"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

var (
	floorTables int // tables made by PsqlCopyCSV, for unique names
	benchOnce   sync.Once
	benchServer *pgtest.Server
	benchErr    error
)

// stockServer starts, once, a server with PostgreSQL's own durability
// settings (fsync, synchronous_commit, full_page_writes on): benchmarks do
// not run on the test server's fsync=off.
func stockServer(b *testing.B) *pgtest.Server {
	benchOnce.Do(func() {
		benchServer, benchErr = pgtest.NewServer(&pgtest.Config{Settings: map[string]string{
			"fsync": "", "synchronous_commit": "", "full_page_writes": "", "max_wal_size": "",
		}})
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchServer
}

// BenchmarkSnapshot1M writes and streams back a 1,000,000-customer
// snapshot, and times psql's own COPY of the same rows from a CSV file
// (plus the same primary key) as the floor:
//
//	go test -run '^$' -bench Snapshot1M -benchtime 1x ./internal/store/postgres/
func BenchmarkSnapshot1M(b *testing.B) {
	ctx := context.Background()
	srv := stockServer(b)
	url := pgtest.NewDatabase(b, srv)
	s, err := postgres.Open(ctx, url, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchSnapshot(b, s, storetest.BenchCustomers)

	b.Run("PsqlCopyCSV", func(b *testing.B) {
		csv := filepath.Join(b.TempDir(), "snapshot.csv")
		if err := writeCSV(csv, storetest.BenchCustomers); err != nil {
			b.Fatal(err)
		}
		psql, err := exec.LookPath("psql")
		if err != nil {
			psql = "/usr/lib/postgresql/" + srv.Version + "/bin/psql"
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			floorTables++
			table := fmt.Sprintf("floor_%d", floorTables)
			script := fmt.Sprintf(`BEGIN;
CREATE TABLE %[1]s (customer_id text COLLATE "C" NOT NULL, data bytea NOT NULL);
\copy %[1]s FROM '%[2]s' (FORMAT csv)
ALTER TABLE %[1]s ADD PRIMARY KEY (customer_id);
COMMIT;
`, table, csv)
			cmd := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", url)
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("psql: %v\n%s", err, out)
			}
		}
		el := time.Since(start).Seconds() / float64(b.N)
		b.ReportMetric(el, "s/op-wall")
		b.ReportMetric(float64(storetest.BenchCustomers)/el, "rows/s")
	})
}

// writeCSV writes the same rows the store writes, as psql's COPY CSV input.
func writeCSV(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var c customer.Scored
	var line []byte
	for i := 0; i < n; i++ {
		storetest.Customer(i, &c)
		data, err := codec.AppendData(nil, &c)
		if err != nil {
			return err
		}
		line = append(line[:0], c.ID...) // ids need no CSV quoting
		line = append(line, ',', '\\', 'x')
		line = hex.AppendEncode(line, data)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return w.Flush()
}

// BenchmarkTargets100k claims and records 100,000 targets in batches of 100.
func BenchmarkTargets100k(b *testing.B) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(b, stockServer(b)), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchTargets(b, s, 100_000, 100)
}

// BenchmarkMaterialize1M materializes a 1,000,000-member audience, and
// times its floor: the same audience streamed (membership joined with the
// snapshot, on a second connection), decoded, planned and binary-COPYed
// as the same target rows into a scratch table shaped like targets (its
// keys and indexes), in one transaction. The target is Materialize within
// 1.5× of Floor:
//
//	go test -run '^$' -bench Materialize1M -benchtime 1x ./internal/store/postgres/
//
// RETENTION_BENCH_CUSTOMERS=10000 runs a small audience to check it works.
func BenchmarkMaterialize1M(b *testing.B) {
	ctx := context.Background()
	url, s, snapshotID, segment, n := benchAudience(b)

	b.Run("Materialize", func(b *testing.B) {
		storetest.BenchMaterialize(b, s, snapshotID, segment, n)
	})
	b.Run("Floor", func(b *testing.B) {
		wc, err := pgx.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer wc.Close(ctx)
		rc, err := pgx.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close(ctx)
		var total time.Duration
		storetest.ResetPeakRSS()
		b.ResetTimer()
		for iter := range b.N {
			b.StopTimer()
			floorTables++
			table := fmt.Sprintf("floor_targets_%d", floorTables)
			if _, err := wc.Exec(ctx, "CREATE TABLE "+table+" (LIKE targets INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			b.StartTimer()
			copied, err := floorCopy(ctx, wc, rc, table, fmt.Sprintf("floor-%d", iter), snapshotID, segment)
			b.StopTimer()
			total += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if copied != int64(n) {
				b.Fatalf("copied %d rows, want %d", copied, n)
			}
		}
		storetest.ReportRows(b, total, n)
	})
}

// floorCopy is the floor of RunMaterialize: stream the audience on rc,
// decode and plan each member, and COPY the target rows on wc, in one
// transaction.
func floorCopy(ctx context.Context, wc, rc *pgx.Conn, table, runID string, snapshotID int64, segment string) (int64, error) {
	tx, err := wc.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	rows, err := rc.Query(ctx, fmt.Sprintf(`SELECT s.customer_id, s.data FROM segments g
		JOIN memberships m ON m.segment_id = g.id JOIN "snap_%d" s ON s.customer_id = m.customer_id
		WHERE g.key = $1`, snapshotID), pgx.QueryResultFormats{pgx.BinaryFormatCode}, segment)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		rec customer.Scored
		m   = store.AudienceMember{Customer: &rec}
		dec = codec.NewDecoder()
		row = make([]any, 16)
		bad error
	)
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		v := rows.RawValues()
		rec.ID = string(v[0])
		if err := dec.Decode(v[1], &rec); err != nil {
			bad = err
			return nil, err
		}
		t := store.NewTarget{CustomerID: rec.ID}
		storetest.BenchPlan(&m, &t)
		t, err := t.Normalize(storetest.BenchShards)
		if err != nil {
			bad = err
			return nil, err
		}
		row[0], row[1], row[2], row[3], row[4], row[5], row[6] = runID, t.CustomerID, string(t.Group), t.Variant, t.Shard, string(t.State), t.Reason
		row[7] = nil
		row[8], row[9], row[10], row[11] = t.Data.Address, t.Data.Locale, t.Data.TimeZone, nil
		row[12], row[13], row[14], row[15] = t.Data.BaseTransactions, t.Data.BaseSpend, t.Data.BaseLastPurchase, t.Data.ExpectedValue
		return row, nil
	})
	n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, []string{"run_id", "customer_id", "grp", "variant", "shard", "state", "reason", "not_before",
		"address", "locale", "time_zone", "fields", "base_transactions", "base_spend", "base_last_purchase", "expected_value"}, src)
	if bad != nil {
		return 0, bad
	}
	if err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}

// BenchmarkMeasure1M measures a 1,000,000-target run against a later
// snapshot (every tenth customer converted):
//
//	go test -run '^$' -bench Measure1M -benchtime 1x ./internal/store/postgres/
func BenchmarkMeasure1M(b *testing.B) {
	_, s, snapshotID, segment, n := benchAudience(b)
	storetest.BenchMeasure(b, s, snapshotID, segment, n)
}

// benchAudience opens a store on a new database of the stock server and
// writes the materialization benchmarks' audience (storetest.BenchAudience)
// of storetest.BenchSize() customers; the store closes with the benchmark.
func benchAudience(b *testing.B) (url string, s *postgres.Store, snapshotID int64, segment string, n int) {
	url = pgtest.NewDatabase(b, stockServer(b))
	s, err := postgres.Open(context.Background(), url, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	n = storetest.BenchSize()
	snapshotID, segment = storetest.BenchAudience(b, s, n)
	return url, s, snapshotID, segment, n
}

// BenchmarkMembershipApply moves a 300,000-member segment on by 1%,
// applied in full and as changes:
//
//	go test -run '^$' -bench MembershipApply -benchtime 3x ./internal/store/postgres/
func BenchmarkMembershipApply(b *testing.B) {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(b, stockServer(b)), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchMembershipApply(b, s, storetest.BenchMembers)
}
