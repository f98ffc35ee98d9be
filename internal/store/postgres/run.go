package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/store"
)

// RunCreate implements store.Store.
func (s *Store) RunCreate(ctx context.Context, p *store.RunCreateParams) (*store.Run, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	settings, err := json.Marshal(p.Settings)
	if err != nil {
		return nil, fmt.Errorf("create run %s: encode settings: %w (%w)", p.RunID, err, store.ErrInvalid)
	}
	var run *store.Run
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `INSERT INTO runs (run_id, campaign, channel, settings, holdout_percent, shards, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id) DO NOTHING`,
			p.RunID, p.Campaign, p.Channel, string(settings), p.HoldoutPercent, p.Shards, s.opts.Now()); err != nil {
			return err
		}
		var err error
		run, err = scanRun(c.QueryRow(ctx, runSelect+" WHERE run_id = $1", p.RunID))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create run %s: %w", p.RunID, err)
	}
	return run, nil
}

const runSelect = "SELECT run_id, campaign, channel, settings::text, holdout_percent, shards, created_at FROM runs"

func scanRun(row pgx.Row) (*store.Run, error) {
	var r store.Run
	var settings string
	if err := row.Scan(&r.ID, &r.Campaign, &r.Channel, &settings, &r.HoldoutPercent, &r.Shards, &r.CreatedAt); err != nil {
		return nil, err
	}
	r.Settings = json.RawMessage(settings)
	r.CreatedAt = r.CreatedAt.UTC()
	return &r, nil
}

// RunGet implements store.Store.
func (s *Store) RunGet(ctx context.Context, runID string) (*store.Run, error) {
	var run *store.Run
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		run, err = scanRun(c.QueryRow(ctx, runSelect+" WHERE run_id = $1", runID))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runID, err)
	}
	return run, nil
}

// RunDelete implements store.Store.
func (s *Store) RunDelete(ctx context.Context, runID string) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DELETE FROM runs WHERE run_id = $1", runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", runID, err)
	}
	return nil
}

// RunTally implements store.Store.
func (s *Store) RunTally(ctx context.Context, runID string) (*store.RunTally, error) {
	if _, err := s.RunGet(ctx, runID); err != nil {
		return nil, err
	}
	t := &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT grp, state, reason, count(*), count(converted_at)
			FROM targets WHERE run_id = $1 GROUP BY grp, state, reason`, runID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var grp, state, reason string
			var n, converted int64
			if err := rows.Scan(&grp, &state, &reason, &n, &converted); err != nil {
				return err
			}
			addTally(t, grp, state, reason, n, converted)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("tally run %s: %w", runID, err)
	}
	return t, nil
}

func addTally(t *store.RunTally, grp, state, reason string, n, converted int64) {
	g := t.Groups[store.TargetGroup(grp)]
	if g == nil {
		g = &store.GroupTally{ByState: map[store.TargetState]int64{}, SkippedByReason: map[string]int64{}}
		t.Groups[store.TargetGroup(grp)] = g
	}
	g.Total += n
	g.ByState[store.TargetState(state)] += n
	if store.TargetState(state) == store.StateSkipped {
		g.SkippedByReason[reason] += n
	}
	g.Converted += converted
}

// runShards returns the run's shard count, or ErrNotFound.
func runShards(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, runID string) (int32, error) {
	var shards int32
	err := q.QueryRow(ctx, "SELECT shards FROM runs WHERE run_id = $1", runID).Scan(&shards)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	return shards, err
}

// insertChunk bounds the arrays of one INSERT … unnest statement.
const insertChunk = 10000

// TargetInsert implements store.Store with INSERT … SELECT FROM unnest(arrays)
// … ON CONFLICT DO NOTHING, in chunks, in one transaction.
func (s *Store) TargetInsert(ctx context.Context, p *store.TargetInsertParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	var inserted int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		shards, err := runShards(ctx, tx, p.RunID)
		if err != nil {
			return err
		}
		n := min(len(p.Targets), insertChunk)
		ids, groups, variants, states, reasons := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		shardsCol := make([]int32, 0, n)
		for start := 0; start < len(p.Targets); start += insertChunk {
			ids, groups, variants, states, reasons, shardsCol = ids[:0], groups[:0], variants[:0], states[:0], reasons[:0], shardsCol[:0]
			for _, t := range p.Targets[start:min(start+insertChunk, len(p.Targets))] {
				t, err := t.Normalize(shards)
				if err != nil {
					return err
				}
				ids = append(ids, t.CustomerID)
				groups = append(groups, string(t.Group))
				variants = append(variants, t.Variant)
				shardsCol = append(shardsCol, t.Shard)
				states = append(states, string(t.State))
				reasons = append(reasons, t.Reason)
			}
			tag, err := tx.Exec(ctx, `INSERT INTO targets (run_id, customer_id, grp, variant, shard, state, reason)
				SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])
				ON CONFLICT (run_id, customer_id) DO NOTHING`,
				p.RunID, ids, groups, variants, shardsCol, states, reasons)
			if err != nil {
				return err
			}
			inserted += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("insert targets of run %s: %w", p.RunID, err)
	}
	return inserted, nil
}

const targetColumns = "run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_at, sent_at, converted_at"

func scanTarget(row pgx.Row, t *store.Target) error {
	var grp, state string
	var claimed, sent, converted *time.Time
	if err := row.Scan(&t.RunID, &t.CustomerID, &grp, &t.Variant, &t.Shard, &state, &t.Reason, &t.Attempts, &t.LastError,
		&claimed, &sent, &converted); err != nil {
		return err
	}
	t.Group, t.State = store.TargetGroup(grp), store.TargetState(state)
	t.ClaimedAt, t.SentAt, t.ConvertedAt = utc(claimed), utc(sent), utc(converted)
	return nil
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// TargetClaim implements store.Store: stale claims first, then pending
// targets, each with UPDATE … WHERE customer_id = ANY(ARRAY(SELECT … LIMIT n
// FOR UPDATE SKIP LOCKED)), which walks the partial index of its state and
// never waits for, or takes, a row another claimer holds.
func (s *Store) TargetClaim(ctx context.Context, p *store.TargetClaimParams) ([]*store.Target, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	var out []*store.Target
	claim := func(c *pgx.Conn, sql string, args ...any) error {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t := &store.Target{}
			if err := scanTarget(rows, t); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		if !p.StaleBefore.IsZero() {
			if err := claim(c, `UPDATE targets SET state = 'claimed', claimed_at = $4, attempts = attempts + 1
				WHERE run_id = $1 AND customer_id = ANY(ARRAY(
					SELECT customer_id FROM targets
					WHERE run_id = $1 AND shard = $2 AND state = 'claimed' AND claimed_at < $5
					ORDER BY claimed_at LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING `+targetColumns, p.RunID, p.Shard, p.Limit, now, p.StaleBefore.UTC()); err != nil {
				return err
			}
		}
		if left := p.Limit - len(out); left > 0 {
			return claim(c, `UPDATE targets SET state = 'claimed', claimed_at = $4, attempts = attempts + 1
				WHERE run_id = $1 AND customer_id = ANY(ARRAY(
					SELECT customer_id FROM targets
					WHERE run_id = $1 AND shard = $2 AND state = 'pending'
					ORDER BY customer_id LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING `+targetColumns, p.RunID, p.Shard, left, now)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim targets of run %s shard %d: %w", p.RunID, p.Shard, err)
	}
	return out, nil
}

// TargetSetSent implements store.Store.
func (s *Store) TargetSetSent(ctx context.Context, p *store.TargetSetSentParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.CustomerIDs) == 0 {
		return 0, nil
	}
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE targets SET state = 'sent', sent_at = $3
			WHERE run_id = $1 AND customer_id = ANY($2::text[]) AND state IN ('pending', 'claimed')`,
			p.RunID, p.CustomerIDs, s.opts.Now())
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record sent targets of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// TargetSetFailed implements store.Store.
func (s *Store) TargetSetFailed(ctx context.Context, p *store.TargetSetFailedParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.Failures) == 0 {
		return 0, nil
	}
	ids, errs, retry := make([]string, len(p.Failures)), make([]string, len(p.Failures)), make([]bool, len(p.Failures))
	for i, f := range p.Failures {
		ids[i], errs[i], retry[i] = f.CustomerID, f.Error, f.Retryable
	}
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE targets t
			SET state = CASE WHEN u.retry THEN 'pending' ELSE 'failed' END, last_error = u.err, claimed_at = NULL
			FROM unnest($2::text[], $3::text[], $4::bool[]) AS u(customer_id, err, retry)
			WHERE t.run_id = $1 AND t.customer_id = u.customer_id AND t.state IN ('pending', 'claimed')`,
			p.RunID, ids, errs, retry)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record failed targets of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// TargetSetSkipped implements store.Store.
func (s *Store) TargetSetSkipped(ctx context.Context, p *store.TargetSetSkippedParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.Skips) == 0 {
		return 0, nil
	}
	ids, reasons := make([]string, len(p.Skips)), make([]string, len(p.Skips))
	for i, sk := range p.Skips {
		ids[i], reasons[i] = sk.CustomerID, sk.Reason
	}
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE targets t SET state = 'skipped', reason = u.reason, claimed_at = NULL
			FROM unnest($2::text[], $3::text[]) AS u(customer_id, reason)
			WHERE t.run_id = $1 AND t.customer_id = u.customer_id AND t.state IN ('pending', 'claimed')`,
			p.RunID, ids, reasons)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record skipped targets of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// TargetScan implements store.Store.
func (s *Store) TargetScan(ctx context.Context, p *store.TargetScanParams, fn func(*store.Target) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rows, err := c.Query(qctx, "SELECT "+targetColumns+` FROM targets
			WHERE run_id = $1 AND ($2 = '' OR state = $2) ORDER BY customer_id`, p.RunID, string(p.State))
		if err != nil {
			return err
		}
		defer rows.Close()
		var t store.Target
		for rows.Next() {
			if err := scanTarget(rows, &t); err != nil {
				return err
			}
			if err := fn(&t); err != nil {
				cancel()
				return stopErr{err}
			}
		}
		return rows.Err()
	})
	var stop stopErr
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("scan targets of run %s: %w", p.RunID, err)
	}
	return nil
}

// ConversionRecord implements store.Store: per target, the earliest
// eligible conversion of the batch, only where none is recorded yet.
func (s *Store) ConversionRecord(ctx context.Context, p *store.ConversionRecordParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.Conversions) == 0 {
		return 0, nil
	}
	ids, ats := make([]string, len(p.Conversions)), make([]time.Time, len(p.Conversions))
	for i, c := range p.Conversions {
		ids[i], ats[i] = c.CustomerID, c.At.UTC()
	}
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE targets t SET converted_at = c.at
			FROM (
				SELECT t2.customer_id, min(u.at) AS at
				FROM unnest($2::text[], $3::timestamptz[]) AS u(customer_id, at)
				JOIN targets t2 ON t2.run_id = $1 AND t2.customer_id = u.customer_id
				JOIN runs r ON r.run_id = $1
				WHERE t2.converted_at IS NULL
				  AND ((t2.state = 'sent' AND u.at >= t2.sent_at) OR (t2.grp = 'holdout' AND u.at >= r.created_at))
				GROUP BY t2.customer_id) c
			WHERE t.run_id = $1 AND t.customer_id = c.customer_id AND t.converted_at IS NULL`,
			p.RunID, ids, ats)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record conversions of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// ContactCounts implements store.Store in one query: sent targets of runs
// on the channel since the time, joined with the audience, grouped by
// customer.
func (s *Store) ContactCounts(ctx context.Context, p *store.ContactCountsParams, fn func(string, int64) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var audience string
	var arg any
	switch {
	case p.RunID != "":
		audience, arg = "SELECT customer_id FROM targets WHERE run_id = $3", p.RunID
	case p.Segment != "":
		audience, arg = "SELECT m.customer_id FROM memberships m JOIN segments g ON g.id = m.segment_id WHERE g.key = $3", p.Segment
	default:
		audience, arg = "SELECT unnest($3::text[])", p.CustomerIDs
	}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rows, err := c.Query(qctx, `SELECT t.customer_id, count(*) FROM targets t JOIN runs r ON r.run_id = t.run_id
			WHERE r.channel = $1 AND t.state = 'sent' AND t.sent_at >= $2
			  AND t.customer_id IN (`+audience+`)
			GROUP BY t.customer_id`, p.Channel, p.Since.UTC(), arg)
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
				cancel()
				return stopErr{err}
			}
		}
		return rows.Err()
	})
	var stop stopErr
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("contact counts on %s: %w", p.Channel, err)
	}
	return nil
}
