package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// Batches of ids and values travel as one JSON array parameter, expanded
// in SQL by json_each: one statement per batch, whatever its size.
func jsonParam(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// nullMicros is a time as a parameter: NULL when zero.
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

// queryer is what a *sql.DB, *sql.Conn and *sql.Tx share.
type queryer interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// Now implements store.Store. SQLite has no server: the store's clock is
// Options.Clock, or this process's clock. Processes sharing a database file
// run on one machine and share its clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	// A closed store fails like every other method.
	if err := s.db.PingContext(ctx); err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", wrapErr(err))
	}
	return s.opts.Now(), nil
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
		_, err := tx.ExecContext(ctx, `INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id,
				scheduled_at, conversion_window, dry_run, settings, holdout_percent, shards, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING`,
			p.RunID, p.Campaign, p.CampaignUID, p.Channel, p.Segment, p.SnapshotID,
			nullMicros(p.ScheduledAt), p.ConversionWindow.Microseconds(), p.DryRun,
			string(settings), p.HoldoutPercent, p.Shards, micros(s.opts.Now()))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create run %s: %w", p.RunID, wrapErr(err))
	}
	return s.RunGet(ctx, p.RunID)
}

const runSelect = `SELECT run_id, campaign, campaign_uid, channel, segment, snapshot_id, scheduled_at,
	conversion_window, dry_run, phase, settings, holdout_percent, shards, created_at, reference_at, source, measured_snapshot FROM runs`

func getRun(ctx context.Context, q queryer, runID string) (*store.Run, error) {
	var r store.Run
	var settings, phase string
	var created, window int64
	var scheduled, reference sql.NullInt64
	err := q.QueryRowContext(ctx, runSelect+" WHERE run_id = ?", runID).
		Scan(&r.ID, &r.Campaign, &r.CampaignUID, &r.Channel, &r.Segment, &r.SnapshotID, &scheduled,
			&window, &r.DryRun, &phase, &settings, &r.HoldoutPercent, &r.Shards, &created, &reference, &r.Source, &r.MeasuredSnapshot)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	r.Settings = json.RawMessage(settings)
	r.Phase = store.RunPhase(phase)
	r.ConversionWindow = time.Duration(window) * time.Microsecond
	r.CreatedAt = fromMicros(created)
	r.ScheduledAt, r.ReferenceAt = nullTime(scheduled), nullTime(reference)
	return &r, nil
}

// RunGet implements store.Store.
func (s *Store) RunGet(ctx context.Context, runID string) (*store.Run, error) {
	r, err := getRun(ctx, s.db, runID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runID, wrapErr(err))
	}
	return r, nil
}

// RunSetPhase implements store.Store with one compare-and-set UPDATE.
func (s *Store) RunSetPhase(ctx context.Context, p *store.RunSetPhaseParams) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	from, err := jsonParam(p.From)
	if err != nil {
		return false, err
	}
	var moved bool
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET phase = ?2, reference_at = coalesce(reference_at, ?3)
			WHERE run_id = ?1 AND (?4 = 0 OR phase IN (SELECT value FROM json_each(?5)))`,
			p.RunID, string(p.To), nullMicros(p.ReferenceAt), len(p.From), from)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if moved = n == 1; moved {
			return nil
		}
		_, err = getRun(ctx, tx, p.RunID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set phase of run %s: %w", p.RunID, wrapErr(err))
	}
	return moved, nil
}

// RunCancel implements store.Store in one write transaction.
func (s *Store) RunCancel(ctx context.Context, runID string) (int64, error) {
	if err := store.CheckKey("run id", runID); err != nil {
		return 0, err
	}
	var n int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		run, err := getRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, sqlshared.CancelTargets, runID)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlshared.VoidRun, runID, run.Channel); err != nil {
			return err
		}
		if !run.Phase.Final() {
			// A run that contacted nobody has no ghost contacts either.
			if _, err := tx.ExecContext(ctx, sqlshared.VoidGhosts, runID); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE runs SET phase = 'Cancelled' WHERE run_id = ?", runID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cancel run %s: %w", runID, wrapErr(err))
	}
	return n, nil
}

// RunDelete implements store.Store: the run's tally is folded into its
// campaign's, its ledger entries, holdout assignments and ghost contacts
// are copied to contacts, holdout_assignments and ghost_contacts, then
// the run and its targets go, in one write transaction.
func (s *Store) RunDelete(ctx context.Context, runID string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlshared.FoldTally, runID); err != nil {
			return fmt.Errorf("fold tally: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlshared.KeepStrata, runID); err != nil {
			return fmt.Errorf("keep strata: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlshared.LedgerKeep, runID); err != nil {
			return fmt.Errorf("keep ledger entries: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlshared.HoldoutKeep, runID); err != nil {
			return fmt.Errorf("keep holdout assignments: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqlshared.GhostKeep, runID); err != nil {
			return fmt.Errorf("keep ghost contacts: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM targets WHERE run_id = ?", runID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM runs WHERE run_id = ?", runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", runID, wrapErr(err))
	}
	return nil
}

// tallyQuery runs a tally query (sqlshared.RunTally or CampaignTally)
// into t (sqlshared.NewTally or NewCampaignTally).
func (s *Store) tallyQuery(ctx context.Context, q queryer, query func(now string) string, arg string, t *store.RunTally) (*store.RunTally, error) {
	rows, err := q.QueryContext(ctx, query("$2"), arg, micros(s.opts.Now()))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var grp, variant, state, reason string
		var n, converted int64
		var revenue float64
		var deferred int64
		if err := rows.Scan(&grp, &variant, &state, &reason, &n, &converted, &revenue, &deferred); err != nil {
			return nil, err
		}
		sqlshared.AddTally(t, grp, variant, state, reason, n, converted, revenue, deferred)
	}
	return t, rows.Err()
}

// RunTally implements store.Store.
func (s *Store) RunTally(ctx context.Context, runID string) (*store.RunTally, error) {
	if _, err := s.RunGet(ctx, runID); err != nil {
		return nil, err
	}
	t, err := s.tallyQuery(ctx, s.db, sqlshared.RunTally, runID, sqlshared.NewTally())
	if err != nil {
		return nil, fmt.Errorf("tally run %s: %w", runID, wrapErr(err))
	}
	return t, nil
}

// CampaignTally implements store.Store.
func (s *Store) CampaignTally(ctx context.Context, campaignUID string) (*store.RunTally, error) {
	if err := store.CheckKey("campaign uid", campaignUID); err != nil {
		return nil, err
	}
	t, err := s.tallyQuery(ctx, s.db, sqlshared.CampaignTally, campaignUID, sqlshared.NewCampaignTally())
	if err != nil {
		return nil, fmt.Errorf("tally campaign %s: %w", campaignUID, wrapErr(err))
	}
	return t, nil
}

const (
	targetRowsPerStatement = 100
	targetInsertColumns    = 16
)

// targetInsert is an INSERT of n target rows; with ignore, existing targets
// are left as they are.
func targetInsert(n int, ignore bool) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO targets (run_id, customer_id, grp, variant, shard, state, reason, not_before,
		address, locale, time_zone, fields, base_transactions, base_spend, base_last_purchase, expected_value) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	if ignore {
		b.WriteString(" ON CONFLICT (run_id, customer_id) DO NOTHING")
	}
	return b.String()
}

// appendTarget appends the values of one row of targetInsert.
func appendTarget(args []any, runID string, t *store.NewTarget) ([]any, error) {
	fields, err := sqlshared.FieldsJSON(t.CustomerID, t.Data.Fields)
	if err != nil {
		return args, err
	}
	var f any
	if fields != nil {
		f = string(fields)
	}
	return append(args, runID, t.CustomerID, string(t.Group), t.Variant, t.Shard, string(t.State), t.Reason,
		nullMicros(t.NotBefore), t.Data.Address, t.Data.Locale, t.Data.TimeZone, f,
		t.Data.BaseTransactions, t.Data.BaseSpend, nullMicros(t.Data.BaseLastPurchase), t.Data.ExpectedValue), nil
}

// targetWriter writes target rows in multi-row INSERT statements on a
// transaction.
type targetWriter struct {
	ctx    context.Context
	tx     *sql.Tx
	ignore bool
	full   *sql.Stmt
	args   []any
	n      int64 // rows inserted
}

func newTargetWriter(ctx context.Context, tx *sql.Tx, ignore bool) (*targetWriter, error) {
	full, err := tx.PrepareContext(ctx, targetInsert(targetRowsPerStatement, ignore))
	if err != nil {
		return nil, err
	}
	return &targetWriter{ctx: ctx, tx: tx, ignore: ignore, full: full,
		args: make([]any, 0, targetInsertColumns*targetRowsPerStatement)}, nil
}

func (w *targetWriter) add(runID string, t *store.NewTarget) error {
	var err error
	if w.args, err = appendTarget(w.args, runID, t); err != nil {
		return err
	}
	if len(w.args) == cap(w.args) {
		return w.exec(w.full, "")
	}
	return nil
}

func (w *targetWriter) exec(stmt *sql.Stmt, q string) error {
	var res sql.Result
	var err error
	if stmt != nil {
		res, err = stmt.ExecContext(w.ctx, w.args...)
	} else {
		res, err = w.tx.ExecContext(w.ctx, q, w.args...)
	}
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	w.n += n
	clear(w.args)
	w.args = w.args[:0]
	return nil
}

// close writes the buffered rows and releases the statement.
func (w *targetWriter) close() error {
	defer w.full.Close()
	if len(w.args) > 0 {
		return w.exec(nil, targetInsert(len(w.args)/targetInsertColumns, w.ignore))
	}
	return nil
}

// TargetInsert implements store.Store: 100-row INSERT … ON CONFLICT DO
// NOTHING statements in one transaction.
func (s *Store) TargetInsert(ctx context.Context, p *store.TargetInsertParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	var inserted int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var shards int32
		var materialized bool
		if err := tx.QueryRowContext(ctx, "SELECT shards, materialized_at IS NOT NULL FROM runs WHERE run_id = ?", p.RunID).Scan(&shards, &materialized); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("run %s: %w", p.RunID, store.ErrNotFound)
			}
			return err
		}
		if materialized {
			// Its targets would be contacts: a run RunMaterialize wrote
			// takes no more.
			return fmt.Errorf("run %s was materialized: its targets are its audience: %w", p.RunID, store.ErrConflict)
		}
		w, err := newTargetWriter(ctx, tx, true)
		if err != nil {
			return err
		}
		for _, t := range p.Targets {
			t, err := t.Normalize(shards)
			if err != nil {
				w.full.Close()
				return err
			}
			if err := w.add(p.RunID, &t); err != nil {
				w.full.Close()
				return err
			}
		}
		err = w.close()
		inserted = w.n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("insert targets of run %s: %w", p.RunID, wrapErr(err))
	}
	return inserted, nil
}

const targetColumns = `run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_by,
	not_before, address, locale, time_zone, fields, base_transactions, base_spend, base_last_purchase, expected_value,
	claimed_at, sent_at, converted_at, coalesce(converted_snapshot, 0), revenue`

func scanTarget(row interface{ Scan(...any) error }, t *store.Target) error {
	var grp, state string
	var notBefore, baseLast, claimed, sent, converted sql.NullInt64
	var fields sql.NullString
	if err := row.Scan(&t.RunID, &t.CustomerID, &grp, &t.Variant, &t.Shard, &state, &t.Reason, &t.Attempts, &t.LastError,
		&t.ClaimedBy, &notBefore, &t.Data.Address, &t.Data.Locale, &t.Data.TimeZone, &fields, &t.Data.BaseTransactions,
		&t.Data.BaseSpend, &baseLast, &t.Data.ExpectedValue, &claimed, &sent, &converted, &t.ConvertedSnapshot, &t.Revenue); err != nil {
		return err
	}
	t.Group, t.State = store.TargetGroup(grp), store.TargetState(state)
	t.NotBefore, t.Data.BaseLastPurchase = nullTime(notBefore), nullTime(baseLast)
	t.ClaimedAt, t.SentAt, t.ConvertedAt = nullTime(claimed), nullTime(sent), nullTime(converted)
	var err error
	t.Data.Fields, err = sqlshared.DecodeFields([]byte(fields.String))
	return err
}

// TargetClaim implements store.Store: stale claims, then due pending
// targets, in one BEGIN IMMEDIATE transaction, so concurrent claimers
// (goroutines or processes) are serialized by SQLite's write lock and
// never share a target. "Now" is the store's clock (see Now).
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
			if err := claim(`UPDATE targets SET claimed_at = ?4, claimed_by = ?5, attempts = attempts + 1
				WHERE run_id = ?1 AND customer_id IN (
					SELECT customer_id FROM targets
					WHERE run_id = ?1 AND shard = ?2 AND state = 'claimed' AND claimed_at < ?6
					ORDER BY claimed_at LIMIT ?3)
				RETURNING `+targetColumns, p.RunID, p.Shard, p.Limit, now, p.Token, micros(p.StaleBefore)); err != nil {
				return err
			}
		}
		if left := p.Limit - len(out); left > 0 {
			return claim(`UPDATE targets SET state = 'claimed', claimed_at = ?4, claimed_by = ?5, attempts = attempts + 1
				WHERE run_id = ?1 AND customer_id IN (
					SELECT customer_id FROM targets
					WHERE run_id = ?1 AND shard = ?2 AND state = 'pending' AND (not_before IS NULL OR not_before <= ?4)
					ORDER BY not_before, customer_id LIMIT ?3)
				RETURNING `+targetColumns, p.RunID, p.Shard, left, now, p.Token)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim targets of run %s shard %d: %w", p.RunID, p.Shard, wrapErr(err))
	}
	return out, nil
}

// holder is the compare-and-set condition of a record: with a token, only
// targets still claimed by it; without, pending or claimed ones. token is
// the parameter holding the token.
func holder(token string) string {
	return `(targets.state IN ('pending', 'claimed') AND (` + token + ` = '' OR (targets.state = 'claimed' AND targets.claimed_by = ` + token + `)))`
}

// voidBatch voids the ledger entries of the targets of a JSON batch ($2,
// arrays whose first element is the customer id) that are now failed or
// skipped, when the run wrote entries of its own (before migration 0003;
// a later run's entries are its targets, voided with them). $1 run id.
const voidBatch = `UPDATE contacts SET void = 1
	WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?1 AND materialized_at IS NULL) AND channel = (SELECT channel FROM runs WHERE run_id = ?1) AND run_id = ?1 AND NOT void
	  AND customer_id IN (SELECT t.customer_id FROM targets t
		WHERE t.run_id = ?1 AND t.state IN ('failed', 'skipped')
		  AND t.customer_id IN (SELECT value->>0 FROM json_each(?2)))`

// setState runs one compare-and-set UPDATE over a JSON batch, then, when
// void is set, voids the ledger entries of the batch's targets that ended
// failed or skipped, in one transaction.
func (s *Store) setState(ctx context.Context, void bool, q string, args ...any) (int64, error) {
	var n int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 || !void {
			return err
		}
		_, err = tx.ExecContext(ctx, voidBatch, args[0], args[1])
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
	n, err := s.setState(ctx, false, `UPDATE targets SET state = 'sent', sent_at = ?3
		WHERE run_id = ?1 AND customer_id IN (SELECT value FROM json_each(?2)) AND `+holder("?4"),
		p.RunID, ids, micros(s.opts.Now()), p.Token)
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
	batch := make([][4]any, len(p.Failures))
	for i, f := range p.Failures {
		batch[i] = [4]any{f.CustomerID, f.Error, f.Retryable, nullMicros(f.NotBefore)}
	}
	j, err := jsonParam(batch)
	if err != nil {
		return 0, err
	}
	n, err := s.setState(ctx, true, `UPDATE targets
		SET state = CASE WHEN u.retry THEN 'pending' ELSE 'failed' END, last_error = u.err,
			not_before = CASE WHEN u.retry THEN u.not_before END, claimed_at = NULL, claimed_by = ''
		FROM (SELECT value->>0 AS customer_id, value->>1 AS err, value->>2 AS retry, value->>3 AS not_before
			FROM json_each(?2)) AS u
		WHERE targets.run_id = ?1 AND targets.customer_id = u.customer_id AND `+holder("?3"),
		p.RunID, j, p.Token)
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
	n, err := s.setState(ctx, true, `UPDATE targets
		SET state = 'skipped', reason = u.reason, not_before = NULL, claimed_at = NULL, claimed_by = ''
		FROM (SELECT value->>0 AS customer_id, value->>1 AS reason FROM json_each(?2)) AS u
		WHERE targets.run_id = ?1 AND targets.customer_id = u.customer_id AND `+holder("?3"),
		p.RunID, j, p.Token)
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

// ConversionRecord implements store.Store, intent to treat: per treatment
// or holdout target, the earliest conversion of the batch at or after the
// run's reference time, only where none is recorded yet.
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
	n, err := s.setState(ctx, false, `UPDATE targets SET converted_at = c.at
		FROM (
			SELECT t2.customer_id, min(u.at) AS at
			FROM (SELECT value->>0 AS customer_id, value->>1 AS at FROM json_each(?2)) AS u
			JOIN targets t2 ON t2.run_id = ?1 AND t2.customer_id = u.customer_id
			JOIN runs r ON r.run_id = ?1
			WHERE t2.converted_at IS NULL AND t2.grp IN ('treatment', 'holdout')
			  AND r.reference_at IS NOT NULL AND u.at >= r.reference_at
			GROUP BY t2.customer_id) AS c
		WHERE targets.run_id = ?1 AND targets.customer_id = c.customer_id AND targets.converted_at IS NULL`,
		p.RunID, j)
	if err != nil {
		return 0, fmt.Errorf("record conversions of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// TargetWaiting implements store.Store.
func (s *Store) TargetWaiting(ctx context.Context, p *store.TargetWaitingParams) (*store.TargetWaiting, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var pending, noNotBefore, claimed int64
	var notBefore, claimedAt sql.NullInt64
	err := s.db.QueryRowContext(ctx, sqlshared.TargetWaiting, p.RunID, p.Shard, p.Token, micros(p.ClaimedBefore)).
		Scan(&pending, &noNotBefore, &notBefore, &claimed, &claimedAt)
	if err != nil {
		return nil, fmt.Errorf("targets waiting in run %s shard %d: %w", p.RunID, p.Shard, wrapErr(err))
	}
	return sqlshared.Waiting(pending, noNotBefore, nullTime(notBefore), claimed, nullTime(claimedAt)), nil
}
