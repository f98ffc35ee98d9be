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
