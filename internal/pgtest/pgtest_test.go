package pgtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/pgtest"
)

var server *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &server) }

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStart(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Start(t)
	if v := query(t, dsn, "SELECT version()"); !strings.HasPrefix(v, "PostgreSQL ") {
		t.Fatalf("version() = %q", v)
	}
	if got := query(t, dsn, "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q, want off", got)
	}
}

func TestNewDatabaseIsolated(t *testing.T) {
	t.Parallel()
	a := pgtest.NewDatabase(t, server)
	b := pgtest.NewDatabase(t, server)
	if a == b {
		t.Fatalf("two databases share a DSN: %s", a)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b, "SELECT count(*)::text FROM pg_class WHERE relname = 'only_in_a'"); got != "0" {
		t.Errorf("table created in one database is visible in another")
	}
	if got := query(t, a, "SELECT current_setting('server_encoding')"); got != "UTF8" {
		t.Errorf("server_encoding = %q, want UTF8", got)
	}
}

// TestDownUp: a server taken Down refuses connections, and Up brings it
// back on the same DSN with the committed data; a transaction open at Down
// is gone.
func TestDownUp(t *testing.T) {
	t.Parallel()
	s, err := pgtest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	dsn := pgtest.NewDatabase(t, s)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO kept VALUES (2)"); err != nil {
		t.Fatal(err)
	}

	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a connection made before Down still works")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a server that is Down")
	}

	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if got := query(t, dsn, "SELECT string_agg(x::text, ',') FROM kept"); got != "1" {
		t.Errorf("after Up the table holds %q, want the committed row only (1)", got)
	}
}
