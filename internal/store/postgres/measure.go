package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// RunMeasure implements store.Store in one transaction that holds the
// run's row (two measurements of one run take turns, and the later
// snapshot wins): the join of the run's targets with the snapshot streams
// to Measure, then the changed targets are written in one set-based
// UPDATE and the snapshot is recorded as measured.
func (s *Store) RunMeasure(ctx context.Context, p *store.RunMeasureParams) (*store.RunMeasureResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var res *store.RunMeasureResult
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = s.measure(ctx, tx, p)
		return err
	})
	if err != nil {
		if pgCode(err) == codeUndefinedTable {
			err = fmt.Errorf("snapshot %d: %w", p.SnapshotID, store.ErrNotFound)
		}
		return nil, fmt.Errorf("measure run %s: %w", p.RunID, err)
	}
	return res, nil
}

func (s *Store) measure(ctx context.Context, tx pgx.Tx, p *store.RunMeasureParams) (*store.RunMeasureResult, error) {
	run, err := getRun(ctx, tx, p.RunID, true)
	if err != nil {
		return nil, err
	}
	snap := sqlshared.SnapshotRow{Found: true}
	err = tx.QueryRow(ctx, sqlshared.SnapshotState, p.SnapshotID).Scan(&snap.Source, &snap.State, &snap.Layout)
	if errors.Is(err, pgx.ErrNoRows) {
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
	if err := tx.QueryRow(ctx, sqlshared.CountMeasurable, p.RunID).Scan(&total); err != nil {
		return nil, err
	}
	m.Result.Missing = total - m.Result.Measured
	if len(m.IDs) > 0 {
		ats := make([]pgtype.Timestamptz, len(m.ConvertedAt))
		for i, at := range m.ConvertedAt {
			ats[i] = nullTime(at)
		}
		if _, err := tx.Exec(ctx, `UPDATE targets t SET
				converted_snapshot = CASE WHEN t.converted_at IS NULL AND u.at IS NOT NULL THEN $2 ELSE t.converted_snapshot END,
				converted_at = coalesce(t.converted_at, u.at),
				revenue = u.revenue
			FROM unnest($3::text[], $4::timestamptz[], $5::float8[]) AS u(customer_id, at, revenue)
			WHERE t.run_id = $1 AND t.customer_id = u.customer_id`,
			p.RunID, p.SnapshotID, m.IDs, ats, m.Revenue); err != nil {
			return nil, fmt.Errorf("record measurement: %w", err)
		}
	}
	now, err := s.storeNow(ctx, tx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, sqlshared.MarkMeasured, p.RunID, p.SnapshotID, now); err != nil {
		return nil, err
	}
	return &m.Result, nil
}

// measureRows streams the run's targets joined with the snapshot to
// Measure, collecting its verdicts in m.
func measureRows(ctx context.Context, tx pgx.Tx, p *store.RunMeasureParams, run *store.Run, m *sqlshared.Measurement) error {
	rows, err := tx.Query(ctx, sqlshared.MeasuredTarget(snapshotTable(p.SnapshotID)), p.RunID)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		rec            customer.Scored
		dec            = codec.NewDecoder()
		b              = store.Baseline{ReferenceAt: run.ReferenceAt, WindowEnd: run.WindowEnd()}
		grp            string
		last, convAt   *time.Time
		data           []byte
		baseTx         int64
		baseSpend, rev float64
	)
	for rows.Next() {
		if err := rows.Scan(&b.CustomerID, &grp, &baseTx, &baseSpend, &last, &convAt, &rev, &data); err != nil {
			return err
		}
		rec.ID = b.CustomerID
		if err := dec.Decode(data, &rec); err != nil {
			return fmt.Errorf("customer record: %w", err)
		}
		b.Group, b.Transactions, b.Spend, b.Revenue = store.TargetGroup(grp), baseTx, baseSpend, rev
		b.LastPurchase, b.ConvertedAt = utc(last), utc(convAt)
		m.Add(&b, p.Measure(&b, &rec))
	}
	return rows.Err()
}

// CampaignStrata implements store.Store.
func (s *Store) CampaignStrata(ctx context.Context, campaignUID string) ([]store.RunStratum, error) {
	if err := store.CheckKey("campaign uid", campaignUID); err != nil {
		return nil, err
	}
	var strata []store.RunStratum
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, sqlshared.CampaignStrata, campaignUID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var runID, grp string
			var ref time.Time
			var final bool
			var assigned, converted int64
			var revenue float64
			if err := rows.Scan(&runID, &ref, &final, &grp, &assigned, &converted, &revenue); err != nil {
				return err
			}
			strata = sqlshared.AddStratum(strata, runID, ref, final, grp, assigned, converted, revenue)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("strata of campaign %s: %w", campaignUID, err)
	}
	return strata, nil
}
