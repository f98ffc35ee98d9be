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

// RunMeasure implements store.Store in one write transaction (SQLite's
// write lock serializes measurements, and the later snapshot wins): the
// join of the run's targets with the snapshot streams to Measure, then the
// changed targets are updated one prepared statement at a time and the
// snapshot is recorded as measured.
func (s *Store) RunMeasure(ctx context.Context, p *store.RunMeasureParams) (*store.RunMeasureResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var res *store.RunMeasureResult
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.measure(ctx, tx, p)
		return err
	})
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			err = fmt.Errorf("snapshot %d: %w", p.SnapshotID, store.ErrNotFound)
		}
		return nil, fmt.Errorf("measure run %s: %w", p.RunID, wrapErr(err))
	}
	return res, nil
}

func (s *Store) measure(ctx context.Context, tx *sql.Tx, p *store.RunMeasureParams) (*store.RunMeasureResult, error) {
	run, err := getRun(ctx, tx, p.RunID)
	if err != nil {
		return nil, err
	}
	snap := sqlshared.SnapshotRow{Found: true}
	err = tx.QueryRowContext(ctx, sqlshared.SnapshotState, p.SnapshotID).Scan(&snap.Source, &snap.State, &snap.Layout)
	if errors.Is(err, sql.ErrNoRows) {
		snap.Found, err = false, nil
	}
	if err != nil {
		return nil, err
	}
	if skip, err := sqlshared.CheckMeasurable(run, p.SnapshotID, snap, snapshotLayout); skip || err != nil {
		return &store.RunMeasureResult{Skipped: skip}, err
	}
	var m sqlshared.Measurement
	if err := measureRows(ctx, tx, p, run, &m); err != nil {
		return nil, err
	}
	var total int64
	if err := tx.QueryRowContext(ctx, sqlshared.CountMeasurable, p.RunID).Scan(&total); err != nil {
		return nil, err
	}
	m.Result.Missing = total - m.Result.Measured
	if err := writeMeasurement(ctx, tx, p, &m); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, sqlshared.MarkMeasured, p.RunID, p.SnapshotID, micros(s.opts.Now())); err != nil {
		return nil, err
	}
	return &m.Result, nil
}

// measureRows streams the run's targets joined with the snapshot to
// Measure, collecting its verdicts in m.
func measureRows(ctx context.Context, tx *sql.Tx, p *store.RunMeasureParams, run *store.Run, m *sqlshared.Measurement) error {
	rows, err := tx.QueryContext(ctx, sqlshared.MeasuredTarget(snapshotTable(p.SnapshotID)), p.RunID)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		rec          customer.Scored
		dec          = codec.NewDecoder()
		b            = store.Baseline{ReferenceAt: run.ReferenceAt, WindowEnd: run.WindowEnd()}
		grp          string
		last, convAt sql.NullInt64
		data         sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&b.CustomerID, &grp, &b.Transactions, &b.Spend, &last, &convAt, &b.Revenue, &data); err != nil {
			return err
		}
		rec.ID = b.CustomerID
		if err := dec.Decode(data, &rec); err != nil {
			return fmt.Errorf("customer record: %w", err)
		}
		b.Group, b.LastPurchase, b.ConvertedAt = store.TargetGroup(grp), nullTime(last), nullTime(convAt)
		m.Add(&b, p.Measure(&b, &rec))
	}
	return rows.Err()
}

// writeMeasurement updates the targets Measure changed.
func writeMeasurement(ctx context.Context, tx *sql.Tx, p *store.RunMeasureParams, m *sqlshared.Measurement) error {
	if len(m.IDs) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE targets SET
		converted_snapshot = CASE WHEN converted_at IS NULL AND $3 IS NOT NULL THEN $2 ELSE converted_snapshot END,
		converted_at = coalesce(converted_at, $3),
		revenue = $4
		WHERE run_id = $1 AND customer_id = $5`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i, id := range m.IDs {
		var at sql.NullInt64
		if t := m.ConvertedAt[i]; !t.IsZero() {
			at = sql.NullInt64{Int64: micros(t), Valid: true}
		}
		if _, err := stmt.ExecContext(ctx, p.RunID, p.SnapshotID, at, m.Revenue[i], id); err != nil {
			return fmt.Errorf("record measurement: %w", err)
		}
	}
	return nil
}

// CampaignStrata implements store.Store.
func (s *Store) CampaignStrata(ctx context.Context, campaignUID string) ([]store.RunStratum, error) {
	if err := store.CheckKey("campaign uid", campaignUID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, sqlshared.CampaignStrata, campaignUID)
	if err != nil {
		return nil, fmt.Errorf("strata of campaign %s: %w", campaignUID, wrapErr(err))
	}
	defer rows.Close()
	var strata []store.RunStratum
	for rows.Next() {
		var runID, grp string
		var ref, assigned, converted int64
		var final bool
		var revenue float64
		if err := rows.Scan(&runID, &ref, &final, &grp, &assigned, &converted, &revenue); err != nil {
			return nil, fmt.Errorf("strata of campaign %s: %w", campaignUID, err)
		}
		strata = sqlshared.AddStratum(strata, runID, fromMicros(ref), final, grp, assigned, converted, revenue)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("strata of campaign %s: %w", campaignUID, wrapErr(err))
	}
	return strata, nil
}
