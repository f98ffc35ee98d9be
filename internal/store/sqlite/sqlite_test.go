package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

func tempURL(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "store.db") }

func open(ctx context.Context, url string, opts store.Options) (store.Store, error) {
	return Open(ctx, url, opts)
}

func TestContract(t *testing.T) {
	storetest.Exercise(context.Background(), t, &storetest.Driver{
		NewURL: tempURL,
		Open:   open,
		DownURL: func(t testing.TB) string {
			return "sqlite://" + filepath.Join(t.TempDir(), "missing-dir", "sub", "store.db")
		},
		Dump: dump,
	})
}

// dump returns every row of every table of the database at url, as text.
func dump(t testing.TB, url string) map[string][]string {
	ctx := context.Background()
	s, err := Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var tables []string
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := s.db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM %q", table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], storetest.RowText(vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out
}

func TestPathFromURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"sqlite:///var/lib/retention/store.db", "/var/lib/retention/store.db", true},
		{"sqlite://store.db", "store.db", true},
		{"sqlite://data/store.db", "data/store.db", true},
		{"sqlite://", "", false},
		{"sqlite://x.db?mode=ro", "", false},
		{"postgres://x", "", false},
	} {
		got, err := PathFromURL(tc.url)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("PathFromURL(%q) = %q, %v; want %q (ok %v)", tc.url, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PathFromURL(%q) error %v is not ErrInvalid", tc.url, err)
		}
	}
}

// TestAbandonedWriterIsPruned: a writer whose process died after some of
// its transactions committed leaves a 'writing' snapshot; it is never
// visible, and a prune drops it once its heartbeat is old.
func TestAbandonedWriterIsPruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := storetest.NewClock()
	s, err := Open(ctx, tempURL(t), store.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sw, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
	if err != nil {
		t.Fatal(err)
	}
	w := sw.(*snapshotWriter)
	var c customer.Scored
	for i := 0; i < 2*rowsPerTx+5; i++ {
		storetest.Customer(i, &c)
		if err := w.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	// The process dies: its open transaction rolls back, nothing else runs.
	w.rollback()
	w.end = true
	w.close()

	if list, err := s.SnapshotList(ctx, "ns/src"); err != nil || len(list) != 0 {
		t.Fatalf("abandoned snapshot listed: %v, %v", list, err)
	}
	if err := s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: w.id}, func(*customer.Scored) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("scan of an abandoned snapshot = %v, want ErrNotFound", err)
	}
	// A recent heartbeat: the writer may be alive, keep it.
	if res, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/src"}); err != nil || res.Abandoned != 0 {
		t.Fatalf("prune right away = %+v, %v; want nothing abandoned", res, err)
	}
	clock.Advance(2 * time.Hour)
	if res, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/src"}); err != nil || res.Abandoned != 1 {
		t.Fatalf("prune after 2h = %+v, %v; want 1 abandoned", res, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = ?", "snap_1").Scan(&n); err != nil || n != 0 {
		t.Errorf("abandoned table still there: %d, %v", n, err)
	}
}

// TestUpgradeFromVersion1 migrates a database that milestone 1 wrote:
// a runner refuses it until the operator migrates; then its runs are past
// materialization and what it sent counts in the ledger.
func TestUpgradeFromVersion1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	sent := storetest.Epoch.Add(time.Hour)
	for _, q := range []string{
		"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
		ms[0].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', 0)",
		`INSERT INTO runs (run_id, campaign, channel, settings, holdout_percent, shards, created_at) VALUES ('old', 'ns/c', 'ns/email', '{}', 0, 1, 0)`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, sent_at) VALUES ('old', 'a', 'treatment', 0, 'sent', ` + fmt.Sprint(sent.UnixMicro()) + `)`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state) VALUES ('old', 'b', 'treatment', 0, 'pending')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason) VALUES ('old', 'h', 'holdout', 0, 'skipped', 'holdout')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	_, err = OpenPath(ctx, path, store.Options{NoMigrate: true})
	if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), fmt.Sprintf("store schema is at version 1; this binary needs version %d: start the operator, which migrates", ms[len(ms)-1].Version)) {
		t.Fatalf("NoMigrate on version 1 = %v", err)
	}
	s, err := OpenPath(ctx, path, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.RunGet(ctx, "old")
	if err != nil || r.Phase != store.PhaseMaterialized {
		t.Fatalf("old run = %+v, %v", r, err)
	}
	got := map[string]int64{}
	if err := s.ContactCounts(ctx, &store.ContactCountsParams{Channel: "ns/email", Since: storetest.Epoch, RunID: "old"},
		func(id string, n int64) error { got[id] = n; return nil }); err != nil || !reflect.DeepEqual(got, map[string]int64{"a": 1}) {
		t.Errorf("ledger after upgrade = %v, %v", got, err)
	}
	claimed, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "old", Limit: 10, Token: "w"})
	if err != nil || len(claimed) != 1 || claimed[0].CustomerID != "b" {
		t.Errorf("claim after upgrade = %+v, %v", claimed, err)
	}
	if s2, err := OpenPath(ctx, path, store.Options{NoMigrate: true}); err != nil {
		t.Errorf("NoMigrate after upgrade: %v", err)
	} else {
		s2.Close()
	}
}

// TestUpgradeFromVersion2 migrates a database that a version-2 program
// wrote, with a materialized run still stored whose ledger entries and
// holdout assignments were written beside its targets: they count once.
func TestUpgradeFromVersion2(t *testing.T) {
	t.Parallel()
	at := fmt.Sprint(storetest.Epoch.UnixMicro())
	storetest.CheckUpgradeFromVersion2(context.Background(), t, openAtVersion(t, 2, storetest.UpgradeV2Inserts(at, "0")...))
}

// TestUpgradeFromVersion4 migrates a database that a version-4 program
// wrote, with runs still stored whose holdout targets were no ghost
// contacts yet: they become ghosts, but for the run cancelled before
// sending.
func TestUpgradeFromVersion4(t *testing.T) {
	t.Parallel()
	at := fmt.Sprint(storetest.Epoch.UnixMicro())
	storetest.CheckUpgradeFromVersion4(context.Background(), t, openAtVersion(t, 4, storetest.UpgradeV4Inserts(at)...))
}

// openAtVersion makes a database as a program at schema version left it
// (its migrations, then inserts) and opens it, which migrates it.
func openAtVersion(t *testing.T, version int, inserts ...string) store.Store {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.db", version))
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	q := []string{"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT"}
	for _, m := range ms[:version] {
		q = append(q, m.SQL, fmt.Sprintf("INSERT INTO schema_migrations VALUES (%d, '%s', 0)", m.Version, m.Name))
	}
	for _, q := range append(q, inserts...) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err := OpenPath(ctx, path, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
