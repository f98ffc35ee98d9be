package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/retention-dev/retention-operator/internal/store"
)

const stageRowsPerStatement = 500

// MembershipApply implements store.Store: a full apply (Members) or an
// incremental one (Changes). The ids are staged in temporary tables first
// — that writes only the connection's temp database, so the main
// database's write lock is not held while the caller's iterators run
// (they may be evaluating rules over a snapshot). Then one short BEGIN
// IMMEDIATE transaction applies them set-based and records the segment.
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
	// The erased customers of the snapshot's source are left out as the ids
	// are staged, and again, under the write lock, those of an erasure that
	// committed in between: a member list computed before an erasure cannot
	// bring an erased customer back.
	source, erased, err := snapshotTombstones(ctx, conn, p.SnapshotID)
	if err != nil {
		return nil, err
	}
	stages := stagesOf(p)
	for i := range stages {
		if stages[i].what != "exited" {
			stages[i].ids = store.WithoutErased(stages[i].ids, erased)
		}
	}
	defer dropStages(conn, stages)
	if err := stageAll(ctx, conn, stages); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, err
	}
	if err := unstageErased(ctx, conn, stages, source, erased); err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return nil, err
	}
	apply := s.applyMembers
	if p.Changes != nil {
		apply = s.applyChanges
	}
	diff, err := apply(ctx, conn, p)
	if err == nil {
		_, err = conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return nil, err
	}
	return diff, nil
}

// applyMembers replaces the membership with the staged members: exits and
// entries are one statement each, set-based.
func (s *Store) applyMembers(ctx context.Context, conn *sql.Conn, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	now := micros(s.opts.Now())
	if _, err := conn.ExecContext(ctx, `INSERT INTO segments (key, snapshot_id, size, updated_at) VALUES (?, 0, 0, ?)
		ON CONFLICT (key) DO NOTHING`, p.Segment, now); err != nil {
		return nil, err
	}
	var seg segmentRow
	if err := seg.read(ctx, conn, p.Segment); err != nil {
		return nil, err
	}
	if err := seg.accept(p.SnapshotID); err != nil {
		return nil, err
	}
	var diff store.MembershipDiff
	res, err := conn.ExecContext(ctx, `DELETE FROM memberships WHERE segment_id = ?
		AND customer_id NOT IN (SELECT customer_id FROM temp.membership_stage)`, seg.id)
	if err != nil {
		return nil, fmt.Errorf("exits: %w", err)
	}
	diff.Exited, _ = res.RowsAffected()
	res, err = conn.ExecContext(ctx, `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
		SELECT ?1, customer_id, ?2, ?3 FROM temp.membership_stage
		WHERE customer_id NOT IN (SELECT customer_id FROM memberships WHERE segment_id = ?1)`, seg.id, now, p.SnapshotID)
	if err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	diff.Entered, _ = res.RowsAffected()
	if err := seg.record(ctx, conn, p.SnapshotID, now, &diff); err != nil {
		return nil, err
	}
	return &diff, nil
}

// applyChanges applies the staged changes to the membership at their base
// version: each statement looks its staged ids up in the memberships
// primary key, so the cost follows the change, not the membership. Exits
// go first: an id both exited and entered is a member afterwards,
// entered anew.
func (s *Store) applyChanges(ctx context.Context, conn *sql.Conn, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	now := micros(s.opts.Now())
	var seg segmentRow
	err := seg.read(ctx, conn, p.Segment)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("no membership at version %d: %w", p.Changes.BaseVersion, store.ErrBaseMoved)
	}
	if err != nil {
		return nil, err
	}
	if err := seg.changeable(p.Changes.BaseVersion, p.SnapshotID); err != nil {
		return nil, err
	}
	var diff store.MembershipDiff
	res, err := conn.ExecContext(ctx, `DELETE FROM memberships WHERE segment_id = ?
		AND customer_id IN (SELECT customer_id FROM temp.membership_exited)`, seg.id)
	if err != nil {
		return nil, fmt.Errorf("exits: %w", err)
	}
	diff.Exited, _ = res.RowsAffected()
	// "WHERE true": SQLite's parser needs it before an upsert's ON.
	res, err = conn.ExecContext(ctx, `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
		SELECT ?1, customer_id, ?2, ?3 FROM temp.membership_entered WHERE true
		ON CONFLICT (segment_id, customer_id) DO NOTHING`, seg.id, now, p.SnapshotID)
	if err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	diff.Entered, _ = res.RowsAffected()
	if err := seg.record(ctx, conn, p.SnapshotID, now, &diff); err != nil {
		return nil, err
	}
	return &diff, nil
}

// segmentRow is a segment's row, read in the write transaction.
type segmentRow struct {
	id, snapshotID, size, version int64
}

func (g *segmentRow) read(ctx context.Context, conn *sql.Conn, segment string) error {
	return conn.QueryRowContext(ctx, "SELECT id, snapshot_id, size, version FROM segments WHERE key = ?", segment).
		Scan(&g.id, &g.snapshotID, &g.size, &g.version)
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
// into the segment's row and diff (whose Entered and Exited are counted).
func (g *segmentRow) record(ctx context.Context, conn *sql.Conn, snapshotID, now int64, diff *store.MembershipDiff) error {
	diff.PreviousSnapshotID = g.snapshotID
	diff.Size = g.size - diff.Exited + diff.Entered
	return conn.QueryRowContext(ctx, `UPDATE segments SET snapshot_id = ?, size = ?, updated_at = ?, version = version + 1
		WHERE id = ? RETURNING version`, snapshotID, diff.Size, now, g.id).Scan(&diff.Version)
}

// stage is a temporary table the ids of one iterator are staged in.
type stage struct {
	table, what string
	ids         iter.Seq2[string, error]
}

// stagesOf returns the stages of an apply: the members, or the exits and
// entries.
func stagesOf(p *store.MembershipApplyParams) []stage {
	if c := p.Changes; c != nil {
		return []stage{{"membership_exited", "exited", c.Exited}, {"membership_entered", "entered", c.Entered}}
	}
	return []stage{{"membership_stage", "members", p.Members}}
}

// stageAll creates the stages' tables (emptied: the connection may keep
// them from an apply whose drop failed) and fills them in one deferred
// transaction that writes only temp.
func stageAll(ctx context.Context, conn *sql.Conn, stages []stage) error {
	for _, st := range stages {
		if _, err := conn.ExecContext(ctx, "CREATE TEMP TABLE IF NOT EXISTS "+st.table+" (customer_id TEXT PRIMARY KEY) WITHOUT ROWID"); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "DELETE FROM temp."+st.table); err != nil {
			return err
		}
	}
	if _, err := conn.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		return err
	}
	for _, st := range stages {
		if err := stageIDs(ctx, conn, st); err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			return err
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	return nil
}

// dropStages drops the stages' tables, whatever became of the apply.
func dropStages(conn *sql.Conn, stages []stage) {
	for _, st := range stages {
		_, _ = conn.ExecContext(context.Background(), "DROP TABLE IF EXISTS temp."+st.table)
	}
}

// stageIDs inserts the stage's ids into its table in multi-row
// statements; duplicates are ignored.
func stageIDs(ctx context.Context, conn *sql.Conn, st stage) error {
	stmtSQL := func(n int) string {
		return "INSERT OR IGNORE INTO temp." + st.table + " (customer_id) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?),", n), ",")
	}
	full, err := conn.PrepareContext(ctx, stmtSQL(stageRowsPerStatement))
	if err != nil {
		return err
	}
	defer full.Close()
	args := make([]any, 0, stageRowsPerStatement)
	for id, err := range st.ids {
		if err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
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
	err := s.db.QueryRowContext(ctx, "SELECT snapshot_id, size, updated_at, version FROM segments WHERE key = ?", segment).
		Scan(&m.SnapshotID, &m.Size, &updated, &m.Version)
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

// snapshotTombstones returns the source of a snapshot and its tombstones
// (none when the snapshot is unknown: the apply reports it).
func snapshotTombstones(ctx context.Context, conn *sql.Conn, snapshotID int64) (string, *store.Tombstones, error) {
	var source string
	err := conn.QueryRowContext(ctx, "SELECT source FROM snapshots WHERE id = ?", snapshotID).Scan(&source)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	t, err := tombstonesSince(ctx, conn, source, 0)
	return source, t, err
}

// unstageErased removes from the staged members (or entries) the
// customers of the tombstones recorded after those staging left out: an erasure that
// committed between the staging and the write lock. It runs under the
// write lock, so no erasure can commit after it.
func unstageErased(ctx context.Context, conn *sql.Conn, stages []stage, source string, staged *store.Tombstones) error {
	if source == "" {
		return nil
	}
	t, err := tombstonesSince(ctx, conn, source, staged.Through)
	if err != nil || t.Len() == 0 {
		return err
	}
	for _, st := range stages {
		if st.what == "exited" {
			continue
		}
		if _, err := deleteErased(ctx, conn, "temp."+st.table, t); err != nil {
			return err
		}
	}
	return nil
}
