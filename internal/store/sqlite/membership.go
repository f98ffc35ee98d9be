package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/retention-dev/retention-operator/internal/store"
)

const stageRowsPerStatement = 500

// MembershipApply implements store.Store. The new ids are staged in a
// temporary table first — that writes only the connection's temp
// database, so the main database's write lock is not held while the
// caller's iterator runs (it may be evaluating rules over a snapshot).
// Then one short BEGIN IMMEDIATE transaction computes exits and entries
// set-based and records the segment.
func (s *Store) MembershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	diff, err := s.membershipApply(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("apply membership of %s: %w", p.Segment, wrapErr(err))
	}
	return diff, nil
}

func (s *Store) membershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	exec := func(q string, args ...any) (sql.Result, error) { return conn.ExecContext(ctx, q, args...) }
	if _, err := exec("CREATE TEMP TABLE IF NOT EXISTS membership_stage (customer_id TEXT PRIMARY KEY) WITHOUT ROWID"); err != nil {
		return nil, err
	}
	defer conn.ExecContext(context.Background(), "DROP TABLE IF EXISTS temp.membership_stage") //nolint:errcheck
	if _, err := exec("DELETE FROM temp.membership_stage"); err != nil {
		return nil, err
	}

	// Stage, in a deferred transaction that writes only temp.
	if _, err := exec("BEGIN DEFERRED"); err != nil {
		return nil, err
	}
	if err := stageMembers(ctx, conn, p); err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return nil, err
	}
	if _, err := exec("COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return nil, err
	}

	now := micros(s.opts.Now())
	var diff store.MembershipDiff
	if _, err := exec("BEGIN IMMEDIATE"); err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if _, err := exec(`INSERT INTO segments (key, snapshot_id, size, updated_at) VALUES (?, 0, 0, ?)
		ON CONFLICT (key) DO NOTHING`, p.Segment, now); err != nil {
		return nil, err
	}
	var segID, size int64
	if err := conn.QueryRowContext(ctx, "SELECT id, snapshot_id, size FROM segments WHERE key = ?", p.Segment).
		Scan(&segID, &diff.PreviousSnapshotID, &size); err != nil {
		return nil, err
	}
	if p.SnapshotID < diff.PreviousSnapshotID {
		return nil, fmt.Errorf("snapshot %d is older than the applied snapshot %d: %w", p.SnapshotID, diff.PreviousSnapshotID, store.ErrConflict)
	}
	res, err := exec(`DELETE FROM memberships WHERE segment_id = ?
		AND customer_id NOT IN (SELECT customer_id FROM temp.membership_stage)`, segID)
	if err != nil {
		return nil, fmt.Errorf("exits: %w", err)
	}
	diff.Exited, _ = res.RowsAffected()
	res, err = exec(`INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
		SELECT ?1, customer_id, ?2, ?3 FROM temp.membership_stage
		WHERE customer_id NOT IN (SELECT customer_id FROM memberships WHERE segment_id = ?1)`, segID, now, p.SnapshotID)
	if err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	diff.Entered, _ = res.RowsAffected()
	diff.Size = size - diff.Exited + diff.Entered
	if _, err := exec("UPDATE segments SET snapshot_id = ?, size = ?, updated_at = ? WHERE id = ?",
		p.SnapshotID, diff.Size, now, segID); err != nil {
		return nil, err
	}
	if _, err := exec("COMMIT"); err != nil {
		return nil, err
	}
	committed = true
	return &diff, nil
}

// stageMembers inserts the iterator's ids into temp.membership_stage in
// multi-row statements; duplicates are ignored.
func stageMembers(ctx context.Context, conn *sql.Conn, p *store.MembershipApplyParams) error {
	stmtSQL := func(n int) string {
		return "INSERT OR IGNORE INTO temp.membership_stage (customer_id) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?),", n), ",")
	}
	full, err := conn.PrepareContext(ctx, stmtSQL(stageRowsPerStatement))
	if err != nil {
		return err
	}
	defer full.Close()
	args := make([]any, 0, stageRowsPerStatement)
	for id, err := range p.Members {
		if err != nil {
			return fmt.Errorf("members: %w", err)
		}
		if err := store.CheckMemberID(id); err != nil {
			return err
		}
		args = append(args, id)
		if len(args) == stageRowsPerStatement {
			if _, err := full.ExecContext(ctx, args...); err != nil {
				return err
			}
			args = args[:0]
		}
	}
	if len(args) > 0 {
		if _, err := conn.ExecContext(ctx, stmtSQL(len(args)), args...); err != nil {
			return err
		}
	}
	return nil
}

// MembershipScan implements store.Store.
func (s *Store) MembershipScan(ctx context.Context, p *store.MembershipScanParams, fn func(*store.Member) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := func() error {
		rows, err := s.db.QueryContext(ctx, `SELECT m.customer_id, m.entered_at, m.entered_snapshot, g.snapshot_id
			FROM memberships m JOIN segments g ON g.id = m.segment_id
			WHERE g.key = ? AND m.entered_snapshot >= ?`, p.Segment, p.EnteredSince)
		if err != nil {
			return err
		}
		defer rows.Close()
		var m store.Member
		var entered int64
		for rows.Next() {
			if err := rows.Scan(&m.CustomerID, &entered, &m.EnteredSnapshotID, &m.LastSeenSnapshotID); err != nil {
				return err
			}
			m.EnteredAt = fromMicros(entered)
			if err := fn(&m); err != nil {
				return stopErr{err}
			}
		}
		return rows.Err()
	}()
	if err, stopped := unstop(err); stopped {
		return err
	}
	if err != nil {
		return fmt.Errorf("scan membership of %s: %w", p.Segment, wrapErr(err))
	}
	return nil
}

// MembershipGet implements store.Store.
func (s *Store) MembershipGet(ctx context.Context, segment string) (*store.Membership, error) {
	m := store.Membership{Segment: segment}
	var updated int64
	err := s.db.QueryRowContext(ctx, "SELECT snapshot_id, size, updated_at FROM segments WHERE key = ?", segment).
		Scan(&m.SnapshotID, &m.Size, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("membership of %s: %w", segment, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("membership of %s: %w", segment, wrapErr(err))
	}
	m.UpdatedAt = fromMicros(updated)
	return &m, nil
}

// MembershipDelete implements store.Store.
func (s *Store) MembershipDelete(ctx context.Context, segment string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM segments WHERE key = ?", segment)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete membership of %s: %w", segment, wrapErr(err))
	}
	return nil
}
