package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/retention-dev/retention-operator/internal/store/internal/migrate"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations returns the driver's migrations, in order.
func Migrations() ([]migrate.Migration, error) { return migrate.Load(migrationFS, "migrations") }

// migrate applies the migrations not yet recorded in schema_migrations in
// one BEGIN IMMEDIATE transaction: a second process opening the database at
// once waits for the lock, then finds them applied.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at INTEGER NOT NULL) STRICT`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		pending, err := migrate.Pending(ms, current)
		if err != nil {
			return err
		}
		for _, m := range pending {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.Version, m.Name, micros(s.opts.Now())); err != nil {
				return fmt.Errorf("record migration %d: %w", m.Version, err)
			}
		}
		return nil
	})
}

// latestVersion is the schema version this driver migrates to.
func latestVersion() (int, error) {
	ms, err := Migrations()
	if err != nil {
		return 0, err
	}
	return ms[len(ms)-1].Version, nil
}

// checkSchema is the migration step of an Open with NoMigrate: it applies
// nothing and fails with store.ErrSchema unless the recorded schema version
// is this driver's latest.
func (s *Store) checkSchema(ctx context.Context) error {
	need, err := latestVersion()
	if err != nil {
		return err
	}
	var found, tables int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'").Scan(&tables); err != nil {
		return fmt.Errorf("read schema version: %w", wrapErr(err))
	}
	if tables > 0 {
		if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&found); err != nil {
			return fmt.Errorf("read schema version: %w", wrapErr(err))
		}
	}
	if found != need {
		return sqlshared.SchemaError(found, need)
	}
	return nil
}
