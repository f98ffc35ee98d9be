package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
)

// MembershipApply implements store.Store: the new ids are COPYed into a
// temporary table, then exits are one DELETE … NOT EXISTS and entries one
// INSERT … SELECT … NOT EXISTS, in the transaction that holds the
// segment's row lock.
func (s *Store) MembershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	var diff store.MembershipDiff
	var srcErr error // the Members iterator's own error, returned as is
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO segments (key, snapshot_id, size, updated_at)
			VALUES ($1, 0, 0, $2) ON CONFLICT (key) DO NOTHING`, p.Segment, now); err != nil {
			return err
		}
		var segID, size int64
		if err := tx.QueryRow(ctx, "SELECT id, snapshot_id, size FROM segments WHERE key = $1 FOR UPDATE", p.Segment).
			Scan(&segID, &diff.PreviousSnapshotID, &size); err != nil {
			return err
		}
		if p.SnapshotID < diff.PreviousSnapshotID {
			return fmt.Errorf("snapshot %d is older than the applied snapshot %d: %w", p.SnapshotID, diff.PreviousSnapshotID, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE membership_stage (customer_id text COLLATE "C" NOT NULL) ON COMMIT DROP`); err != nil {
			return err
		}
		next, stop := iter.Pull2(p.Members)
		defer stop()
		row := make([]any, 1)
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"membership_stage"}, []string{"customer_id"},
			pgx.CopyFromFunc(func() ([]any, error) {
				id, err, ok := next()
				if !ok {
					return nil, nil
				}
				if err != nil {
					srcErr = err
					return nil, err
				}
				if err := store.CheckMemberID(id); err != nil {
					srcErr = err
					return nil, err
				}
				row[0] = id
				return row, nil
			}))
		if srcErr != nil {
			return srcErr
		}
		if err != nil {
			return fmt.Errorf("stage members: %w", err)
		}
		if _, err := tx.Exec(ctx, "ANALYZE membership_stage"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM memberships m WHERE m.segment_id = $1
			AND NOT EXISTS (SELECT 1 FROM membership_stage s WHERE s.customer_id = m.customer_id)`, segID)
		if err != nil {
			return fmt.Errorf("exits: %w", err)
		}
		diff.Exited = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
			SELECT DISTINCT $1::bigint, s.customer_id, $2::timestamptz, $3::bigint FROM membership_stage s
			WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.segment_id = $1 AND m.customer_id = s.customer_id)`,
			segID, now, p.SnapshotID)
		if err != nil {
			return fmt.Errorf("entries: %w", err)
		}
		diff.Entered = tag.RowsAffected()
		diff.Size = size - diff.Exited + diff.Entered
		_, err = tx.Exec(ctx, "UPDATE segments SET snapshot_id = $2, size = $3, updated_at = $4 WHERE id = $1",
			segID, p.SnapshotID, diff.Size, now)
		if err != nil || diff.Entered+diff.Exited < analyzeAfter {
			return err
		}
		// A large change: fresh statistics for the runs that join the
		// membership next (autovacuum would come later).
		_, err = tx.Exec(ctx, "ANALYZE memberships")
		return err
	})
	if err != nil {
		if srcErr != nil && errors.Is(err, srcErr) {
			return nil, fmt.Errorf("apply membership of %s: members: %w", p.Segment, err)
		}
		return nil, fmt.Errorf("apply membership of %s: %w", p.Segment, err)
	}
	return &diff, nil
}

// analyzeAfter is the number of entries and exits after which an apply
// refreshes the memberships table's statistics.
const analyzeAfter = 10000

// MembershipScan implements store.Store.
func (s *Store) MembershipScan(ctx context.Context, p *store.MembershipScanParams, fn func(*store.Member) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var m store.Member
	return s.stream(ctx, "scan membership of "+p.Segment, func(rows pgx.Rows) error {
		if err := rows.Scan(&m.CustomerID, &m.EnteredAt, &m.EnteredSnapshotID, &m.LastSeenSnapshotID); err != nil {
			return err
		}
		m.EnteredAt = m.EnteredAt.UTC()
		return nil
	}, func() error { return fn(&m) }, `SELECT m.customer_id, m.entered_at, m.entered_snapshot, g.snapshot_id
			FROM memberships m JOIN segments g ON g.id = m.segment_id
			WHERE g.key = $1 AND m.entered_snapshot >= $2`, p.Segment, p.EnteredSince)
}

// MembershipGet implements store.Store.
func (s *Store) MembershipGet(ctx context.Context, segment string) (*store.Membership, error) {
	m := store.Membership{Segment: segment}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT snapshot_id, size, updated_at FROM segments WHERE key = $1", segment).
			Scan(&m.SnapshotID, &m.Size, &m.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("membership of %s: %w", segment, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("membership of %s: %w", segment, err)
	}
	m.UpdatedAt = m.UpdatedAt.UTC()
	return &m, nil
}

// MembershipDelete implements store.Store.
func (s *Store) MembershipDelete(ctx context.Context, segment string) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DELETE FROM segments WHERE key = $1", segment)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete membership of %s: %w", segment, err)
	}
	return nil
}
