package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
)

// MembershipApply implements store.Store, in one transaction that holds
// the segment's row lock: a full apply (Members) or an incremental one
// (Changes). Either way the customer ids are COPYed into temporary
// tables first, then applied set-based.
func (s *Store) MembershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	apply := s.applyMembers
	if p.Changes != nil {
		apply = s.applyChanges
	}
	var diff store.MembershipDiff
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		q := *p
		if err := withoutErasedMembers(ctx, tx, &q); err != nil {
			return err
		}
		return apply(ctx, tx, &q, now, &diff)
	})
	if err != nil {
		return nil, fmt.Errorf("apply membership of %s: %w", p.Segment, err)
	}
	return &diff, nil
}

// applyMembers replaces the membership with p.Members: exits are one
// DELETE … NOT EXISTS and entries one INSERT … SELECT … NOT EXISTS
// against the staged ids.
func (s *Store) applyMembers(ctx context.Context, tx pgx.Tx, p *store.MembershipApplyParams, now time.Time, diff *store.MembershipDiff) error {
	if _, err := tx.Exec(ctx, `INSERT INTO segments (key, snapshot_id, size, updated_at)
		VALUES ($1, 0, 0, $2) ON CONFLICT (key) DO NOTHING`, p.Segment, now); err != nil {
		return err
	}
	var seg segmentRow
	if err := tx.QueryRow(ctx, "SELECT id, snapshot_id, size, version FROM segments WHERE key = $1 FOR UPDATE", p.Segment).
		Scan(&seg.id, &seg.snapshotID, &seg.size, &seg.version); err != nil {
		return err
	}
	if err := seg.accept(p.SnapshotID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE membership_stage (customer_id text COLLATE "C" NOT NULL) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := stageIDs(ctx, tx, "membership_stage", "members", p.Members); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "ANALYZE membership_stage"); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM memberships m WHERE m.segment_id = $1
		AND NOT EXISTS (SELECT 1 FROM membership_stage s WHERE s.customer_id = m.customer_id)`, seg.id)
	if err != nil {
		return fmt.Errorf("exits: %w", err)
	}
	diff.Exited = tag.RowsAffected()
	tag, err = tx.Exec(ctx, `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
		SELECT DISTINCT $1::bigint, s.customer_id, $2::timestamptz, $3::bigint FROM membership_stage s
		WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.segment_id = $1 AND m.customer_id = s.customer_id)`,
		seg.id, now, p.SnapshotID)
	if err != nil {
		return fmt.Errorf("entries: %w", err)
	}
	diff.Entered = tag.RowsAffected()
	return seg.record(ctx, tx, p.SnapshotID, now, diff)
}

// applyChanges applies p.Changes to the membership at their base version:
// exits are one DELETE and entries one INSERT … ON CONFLICT DO NOTHING,
// each driven by its staged ids through the memberships primary key, so
// the cost follows the change, not the membership. Exits go first: an id
// both exited and entered is a member afterwards, entered anew.
func (s *Store) applyChanges(ctx context.Context, tx pgx.Tx, p *store.MembershipApplyParams, now time.Time, diff *store.MembershipDiff) error {
	c := p.Changes
	// Staged before the row lock is taken: the caller's iterators do not
	// hold up another apply of the segment.
	var staged int64
	for _, st := range []struct {
		table, what string
		ids         iter.Seq2[string, error]
	}{{"membership_exited", "exited", c.Exited}, {"membership_entered", "entered", c.Entered}} {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+st.table+` (customer_id text COLLATE "C" NOT NULL) ON COMMIT DROP`); err != nil {
			return err
		}
		n, err := stageIDs(ctx, tx, st.table, st.what, st.ids)
		if err != nil {
			return err
		}
		staged += n
	}
	// A small change plans well on the tables' sizes alone (temporary
	// tables have no statistics until analyzed); a large one pays for them.
	if staged >= analyzeAfter {
		if _, err := tx.Exec(ctx, "ANALYZE membership_exited, membership_entered"); err != nil {
			return err
		}
	}
	var seg segmentRow
	err := tx.QueryRow(ctx, "SELECT id, snapshot_id, size, version FROM segments WHERE key = $1 FOR UPDATE", p.Segment).
		Scan(&seg.id, &seg.snapshotID, &seg.size, &seg.version)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("no membership at version %d: %w", c.BaseVersion, store.ErrBaseMoved)
	}
	if err != nil {
		return err
	}
	if err := seg.changeable(c.BaseVersion, p.SnapshotID); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM memberships m WHERE m.segment_id = $1
		AND m.customer_id IN (SELECT x.customer_id FROM membership_exited x)`, seg.id)
	if err != nil {
		return fmt.Errorf("exits: %w", err)
	}
	diff.Exited = tag.RowsAffected()
	// Duplicates in the stage conflict with their first copy: not counted.
	tag, err = tx.Exec(ctx, `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
		SELECT $1::bigint, e.customer_id, $2::timestamptz, $3::bigint FROM membership_entered e
		ON CONFLICT (segment_id, customer_id) DO NOTHING`, seg.id, now, p.SnapshotID)
	if err != nil {
		return fmt.Errorf("entries: %w", err)
	}
	diff.Entered = tag.RowsAffected()
	return seg.record(ctx, tx, p.SnapshotID, now, diff)
}

// segmentRow is a segment's row, read under its lock.
type segmentRow struct {
	id, snapshotID, size, version int64
}

// accept refuses a snapshot older than the one applied.
func (g *segmentRow) accept(snapshotID int64) error {
	if snapshotID < g.snapshotID {
		return fmt.Errorf("snapshot %d is older than the applied snapshot %d: %w", snapshotID, g.snapshotID, store.ErrConflict)
	}
	return nil
}

// changeable refuses changes computed against another version, then a
// snapshot older than the one applied.
func (g *segmentRow) changeable(base, snapshotID int64) error {
	if g.version != base {
		return fmt.Errorf("membership is at version %d, the changes are against version %d: %w", g.version, base, store.ErrBaseMoved)
	}
	return g.accept(snapshotID)
}

// record stores the applied membership's snapshot, size and next version
// into the segment's row and diff (whose Entered and Exited are counted),
// and refreshes the statistics after a large change.
func (g *segmentRow) record(ctx context.Context, tx pgx.Tx, snapshotID int64, now time.Time, diff *store.MembershipDiff) error {
	diff.PreviousSnapshotID = g.snapshotID
	diff.Size = g.size - diff.Exited + diff.Entered
	err := tx.QueryRow(ctx, `UPDATE segments SET snapshot_id = $2, size = $3, updated_at = $4, version = version + 1
		WHERE id = $1 RETURNING version`, g.id, snapshotID, diff.Size, now).Scan(&diff.Version)
	if err != nil || diff.Entered+diff.Exited < analyzeAfter {
		return err
	}
	// A large change: fresh statistics for the runs that join the
	// membership next (autovacuum would come later).
	_, err = tx.Exec(ctx, "ANALYZE memberships")
	return err
}

// analyzeAfter is the number of entries and exits after which an apply
// refreshes the memberships table's statistics.
const analyzeAfter = 10000

// stageIDs COPYs the customer ids of seq, each checked, into a temporary
// table, and returns how many it copied. An error of seq, or an invalid
// id, stops it and is returned as a sourceError naming what.
func stageIDs(ctx context.Context, tx pgx.Tx, table, what string, seq iter.Seq2[string, error]) (int64, error) {
	next, stop := iter.Pull2(seq)
	defer stop()
	var srcErr error // seq's own error, or an invalid id's
	row := make([]any, 1)
	n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, []string{"customer_id"},
		pgx.CopyFromFunc(func() ([]any, error) {
			id, err, ok := next()
			if !ok {
				return nil, nil
			}
			if err == nil {
				err = store.CheckMemberID(id)
			}
			if err != nil {
				srcErr = err
				return nil, err
			}
			row[0] = id
			return row, nil
		}))
	if srcErr != nil {
		return 0, &sourceError{what: what, err: srcErr}
	}
	if err != nil {
		return 0, fmt.Errorf("stage %s: %w", what, err)
	}
	return n, nil
}

// sourceError is an error of the caller's iterator, which stopped the
// apply: its message names the iterator, and errors.Is sees through it.
type sourceError struct {
	what string
	err  error
}

func (e *sourceError) Error() string { return e.what + ": " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

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
		return c.QueryRow(ctx, "SELECT snapshot_id, size, updated_at, version FROM segments WHERE key = $1", segment).
			Scan(&m.SnapshotID, &m.Size, &m.UpdatedAt, &m.Version)
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
