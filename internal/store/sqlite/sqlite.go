// Package sqlite is the SQLite driver of internal/store, on
// modernc.org/sqlite (pure Go, no cgo): the embedded default for local
// runs. It registers the URL scheme "sqlite" with store.Open.
//
// The database is in WAL mode (readers never block the writer, nor it
// them) with a busy timeout, and every write transaction starts with BEGIN
// IMMEDIATE, so the operator and the outreach runner processes on one
// machine can share one file: writers queue for the lock instead of
// failing with SQLITE_BUSY halfway through a transaction. Holding that
// lock is also what serializes materializations (one channel's or not)
// and claims.
//
// Layout: as on PostgreSQL, each snapshot is a table of its own (snap_<id>)
// made current by a pointer row; see migrations/0001_init.sql for how a
// load is split into transactions, and migrations/0002_campaigns.sql for
// the contact ledger, holdout assignments, opt-outs and folded tallies.
// SQL that is the same in both dialects lives in internal/sqlshared.
//
// Time: SQLite has no server clock. The store's time (claims, stale
// cut-offs, ledger entries, Now) is Options.Clock, or this process's
// clock; the processes sharing a file run on one machine.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

func init() {
	store.Register("sqlite", func(ctx context.Context, url string, opts store.Options) (store.Store, error) {
		return Open(ctx, url, opts)
	})
}

// BusyTimeout is how long a statement waits for another connection's
// write lock before it fails.
const BusyTimeout = 30 * time.Second

// Store is the SQLite store. It implements store.Store.
type Store struct {
	db   *sql.DB
	path string
	opts store.Options
}

var _ store.Store = (*Store)(nil)

// PathFromURL returns the file path of a sqlite:// URL:
// sqlite:///abs/path.db is /abs/path.db, sqlite://relative/path.db is
// relative/path.db.
func PathFromURL(url string) (string, error) {
	rest, ok := strings.CutPrefix(url, "sqlite://")
	if !ok {
		return "", fmt.Errorf("%q is not a sqlite:// URL: %w", url, store.ErrInvalid)
	}
	if rest == "" || strings.ContainsAny(rest, "?#") {
		return "", fmt.Errorf("sqlite URL %q: want sqlite:///abs/path.db or sqlite://relative.db (no query): %w", url, store.ErrInvalid)
	}
	return rest, nil
}

// Open opens (creating if needed) the database file of a sqlite:// URL
// and applies the migrations. With Options.NoMigrate it creates nothing
// and applies nothing: the file must exist at the latest schema version.
func Open(ctx context.Context, url string, opts store.Options) (*Store, error) {
	path, err := PathFromURL(url)
	if err != nil {
		return nil, err
	}
	return OpenPath(ctx, path, opts)
}

// OpenPath opens the database file at path.
func OpenPath(ctx context.Context, path string, opts store.Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}
	if opts.NoMigrate {
		// Do not create a database the operator never migrated.
		if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
			need, err := latestVersion()
			if err != nil {
				return nil, fmt.Errorf("sqlite store %s: %w", abs, err)
			}
			return nil, fmt.Errorf("sqlite store %s: no database file: %w", abs, sqlshared.SchemaError(0, need))
		}
	}
	dsn := abs + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds()),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)",
		"_pragma=cache_size(-16384)",           // 16 MiB per connection
		"_pragma=journal_size_limit(67108864)", // WAL truncated to 64 MiB after checkpoints
		"_txlock=immediate",
	}, "&")
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: %w", abs, err)
	}
	max := opts.MaxConns
	if max <= 0 {
		max = 4
	}
	db.SetMaxOpenConns(max)
	db.SetMaxIdleConns(max)
	s := &Store{db: db, path: abs, opts: opts}
	prepare := s.migrate
	if opts.NoMigrate {
		prepare = s.checkSchema
	}
	if err := prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite store %s: %w", abs, err)
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close implements store.Store.
func (s *Store) Close() error { return s.db.Close() }

// withTx runs fn in a BEGIN IMMEDIATE transaction: committed when fn
// returns nil, rolled back otherwise.
func (s *Store) withTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrapErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return wrapErr(tx.Commit())
}

// wrapErr maps database/sql's closed-database error to store.ErrClosed.
func wrapErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "sql: database is closed") {
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	}
	return err
}

// micros converts a time to the stored Unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts stored Unix microseconds to a UTC time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// stopErr carries a callback's error through unwrapped.
type stopErr struct{ err error }

func (e stopErr) Error() string { return e.err.Error() }

func unstop(err error) (error, bool) {
	var s stopErr
	if errors.As(err, &s) {
		return s.err, true
	}
	return err, false
}
