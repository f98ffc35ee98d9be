package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/postgres"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// server is one PostgreSQL server for the package; each test gets a fresh
// database on it.
var server *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &server) }

func open(ctx context.Context, url string, opts store.Options) (store.Store, error) {
	return postgres.Open(ctx, url, opts)
}

// closedPortURL returns a URL on a loopback port nothing listens on.
func closedPortURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/none?sslmode=disable&connect_timeout=5", port)
}

func TestContract(t *testing.T) {
	storetest.Exercise(context.Background(), t, &storetest.Driver{
		NewURL:  func(t testing.TB) string { return pgtest.NewDatabase(t, server) },
		Open:    open,
		DownURL: closedPortURL,
	})
}

// TestServerGoesDown stops the server under an open store: every method
// returns an error, none panics.
func TestServerGoesDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := pgtest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := pgtest.NewDatabase(t, srv)
	s, err := postgres.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	storetest.ExpectAllFail(ctx, t, s)
}

func TestPoolParam(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t, server) + "&pool_max_conns=1"
	s, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, pgtest.NewDatabase(t, server)+"&pool_max_conns=zero", store.Options{}); err == nil {
		t.Error("pool_max_conns=zero accepted")
	}
}

// TestUpgradeFromVersion1 migrates a database that milestone 1 wrote:
// a runner refuses it until the operator migrates; then its runs are past
// materialization and what it sent counts in the ledger.
func TestUpgradeFromVersion1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t, server)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	sent := storetest.Epoch.Add(time.Hour)
	for _, q := range []string{
		"CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
		ms[0].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', now())",
		`INSERT INTO runs (run_id, campaign, channel, settings, holdout_percent, shards, created_at) VALUES ('old', 'ns/c', 'ns/email', '{}', 0, 1, now())`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, sent_at) VALUES ('old', 'a', 'treatment', 0, 'sent', '` + sent.Format(time.RFC3339) + `')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state) VALUES ('old', 'b', 'treatment', 0, 'pending')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason) VALUES ('old', 'h', 'holdout', 0, 'skipped', 'holdout')`,
	} {
		if err := c.PgConn().Exec(ctx, q).Close(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)

	_, err = postgres.Open(ctx, url, store.Options{NoMigrate: true})
	if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), fmt.Sprintf("store schema is at version 1; this binary needs version %d: start the operator, which migrates", ms[len(ms)-1].Version)) {
		t.Fatalf("NoMigrate on version 1 = %v", err)
	}
	s, err := postgres.Open(ctx, url, store.Options{Clock: storetest.NewClock()})
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
	if s2, err := postgres.Open(ctx, url, store.Options{NoMigrate: true}); err != nil {
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
	url := pgtest.NewDatabase(t, server)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	at := "'" + storetest.Epoch.Format(time.RFC3339) + "'"
	ids := storetest.LegacyCustomers
	q := []string{
		"CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
		ms[0].SQL, ms[1].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', now()), (2, 'campaigns', now())",
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at, phase)
			VALUES ('legacy', 'ns/c', '` + storetest.LegacyCampaignUID + `', '` + storetest.LegacyChannel + `', 'ns/seg', 1, '{}', 10, 1, ` + at + `, 'Materialized')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('legacy', '` + ids[0] + `', 'treatment', 0, 'pending', '', NULL),
			('legacy', '` + ids[1] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('legacy', '` + ids[2] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('legacy', '` + ids[3] + `', 'excluded', 0, 'skipped', 'opted_out', NULL)`,
		`INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void) VALUES
			('` + storetest.LegacyChannel + `', '` + ids[0] + `', 'ns/c', 'legacy', ` + at + `, false),
			('` + storetest.LegacyChannel + `', '` + ids[1] + `', 'ns/c', 'legacy', ` + at + `, false)`,
		`INSERT INTO holdout_assignments (campaign_uid, customer_id, grp) VALUES
			('` + storetest.LegacyCampaignUID + `', '` + ids[0] + `', 'treatment'),
			('` + storetest.LegacyCampaignUID + `', '` + ids[1] + `', 'treatment'),
			('` + storetest.LegacyCampaignUID + `', '` + ids[2] + `', 'holdout')`,
	}
	for _, q := range q {
		if err := c.PgConn().Exec(ctx, q).Close(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)
	s, err := postgres.Open(ctx, url, store.Options{Clock: storetest.NewClock()})
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
	url := pgtest.NewDatabase(t, server)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	at := "'" + storetest.Epoch.Format(time.RFC3339) + "'"
	ids := storetest.LegacyCustomers
	run := func(id, phase, referenceAt string, seq int) string {
		return fmt.Sprintf(`('%s', 'ns/c', '%s', '%s', 'ns/seg', 1, '{}', 10, 1, %s, '%s', %s, %s, %d, 'ns/src')`,
			id, storetest.LegacyCampaignUID, storetest.LegacyChannel, at, phase, referenceAt, at, seq)
	}
	for _, q := range []string{
		"CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
		ms[0].SQL, ms[1].SQL, ms[2].SQL, ms[3].SQL,
		"INSERT INTO schema_migrations VALUES (1, 'init', now()), (2, 'campaigns', now()), (3, 'run_records', now()), (4, 'measurement', now())",
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at,
			phase, reference_at, materialized_at, materialized_seq, source) VALUES ` +
			run(storetest.UpgradeV4Sending, "Sending", at, 1) + `, ` + run(storetest.UpgradeV4Cancelled, "Cancelled", "NULL", 2),
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('` + storetest.UpgradeV4Sending + `', '` + ids[0] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('` + storetest.UpgradeV4Sending + `', '` + ids[1] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('` + storetest.UpgradeV4Cancelled + `', '` + ids[2] + `', 'treatment', 0, 'skipped', 'cancelled', NULL),
			('` + storetest.UpgradeV4Cancelled + `', '` + ids[3] + `', 'holdout', 0, 'skipped', 'holdout', NULL)`,
	} {
		if err := c.PgConn().Exec(ctx, q).Close(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)
	s, err := postgres.Open(ctx, url, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckUpgradeFromVersion4(ctx, t, s)
}

// TestMaterializeWithOneConnection: RunMaterialize reads the audience on a
// second connection; with a pool of one it opens that one outside the pool.
func TestMaterializeWithOneConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDatabase(t, server)+"&pool_max_conns=1", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
	if err != nil {
		t.Fatal(err)
	}
	var c customer.Scored
	var ids []string
	for i := 0; i < 50; i++ {
		storetest.Customer(i, &c)
		ids = append(ids, c.ID)
		if err := w.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: "ns/seg", SnapshotID: sn.ID, Members: store.MembersFromSlice(ids)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", CampaignUID: "uid", Channel: "ns/ch", Segment: "ns/seg", SnapshotID: sn.ID, Shards: 1}); err != nil {
		t.Fatal(err)
	}
	tl, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", CapSince: storetest.Epoch,
		Plan: func(*store.AudienceMember, *store.NewTarget) error { return nil }})
	if err != nil || tl.Groups[store.GroupTreatment].Total != 50 {
		t.Fatalf("RunMaterialize = %+v, %v", tl, err)
	}
}
