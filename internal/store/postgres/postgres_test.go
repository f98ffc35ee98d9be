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
		Dump:    dump,
	})
}

// dump returns every row of every table of the test's database, as text.
func dump(t testing.TB, url string) map[string][]string {
	return pgtest.Dump(t, url, storetest.RowText)
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
	at := "'" + storetest.Epoch.Format(time.RFC3339) + "'"
	storetest.CheckUpgradeFromVersion2(context.Background(), t, openAtVersion(t, 2, storetest.UpgradeV2Inserts(at, "false")...))
}

// TestUpgradeFromVersion4 migrates a database that a version-4 program
// wrote, with runs still stored whose holdout targets were no ghost
// contacts yet: they become ghosts, but for the run cancelled before
// sending.
func TestUpgradeFromVersion4(t *testing.T) {
	t.Parallel()
	at := "'" + storetest.Epoch.Format(time.RFC3339) + "'"
	storetest.CheckUpgradeFromVersion4(context.Background(), t, openAtVersion(t, 4, storetest.UpgradeV4Inserts(at)...))
}

// openAtVersion makes a database as a program at schema version left it
// (its migrations, then inserts) and opens it, which migrates it.
func openAtVersion(t *testing.T, version int, inserts ...string) store.Store {
	t.Helper()
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
	q := []string{"CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"}
	for _, m := range ms[:version] {
		q = append(q, m.SQL, fmt.Sprintf("INSERT INTO schema_migrations VALUES (%d, '%s', now())", m.Version, m.Name))
	}
	for _, q := range append(q, inserts...) {
		if err := c.PgConn().Exec(ctx, q).Close(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)
	s, err := postgres.Open(ctx, url, store.Options{Clock: storetest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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
