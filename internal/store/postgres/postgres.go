// Package postgres is the PostgreSQL driver of internal/store, on
// github.com/jackc/pgx/v5. It registers the URL schemes "postgres" and
// "postgresql" with store.Open.
//
// Layout: each scored snapshot is a table of its own (snap_<id>), created,
// filled with a binary COPY and made current by updating the source's
// pointer row, all in one transaction, so readers never see part of a
// snapshot and a dropped snapshot costs a DROP TABLE, not a DELETE of a
// million rows. Targets are one table keyed by (run, customer) with a
// partial index on pending targets for claims (due ones first); they have
// no foreign key to runs (its per-row check cost a fifth of a
// materialization): the driver writes them under a lock on the run's row.
// The contact ledger, holdout assignments, opt-outs and folded campaign
// tallies are tables of their own that outlive runs (migrations/).
//
// Materialization (materialize.go) holds two advisory locks, the channel's
// and the campaign's, streams the audience from a second connection into
// a binary COPY of the targets, and finishes with set-based statements
// shared with the SQLite driver (internal/sqlshared).
//
// Time: records are stamped with Options.Clock (the process clock when
// unset); the store's time — claims, stale cut-offs, ledger entries, Now —
// is Options.Clock when set and otherwise the server's now(), passed into
// SQL as coalesce($n, now()).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retention-dev/retention-operator/internal/store"
)

func init() {
	open := func(ctx context.Context, url string, opts store.Options) (store.Store, error) {
		return Open(ctx, url, opts)
	}
	store.Register("postgres", open)
	store.Register("postgresql", open)
}

// Store is the PostgreSQL store. It implements store.Store.
type Store struct {
	pool *pool
	opts store.Options
}

var _ store.Store = (*Store)(nil)

// Open connects to the database a postgres:// URL names and applies the
// migrations (with Options.NoMigrate: checks that they are applied). The
// URL takes libpq's parameters plus pool_max_conns (the most connections
// the store opens; default Options.MaxConns or 4).
func Open(ctx context.Context, dsn string, opts store.Options) (*Store, error) {
	dsn, maxConns, err := splitPoolParams(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if maxConns == 0 {
		maxConns = opts.MaxConns
	}
	if maxConns <= 0 {
		maxConns = 4
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse URL %s: %w (%w)", store.Redact(dsn), err, store.ErrInvalid)
	}
	s := &Store{pool: newPool(cfg, maxConns), opts: opts}
	prepare := s.migrate
	if opts.NoMigrate {
		prepare = s.checkSchema
	}
	if err := prepare(ctx); err != nil {
		s.pool.close()
		return nil, fmt.Errorf("postgres store %s: %w", cfg.Host, err)
	}
	return s, nil
}

// Close closes the store's connections. Operations in flight finish first
// on their own connection, which is then closed.
func (s *Store) Close() error {
	s.pool.close()
	return nil
}

// splitPoolParams removes pool_max_conns from a URL DSN.
func splitPoolParams(dsn string) (string, int, error) {
	if !strings.Contains(dsn, "://") {
		return dsn, 0, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", 0, fmt.Errorf("parse URL %s: %w (%w)", store.Redact(dsn), err, store.ErrInvalid)
	}
	q := u.Query()
	v := q.Get("pool_max_conns")
	if v == "" {
		return dsn, 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("pool_max_conns=%q: want a positive integer (%w)", v, store.ErrInvalid)
	}
	q.Del("pool_max_conns")
	u.RawQuery = q.Encode()
	return u.String(), n, nil
}

// withConn runs fn on a pooled connection.
func (s *Store) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return err
	}
	defer s.pool.release(c)
	return fn(c)
}

// withTx runs fn in a transaction on a pooled connection: committed when
// fn returns nil, rolled back otherwise.
func (s *Store) withTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, fn)
	})
}

// stream runs a query on a pooled connection: scan reads each row, then
// emit hands it to the caller. An error from emit stops the query and is
// returned as is; any other error is wrapped with what.
func (s *Store) stream(ctx context.Context, what string, scan func(pgx.Rows) error, emit func() error, sql string, args ...any) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return streamRows(ctx, c, scan, emit, sql, args...)
	})
	if stop, ok := stopped(err); ok {
		return stop
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// streamRows runs a query on c, scanning and emitting each row. An error
// from emit cancels the query (the connection is then discarded instead
// of draining the rest of the rows) and comes back as a stopErr, which
// stopped unwraps.
func streamRows(ctx context.Context, c *pgx.Conn, scan func(pgx.Rows) error, emit func() error, sql string, args ...any) error {
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := c.Query(qctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
		if err := emit(); err != nil {
			cancel()
			return stopErr{err}
		}
	}
	return rows.Err()
}

// stopErr carries the callback's error through unwrapped.
type stopErr struct{ err error }

func (e stopErr) Error() string { return e.err.Error() }

// stopped returns the callback's error when err is a stopErr.
func stopped(err error) (error, bool) {
	var stop stopErr
	if errors.As(err, &stop) {
		return stop.err, true
	}
	return nil, false
}

// SQLSTATE codes the driver maps.
const (
	codeUndefinedTable  = "42P01"
	codeUniqueViolation = "23505"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
