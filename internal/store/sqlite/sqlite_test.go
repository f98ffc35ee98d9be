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
	})
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
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprint(storetest.Epoch.UnixMicro())
	ids := storetest.LegacyCustomers
	for _, q := range []string{
		"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
		ms[0].SQL, ms[1].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', 0), (2, 'campaigns', 0)",
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at, phase)
			VALUES ('legacy', 'ns/c', '` + storetest.LegacyCampaignUID + `', '` + storetest.LegacyChannel + `', 'ns/seg', 1, '{}', 10, 1, ` + at + `, 'Materialized')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('legacy', '` + ids[0] + `', 'treatment', 0, 'pending', '', NULL),
			('legacy', '` + ids[1] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('legacy', '` + ids[2] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('legacy', '` + ids[3] + `', 'excluded', 0, 'skipped', 'opted_out', NULL)`,
		`INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void) VALUES
			('` + storetest.LegacyChannel + `', '` + ids[0] + `', 'ns/c', 'legacy', ` + at + `, 0),
			('` + storetest.LegacyChannel + `', '` + ids[1] + `', 'ns/c', 'legacy', ` + at + `, 0)`,
		`INSERT INTO holdout_assignments (campaign_uid, customer_id, grp) VALUES
			('` + storetest.LegacyCampaignUID + `', '` + ids[0] + `', 'treatment'),
			('` + storetest.LegacyCampaignUID + `', '` + ids[1] + `', 'treatment'),
			('` + storetest.LegacyCampaignUID + `', '` + ids[2] + `', 'holdout')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err := OpenPath(ctx, path, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckUpgradeFromVersion2(ctx, t, s)
}

// TestUpgradeFromVersion4 migrates a database that a version-4 program
// wrote, with runs still stored whose holdout targets were no ghost
// contacts yet: they become ghosts, but for the run cancelled before
// sending.
func TestUpgradeFromVersion4(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v4.db")
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprint(storetest.Epoch.UnixMicro())
	ids := storetest.LegacyCustomers
	run := func(id, phase, referenceAt string, seq int) string {
		return fmt.Sprintf(`('%s', 'ns/c', '%s', '%s', 'ns/seg', 1, '{}', 10, 1, %s, '%s', %s, %s, %d, 'ns/src')`,
			id, storetest.LegacyCampaignUID, storetest.LegacyChannel, at, phase, referenceAt, at, seq)
	}
	for _, q := range []string{
		"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
		ms[0].SQL, ms[1].SQL, ms[2].SQL, ms[3].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', 0), (2, 'campaigns', 0), (3, 'run_records', 0), (4, 'measurement', 0)",
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at,
			phase, reference_at, materialized_at, materialized_seq, source) VALUES ` +
			run(storetest.UpgradeV4Sending, "Sending", at, 1) + `, ` + run(storetest.UpgradeV4Cancelled, "Cancelled", "NULL", 2),
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('` + storetest.UpgradeV4Sending + `', '` + ids[0] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('` + storetest.UpgradeV4Sending + `', '` + ids[1] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('` + storetest.UpgradeV4Cancelled + `', '` + ids[2] + `', 'treatment', 0, 'skipped', 'cancelled', NULL),
			('` + storetest.UpgradeV4Cancelled + `', '` + ids[3] + `', 'holdout', 0, 'skipped', 'holdout', NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err := OpenPath(ctx, path, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckUpgradeFromVersion4(ctx, t, s)
}
