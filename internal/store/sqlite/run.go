package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/retention-dev/retention-operator/internal/store"
)

// Batches of ids and values travel as one JSON array parameter, expanded
// in SQL by json_each: one statement per batch, whatever its size.
func jsonParam(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// RunCreate implements store.Store.
func (s *Store) RunCreate(ctx context.Context, p *store.RunCreateParams) (*store.Run, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	settings, err := json.Marshal(p.Settings)
	if err != nil {
		return nil, fmt.Errorf("create run %s: encode settings: %w (%w)", p.RunID, err, store.ErrInvalid)
	}
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO runs (run_id, campaign, channel, settings, holdout_percent, shards, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING`,
			p.RunID, p.Campaign, p.Channel, string(settings), p.HoldoutPercent, p.Shards, micros(s.opts.Now()))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create run %s: %w", p.RunID, wrapErr(err))
	}
	return s.RunGet(ctx, p.RunID)
}

const runSelect = "SELECT run_id, campaign, channel, settings, holdout_percent, shards, created_at FROM runs"

// RunGet implements store.Store.
func (s *Store) RunGet(ctx context.Context, runID string) (*store.Run, error) {
	var r store.Run
	var settings string
	var created int64
	err := s.db.QueryRowContext(ctx, runSelect+" WHERE run_id = ?", runID).
		Scan(&r.ID, &r.Campaign, &r.Channel, &settings, &r.HoldoutPercent, &r.Shards, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runID, wrapErr(err))
	}
	r.Settings = json.RawMessage(settings)
	r.CreatedAt = fromMicros(created)
	return &r, nil
}

// RunDelete implements store.Store.
func (s *Store) RunDelete(ctx context.Context, runID string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM runs WHERE run_id = ?", runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", runID, wrapErr(err))
	}
	return nil
}

// RunTally implements store.Store.
func (s *Store) RunTally(ctx context.Context, runID string) (*store.RunTally, error) {
	if _, err := s.RunGet(ctx, runID); err != nil {
		return nil, err
	}
	t := &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}}
	err := func() error {
		rows, err := s.db.QueryContext(ctx, `SELECT grp, state, reason, count(*), count(converted_at)
			FROM targets WHERE run_id = ? GROUP BY grp, state, reason`, runID)
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
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("tally run %s: %w", runID, wrapErr(err))
	}
	return t, nil
}

const targetRowsPerStatement = 100

// TargetInsert implements store.Store: 100-row INSERT … ON CONFLICT DO
// NOTHING statements in one transaction.
func (s *Store) TargetInsert(ctx context.Context, p *store.TargetInsertParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	var inserted int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var shards int32
		if err := tx.QueryRowContext(ctx, "SELECT shards FROM runs WHERE run_id = ?", p.RunID).Scan(&shards); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("run %s: %w", p.RunID, store.ErrNotFound)
			}
			return err
		}
		stmtSQL := func(n int) string {
			return `INSERT INTO targets (run_id, customer_id, grp, variant, shard, state, reason) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?),", n), ",") +
				` ON CONFLICT (run_id, customer_id) DO NOTHING`
		}
		var full *sql.Stmt
		if len(p.Targets) >= targetRowsPerStatement {
			var err error
			if full, err = tx.PrepareContext(ctx, stmtSQL(targetRowsPerStatement)); err != nil {
				return err
			}
			defer full.Close()
		}
		args := make([]any, 0, 7*targetRowsPerStatement)
		exec := func(stmt *sql.Stmt, q string) error {
			var res sql.Result
			var err error
			if stmt != nil {
				res, err = stmt.ExecContext(ctx, args...)
			} else {
				res, err = tx.ExecContext(ctx, q, args...)
			}
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			inserted += n
			args = args[:0]
			return nil
		}
		for _, t := range p.Targets {
			t, err := t.Normalize(shards)
			if err != nil {
				return err
			}
			args = append(args, p.RunID, t.CustomerID, string(t.Group), t.Variant, t.Shard, string(t.State), t.Reason)
			if len(args) == cap(args) {
				if err := exec(full, ""); err != nil {
					return err
				}
			}
		}
		if len(args) > 0 {
			return exec(nil, stmtSQL(len(args)/7))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("insert targets of run %s: %w", p.RunID, wrapErr(err))
	}
	return inserted, nil
}

const targetColumns = "run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_at, sent_at, converted_at"

func scanTarget(row interface{ Scan(...any) error }, t *store.Target) error {
	var grp, state string
	var claimed, sent, converted sql.NullInt64
	if err := row.Scan(&t.RunID, &t.CustomerID, &grp, &t.Variant, &t.Shard, &state, &t.Reason, &t.Attempts, &t.LastError,
		&claimed, &sent, &converted); err != nil {
		return err
	}
	t.Group, t.State = store.TargetGroup(grp), store.TargetState(state)
	t.ClaimedAt, t.SentAt, t.ConvertedAt = nullTime(claimed), nullTime(sent), nullTime(converted)
	return nil
}

// TargetClaim implements store.Store: stale claims, then pending targets,
// in one BEGIN IMMEDIATE transaction, so concurrent claimers (goroutines or
// processes) are serialized by SQLite's write lock and never share a target.
func (s *Store) TargetClaim(ctx context.Context, p *store.TargetClaimParams) ([]*store.Target, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := micros(s.opts.Now())
	var out []*store.Target
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		claim := func(q string, args ...any) error {
			rows, err := tx.QueryContext(ctx, q, args...)
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
		if !p.StaleBefore.IsZero() {
			if err := claim(`UPDATE targets SET state = 'claimed', claimed_at = ?4, attempts = attempts + 1
				WHERE run_id = ?1 AND customer_id IN (
					SELECT customer_id FROM targets
					WHERE run_id = ?1 AND shard = ?2 AND state = 'claimed' AND claimed_at < ?5
					ORDER BY claimed_at LIMIT ?3)
				RETURNING `+targetColumns, p.RunID, p.Shard, p.Limit, now, micros(p.StaleBefore)); err != nil {
				return err
			}
		}
		if left := p.Limit - len(out); left > 0 {
			return claim(`UPDATE targets SET state = 'claimed', claimed_at = ?4, attempts = attempts + 1
				WHERE run_id = ?1 AND customer_id IN (
					SELECT customer_id FROM targets
					WHERE run_id = ?1 AND shard = ?2 AND state = 'pending'
					ORDER BY customer_id LIMIT ?3)
				RETURNING `+targetColumns, p.RunID, p.Shard, left, now)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim targets of run %s shard %d: %w", p.RunID, p.Shard, wrapErr(err))
	}
	return out, nil
}

// setState runs one compare-and-set UPDATE over a JSON batch.
func (s *Store) setState(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, wrapErr(err)
}

// TargetSetSent implements store.Store.
func (s *Store) TargetSetSent(ctx context.Context, p *store.TargetSetSentParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.CustomerIDs) == 0 {
		return 0, nil
	}
	ids, err := jsonParam(p.CustomerIDs)
	if err != nil {
		return 0, err
	}
	n, err := s.setState(ctx, `UPDATE targets SET state = 'sent', sent_at = ?3
		WHERE run_id = ?1 AND state IN ('pending', 'claimed') AND customer_id IN (SELECT value FROM json_each(?2))`,
		p.RunID, ids, micros(s.opts.Now()))
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
	batch := make([][3]any, len(p.Failures))
	for i, f := range p.Failures {
		batch[i] = [3]any{f.CustomerID, f.Error, f.Retryable}
	}
	j, err := jsonParam(batch)
	if err != nil {
		return 0, err
	}
	n, err := s.setState(ctx, `UPDATE targets
		SET state = CASE WHEN u.retry THEN 'pending' ELSE 'failed' END, last_error = u.err, claimed_at = NULL
		FROM (SELECT value->>0 AS customer_id, value->>1 AS err, value->>2 AS retry FROM json_each(?2)) AS u
		WHERE targets.run_id = ?1 AND targets.customer_id = u.customer_id AND targets.state IN ('pending', 'claimed')`,
		p.RunID, j)
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
	batch := make([][2]string, len(p.Skips))
	for i, sk := range p.Skips {
		batch[i] = [2]string{sk.CustomerID, sk.Reason}
	}
	j, err := jsonParam(batch)
	if err != nil {
		return 0, err
	}
	n, err := s.setState(ctx, `UPDATE targets SET state = 'skipped', reason = u.reason, claimed_at = NULL
		FROM (SELECT value->>0 AS customer_id, value->>1 AS reason FROM json_each(?2)) AS u
		WHERE targets.run_id = ?1 AND targets.customer_id = u.customer_id AND targets.state IN ('pending', 'claimed')`,
		p.RunID, j)
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
	err := func() error {
		rows, err := s.db.QueryContext(ctx, "SELECT "+targetColumns+` FROM targets
			WHERE run_id = ?1 AND (?2 = '' OR state = ?2) ORDER BY customer_id`, p.RunID, string(p.State))
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
				return stopErr{err}
			}
		}
		return rows.Err()
	}()
	if err, stopped := unstop(err); stopped {
		return err
	}
	if err != nil {
		return fmt.Errorf("scan targets of run %s: %w", p.RunID, wrapErr(err))
	}
	return nil
}

// ConversionRecord implements store.Store.
func (s *Store) ConversionRecord(ctx context.Context, p *store.ConversionRecordParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.Conversions) == 0 {
		return 0, nil
	}
	batch := make([][2]any, len(p.Conversions))
	for i, c := range p.Conversions {
		batch[i] = [2]any{c.CustomerID, micros(c.At)}
	}
	j, err := jsonParam(batch)
	if err != nil {
		return 0, err
	}
	n, err := s.setState(ctx, `UPDATE targets SET converted_at = c.at
		FROM (
			SELECT t2.customer_id, min(u.at) AS at
			FROM (SELECT value->>0 AS customer_id, value->>1 AS at FROM json_each(?2)) AS u
			JOIN targets t2 ON t2.run_id = ?1 AND t2.customer_id = u.customer_id
			JOIN runs r ON r.run_id = ?1
			WHERE t2.converted_at IS NULL
			  AND ((t2.state = 'sent' AND u.at >= t2.sent_at) OR (t2.grp = 'holdout' AND u.at >= r.created_at))
			GROUP BY t2.customer_id) AS c
		WHERE targets.run_id = ?1 AND targets.customer_id = c.customer_id AND targets.converted_at IS NULL`,
		p.RunID, j)
	if err != nil {
		return 0, fmt.Errorf("record conversions of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// ContactCounts implements store.Store in one query.
func (s *Store) ContactCounts(ctx context.Context, p *store.ContactCountsParams, fn func(string, int64) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var audience string
	var arg any
	switch {
	case p.RunID != "":
		audience, arg = "SELECT customer_id FROM targets WHERE run_id = ?3", p.RunID
	case p.Segment != "":
		audience, arg = "SELECT m.customer_id FROM memberships m JOIN segments g ON g.id = m.segment_id WHERE g.key = ?3", p.Segment
	default:
		ids, err := jsonParam(p.CustomerIDs)
		if err != nil {
			return err
		}
		audience, arg = "SELECT value FROM json_each(?3)", ids
	}
	err := func() error {
		rows, err := s.db.QueryContext(ctx, `SELECT t.customer_id, count(*) FROM targets t JOIN runs r ON r.run_id = t.run_id
			WHERE r.channel = ?1 AND t.state = 'sent' AND t.sent_at >= ?2
			  AND t.customer_id IN (`+audience+`)
			GROUP BY t.customer_id`, p.Channel, micros(p.Since), arg)
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
