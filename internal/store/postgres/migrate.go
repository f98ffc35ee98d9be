package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store/internal/migrate"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the pg_advisory_xact_lock key that serializes
// migrations between processes starting at once ("retmigr" in ASCII).
const migrationLock int64 = 0x7265746d696772

// Migrations returns the driver's migrations, in order.
func Migrations() ([]migrate.Migration, error) { return migrate.Load(migrationFS, "migrations") }

// migrate applies the migrations not yet recorded in schema_migrations, in
// one transaction under an advisory lock, so two processes opening the
// store at once apply each migration once.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		pending, err := migrate.Pending(ms, current)
		if err != nil {
			return err
		}
		for _, m := range pending {
			// Simple protocol: a migration file holds many statements.
			if err := tx.Conn().PgConn().Exec(ctx, m.SQL).Close(); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
				m.Version, m.Name, s.opts.Now()); err != nil {
				return fmt.Errorf("record migration %d: %w", m.Version, err)
			}
		}
		return nil
	})
}

// checkSchema is the migration step of an Open with NoMigrate: it applies
// nothing and fails with store.ErrSchema unless the recorded schema version
// is this driver's latest.
func (s *Store) checkSchema(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	need := ms[len(ms)-1].Version
	var found int
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		var exists bool
		if err := c.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil || !exists {
			return err
		}
		return c.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&found)
	})
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if found != need {
		return sqlshared.SchemaError(found, need)
	}
	return nil
}
