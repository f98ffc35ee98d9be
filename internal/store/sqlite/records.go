package sqlite

import (
	"context"
	"fmt"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// The records that outlive a run: the contact ledger (counted here; a
// stored materialized run's entries are its targets, RunDelete copies them
// to contacts), holdout assignments (likewise) and opt-outs.

// ContactCounts implements store.Store in one query over the ledger and
// the stored materialized runs' targets.
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
		ids, err := jsonParam(p.CustomerIDs)
		if err != nil {
			return err
		}
		audience, arg = "SELECT value FROM json_each($3)", ids
	}
	err := func() error {
		rows, err := s.db.QueryContext(ctx, sqlshared.ContactCounts(audience), p.Channel, micros(p.Since), arg)
		if err != nil {
			return err
		}
		defer rows.Close()
		var id string
		var n int64
		for rows.Next() {
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			if err := fn(id, n); err != nil {
				return stopErr{err}
			}
		}
		return rows.Err()
	}()
	if err, stopped := unstop(err); stopped {
		return err
	}
	if err != nil {
		return fmt.Errorf("contact counts on %s: %w", p.Channel, wrapErr(err))
	}
	return nil
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
	ids, err := jsonParam(customerIDs)
	if err != nil {
		return nil, err
	}
	err = func() error {
		rows, err := s.db.QueryContext(ctx, sqlshared.HoldoutGet("IN (SELECT value FROM json_each($2))"), campaignUID, ids)
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
	}()
	if err != nil {
		return nil, fmt.Errorf("holdout assignments of campaign %s: %w", campaignUID, wrapErr(err))
	}
	return out, nil
}

// OptOutAdd implements store.Store.
func (s *Store) OptOutAdd(ctx context.Context, p *store.OptOutAddParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := s.setState(ctx, false, `INSERT INTO opt_outs (channel, customer_id, at, via) VALUES (?, ?, ?, ?)
		ON CONFLICT (channel, customer_id) DO NOTHING`, p.Channel, p.CustomerID, micros(s.opts.Now()), p.Via)
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
	_, err := s.setState(ctx, false, "DELETE FROM opt_outs WHERE channel = ? AND customer_id = ?", channel, customerID)
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
	ids, err := jsonParam(customerIDs)
	if err != nil {
		return nil, err
	}
	err = func() error {
		rows, err := s.db.QueryContext(ctx, `SELECT customer_id FROM opt_outs
			WHERE channel = ? AND customer_id IN (SELECT value FROM json_each(?))`, channel, ids)
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
	}()
	if err != nil {
		return nil, fmt.Errorf("opt-outs on %s: %w", channel, wrapErr(err))
	}
	return out, nil
}
