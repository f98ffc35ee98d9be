package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// RunMaterialize implements store.Store in one BEGIN IMMEDIATE
// transaction: holding SQLite's write lock serializes it with every other
// write, so with every materialization on any channel, and its reads see
// every ledger entry committed before. The audience query runs on the
// transaction's own connection while the targets go in 100-row INSERT
// statements beside it (SQLite steps both statements on one connection;
// the query reads targets only in its cap and holdout joins, aggregates
// it materializes before its first row, and only those of runs marked
// materialized, which this one is not yet); then a set-based statement
// for MaxPerRun, and the run's row marked materialized: its targets are
// its ledger entries and holdout assignments (see sqlshared), nothing else
// is written.
func (s *Store) RunMaterialize(ctx context.Context, p *store.RunMaterializeParams) (*store.RunTally, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	run, err := s.RunGet(ctx, p.RunID)
	if err != nil {
		return nil, err
	}
	if run.Phase != store.PhasePending {
		return s.RunTally(ctx, p.RunID)
	}
	if run.Segment == "" || run.SnapshotID <= 0 {
		return nil, fmt.Errorf("materialize run %s: the run has no segment or snapshot: %w", p.RunID, store.ErrInvalid)
	}
	var tally *store.RunTally
	var planErr error
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		var err error
		tally, planErr, err = s.materialize(ctx, tx, p)
		return err
	})
	if planErr != nil {
		return nil, fmt.Errorf("materialize run %s: %w", p.RunID, planErr)
	}
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			err = fmt.Errorf("the run already has targets: %w (%w)", err, store.ErrConflict)
		}
		return nil, fmt.Errorf("materialize run %s: %w", p.RunID, wrapErr(err))
	}
	return tally, nil
}

// materialize is RunMaterialize's transaction. planErr is the error of
// Plan or of a target it made, returned as is.
func (s *Store) materialize(ctx context.Context, tx *sql.Tx, p *store.RunMaterializeParams) (tally *store.RunTally, planErr, err error) {
	// Read again under the write lock: another materialization may have won.
	run, err := getRun(ctx, tx, p.RunID)
	if err != nil {
		return nil, nil, err
	}
	if run.Phase != store.PhasePending {
		tally, err = s.tallyQuery(ctx, tx, sqlshared.RunTally, p.RunID, sqlshared.NewTally())
		return tally, nil, err
	}
	var state string
	var layout int
	err = tx.QueryRowContext(ctx, "SELECT state, layout FROM snapshots WHERE id = ?", run.SnapshotID).Scan(&state, &layout)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && state != "committed") {
		return nil, nil, fmt.Errorf("snapshot %d: %w", run.SnapshotID, store.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	if layout != snapshotLayout {
		return nil, nil, fmt.Errorf("snapshot layout %d is not known to this program", layout)
	}
	now := micros(s.opts.Now())

	q := sqlshared.AudienceQuery{
		SnapshotTable: snapshotTable(run.SnapshotID),
		Suppress:      len(p.SuppressSegments) > 0,
		Cap:           !p.CapSince.IsZero(),
		InList:        func(n int) string { return fmt.Sprintf("IN (SELECT value FROM json_each($%d))", n) },
	}
	args := []any{run.Segment, p.EnteredSince, run.Channel, run.CampaignUID}
	if q.Suppress {
		list, err := jsonParam(p.SuppressSegments)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, list)
	}
	if q.Cap {
		args = append(args, micros(p.CapSince))
	}
	w, err := newTargetWriter(ctx, tx, false)
	if err != nil {
		return nil, nil, err
	}
	planErr, err = func() (error, error) {
		rows, err := tx.QueryContext(ctx, q.SQL(), args...)
		if err != nil {
			return nil, fmt.Errorf("read audience: %w", err)
		}
		defer rows.Close()
		var (
			rec      customer.Scored
			data     sql.RawBytes
			recorded string
			m        = store.AudienceMember{Customer: &rec}
			counted  = sqlshared.NewTally()
			dec      = codec.NewDecoder()
		)
		for rows.Next() {
			if err := rows.Scan(&rec.ID, &data, &m.Suppressed, &m.OptedOut, &m.Contacts, &recorded); err != nil {
				return nil, fmt.Errorf("read audience: %w", err)
			}
			if err := dec.Decode(data, &rec); err != nil {
				return nil, fmt.Errorf("read audience: customer %q: %w", rec.ID, err)
			}
			m.RecordedGroup = store.TargetGroup(recorded)
			t := store.NewTarget{CustomerID: rec.ID}
			if err := p.Plan(&m, &t); err != nil {
				return fmt.Errorf("plan customer %s: %w", rec.ID, err), nil
			}
			if t.CustomerID != rec.ID {
				return fmt.Errorf("plan customer %s: target for customer %q: %w", rec.ID, t.CustomerID, store.ErrInvalid), nil
			}
			t, err := t.Normalize(run.Shards)
			if err != nil {
				return err, nil
			}
			sqlshared.AddTally(counted, string(t.Group), t.Variant, string(t.State), t.Reason, 1, 0, 0, sqlshared.Deferred(&t, fromMicros(now)))
			if err := w.add(p.RunID, &t); err != nil {
				if errors.Is(err, store.ErrInvalid) {
					return err, nil
				}
				return nil, fmt.Errorf("write targets: %w", err)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read audience: %w", err)
		}
		tally = counted
		return nil, nil
	}()
	if planErr != nil || err != nil {
		w.full.Close()
		return nil, planErr, errors.Join(planErr, err)
	}
	if err := w.close(); err != nil {
		return nil, nil, fmt.Errorf("write targets: %w", err)
	}

	if p.MaxPerRun > 0 {
		if _, err := tx.ExecContext(ctx, sqlshared.OverMax, p.RunID, p.MaxPerRun, sqlshared.NoLimit); err != nil {
			return nil, nil, fmt.Errorf("exclude over max: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, sqlshared.MarkMaterialized, p.RunID, now); err != nil {
		return nil, nil, err
	}
	if p.MaxPerRun > 0 {
		// The tally counted while writing is off by the exclusions.
		tally, err = s.tallyQuery(ctx, tx, sqlshared.RunTally, p.RunID, sqlshared.NewTally())
	}
	return tally, nil, err
}
