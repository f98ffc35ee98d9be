package postgres_test

import (
	"context"
	"fmt"
	"net"
	"testing"

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
