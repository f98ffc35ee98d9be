package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// The records that outlive a run: the contact ledger (counted here; a
// stored materialized run's entries are its targets, RunDelete copies them
// to contacts), holdout assignments (likewise) and opt-outs.

// ContactCounts implements store.Store in one query over the ledger and
// the stored materialized runs' targets, joined with the audience, grouped
// by customer.
func (s *Store) ContactCounts(ctx context.Context, p *store.ContactCountsParams, fn func(string, int64) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var audience string
	var arg any
	switch {
	case p.RunID != "":
		audience, arg = sqlshared.AudienceOfRun, p.RunID
	case p.Segment != "":
		audience, arg = sqlshared.AudienceOfSegment, p.Segment
	default:
		audience, arg = "SELECT unnest($3::text[])", p.CustomerIDs
	}
	var id string
	var n int64
	return s.stream(ctx, "contact counts on "+p.Channel,
		func(rows pgx.Rows) error { return rows.Scan(&id, &n) },
		func() error { return fn(id, n) },
		sqlshared.ContactCounts(audience), p.Channel, p.Since.UTC(), arg)
}

// HoldoutGet implements store.Store in one query over holdout_assignments
// and the campaign's stored materialized runs' targets (see
// sqlshared.HoldoutGet).
func (s *Store) HoldoutGet(ctx context.Context, campaignUID string, customerIDs []string) (map[string]store.TargetGroup, error) {
	if err := store.CheckKey("campaign uid", campaignUID); err != nil {
		return nil, err
	}
	out := map[string]store.TargetGroup{}
	if len(customerIDs) == 0 {
		return out, nil
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, sqlshared.HoldoutGet("= ANY($2::text[])"), campaignUID, customerIDs)
		if err != nil {
			return err
		}
		defer rows.Close()
		var id, grp string
		for rows.Next() {
			if err := rows.Scan(&id, &grp); err != nil {
				return err
			}
			out[id] = store.TargetGroup(grp)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("holdout assignments of campaign %s: %w", campaignUID, err)
	}
	return out, nil
}

// OptOutAdd implements store.Store.
func (s *Store) OptOutAdd(ctx context.Context, p *store.OptOutAddParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO opt_outs (channel, customer_id, at, via) VALUES ($1, $2, $3, $4)
			ON CONFLICT (channel, customer_id) DO NOTHING`, p.Channel, p.CustomerID, s.opts.Now(), p.Via)
		return err
	})
	if err != nil {
		return fmt.Errorf("record opt-out on %s: %w", p.Channel, err)
	}
	return nil
}

// OptOutDelete implements store.Store.
func (s *Store) OptOutDelete(ctx context.Context, channel, customerID string) error {
	if err := store.CheckKey("channel", channel); err != nil {
		return err
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DELETE FROM opt_outs WHERE channel = $1 AND customer_id = $2", channel, customerID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete opt-out on %s: %w", channel, err)
	}
	return nil
}

// OptOutFilter implements store.Store.
func (s *Store) OptOutFilter(ctx context.Context, channel string, customerIDs []string) (map[string]bool, error) {
	if err := store.CheckKey("channel", channel); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	if len(customerIDs) == 0 {
		return out, nil
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT customer_id FROM opt_outs WHERE channel = $1 AND customer_id = ANY($2::text[])", channel, customerIDs)
		if err != nil {
			return err
		}
		defer rows.Close()
		var id string
		for rows.Next() {
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("opt-outs on %s: %w", channel, err)
	}
	return out, nil
}
