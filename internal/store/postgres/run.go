package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// querier is what a connection and a transaction share.
type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
	Query(context.Context, string, ...any) (pgx.Rows, error)
}

// nullTime is a time as a parameter: NULL when zero.
func nullTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.UTC(), Valid: true}
}

// clockParam is the store clock as a parameter: Options.Clock's reading,
// or NULL, which the SQL turns into now() (coalesce($n, now())): the
// database clock every process sharing the database sees.
func (s *Store) clockParam() pgtype.Timestamptz {
	if s.opts.Clock == nil {
		return pgtype.Timestamptz{}
	}
	return nullTime(s.opts.Now())
}

// storeNow reads the store's clock: Options.Clock, or the database's.
func (s *Store) storeNow(ctx context.Context, q querier) (time.Time, error) {
	if s.opts.Clock != nil {
		return s.opts.Now(), nil
	}
	var now time.Time
	if err := q.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return time.Time{}, err
	}
	return now.UTC(), nil
}

// Now implements store.Store.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		now, err = s.storeNow(ctx, c)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	return now, nil
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
	var run *store.Run
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id,
				scheduled_at, conversion_window, dry_run, settings, holdout_percent, shards, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (run_id) DO NOTHING`,
			p.RunID, p.Campaign, p.CampaignUID, p.Channel, p.Segment, p.SnapshotID,
			nullTime(p.ScheduledAt), p.ConversionWindow.Microseconds(), p.DryRun,
			string(settings), p.HoldoutPercent, p.Shards, s.opts.Now()); err != nil {
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

const runSelect = `SELECT run_id, campaign, campaign_uid, channel, segment, snapshot_id, scheduled_at,
	conversion_window, dry_run, phase, settings::text, holdout_percent, shards, created_at, reference_at, source, measured_snapshot FROM runs`

func scanRun(row pgx.Row) (*store.Run, error) {
	var r store.Run
	var settings, phase string
	var window int64
	var scheduled, reference *time.Time
	if err := row.Scan(&r.ID, &r.Campaign, &r.CampaignUID, &r.Channel, &r.Segment, &r.SnapshotID, &scheduled,
		&window, &r.DryRun, &phase, &settings, &r.HoldoutPercent, &r.Shards, &r.CreatedAt, &reference, &r.Source, &r.MeasuredSnapshot); err != nil {
		return nil, err
	}
	r.Settings = json.RawMessage(settings)
	r.Phase = store.RunPhase(phase)
	r.ConversionWindow = time.Duration(window) * time.Microsecond
	r.CreatedAt = r.CreatedAt.UTC()
	r.ScheduledAt, r.ReferenceAt = utc(scheduled), utc(reference)
	return &r, nil
}

func getRun(ctx context.Context, q querier, runID string, forUpdate bool) (*store.Run, error) {
	sql := runSelect + " WHERE run_id = $1"
	if forUpdate {
		sql += " FOR UPDATE"
	}
	run, err := scanRun(q.QueryRow(ctx, sql, runID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	return run, err
}

// RunGet implements store.Store.
func (s *Store) RunGet(ctx context.Context, runID string) (*store.Run, error) {
	var run *store.Run
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		run, err = getRun(ctx, c, runID, false)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("run %s: %w", runID, err)
	}
	return run, nil
}

// RunSetPhase implements store.Store with one compare-and-set UPDATE.
func (s *Store) RunSetPhase(ctx context.Context, p *store.RunSetPhaseParams) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	from := make([]string, len(p.From))
	for i, f := range p.From {
		from[i] = string(f)
	}
	var moved bool
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE runs SET phase = $2, reference_at = coalesce(reference_at, $3)
			WHERE run_id = $1 AND (cardinality($4::text[]) = 0 OR phase = ANY($4::text[]))`,
			p.RunID, string(p.To), nullTime(p.ReferenceAt), from)
		if err != nil {
			return err
		}
		if moved = tag.RowsAffected() == 1; moved {
			return nil
		}
		_, err = getRun(ctx, c, p.RunID, false)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set phase of run %s: %w", p.RunID, err)
	}
	return moved, nil
}

// RunCancel implements store.Store in one transaction that holds the run's
// row: pending targets skipped, their ledger entries voided, the phase set
// (and the run's ghost contacts voided if it contacted nobody).
func (s *Store) RunCancel(ctx context.Context, runID string) (int64, error) {
	if err := store.CheckKey("run id", runID); err != nil {
		return 0, err
	}
	var n int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		run, err := getRun(ctx, tx, runID, true)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sqlshared.CancelTargets, runID)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, sqlshared.VoidRun, runID, run.Channel); err != nil {
			return err
		}
		if !run.Phase.Final() {
			// A run that contacted nobody has no ghost contacts either.
			if _, err := tx.Exec(ctx, sqlshared.VoidGhosts, runID); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE runs SET phase = 'Cancelled' WHERE run_id = $1", runID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cancel run %s: %w", runID, err)
	}
	return n, nil
}

// RunDelete implements store.Store: the run's tally is folded into its
// campaign's, its ledger entries, holdout assignments and ghost contacts
// are copied to contacts, holdout_assignments and ghost_contacts, then
// the run and its targets go, in one transaction that holds the run's row:
// a reader sees the entries, ghosts and assignments in the run's targets
// or in those tables, not both.
func (s *Store) RunDelete(ctx context.Context, runID string) error {
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := getRun(ctx, tx, runID, true); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlshared.FoldTally, runID); err != nil {
			return fmt.Errorf("fold tally: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlshared.KeepStrata, runID); err != nil {
			return fmt.Errorf("keep strata: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlshared.LedgerKeep, runID); err != nil {
			return fmt.Errorf("keep ledger entries: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlshared.HoldoutKeep, runID); err != nil {
			return fmt.Errorf("keep holdout assignments: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlshared.GhostKeep, runID); err != nil {
			return fmt.Errorf("keep ghost contacts: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM targets WHERE run_id = $1", runID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM runs WHERE run_id = $1", runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", runID, err)
	}
	return nil
}

// tallyNow is the store's time in a tally query: Options.Clock's reading
// ($2) or the database's.
const tallyNow = "coalesce($2::timestamptz, now())"

// tallyQuery runs a tally query (sqlshared.RunTally or CampaignTally)
// into t (sqlshared.NewTally or NewCampaignTally).
func (s *Store) tallyQuery(ctx context.Context, q querier, sql func(now string) string, arg string, t *store.RunTally) (*store.RunTally, error) {
	rows, err := q.Query(ctx, sql(tallyNow), arg, s.clockParam())
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
	var t *store.RunTally
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := getRun(ctx, c, runID, false); err != nil {
			return err
		}
		var err error
		t, err = s.tallyQuery(ctx, c, sqlshared.RunTally, runID, sqlshared.NewTally())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tally run %s: %w", runID, err)
	}
	return t, nil
}

// CampaignTally implements store.Store.
func (s *Store) CampaignTally(ctx context.Context, campaignUID string) (*store.RunTally, error) {
	if err := store.CheckKey("campaign uid", campaignUID); err != nil {
		return nil, err
	}
	var t *store.RunTally
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		t, err = s.tallyQuery(ctx, c, sqlshared.CampaignTally, campaignUID, sqlshared.NewCampaignTally())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tally campaign %s: %w", campaignUID, err)
	}
	return t, nil
}

// runShards returns the run's shard count, or ErrNotFound, and holds the
// run's row until the transaction ends (targets have no foreign key: the
// lock keeps RunDelete from deleting the run under them, and
// RunMaterialize from materializing it). A run RunMaterialize wrote takes
// no more targets: ErrConflict.
func runShards(ctx context.Context, q querier, runID string) (int32, error) {
	var shards int32
	var materialized bool
	err := q.QueryRow(ctx, "SELECT shards, materialized_at IS NOT NULL FROM runs WHERE run_id = $1 FOR SHARE", runID).Scan(&shards, &materialized)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("run %s: %w", runID, store.ErrNotFound)
	}
	if err == nil && materialized {
		return 0, fmt.Errorf("run %s was materialized: its targets are its audience: %w", runID, store.ErrConflict)
	}
	return shards, err
}

// insertChunk bounds the arrays of one INSERT … unnest statement.
const insertChunk = 10000

// targetInsertSQL inserts the rows of unnest(arrays), skipping existing
// targets.
const targetInsertSQL = `INSERT INTO targets (run_id, customer_id, grp, variant, shard, state, reason, not_before,
		address, locale, time_zone, fields, base_transactions, base_spend, base_last_purchase, expected_value)
	SELECT $1, u.id, u.grp, u.variant, u.shard, u.state, u.reason, u.not_before,
		u.address, u.locale, u.tz, u.fields::jsonb, u.base_tx, u.base_spend, u.base_last, u.ev
	FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::timestamptz[],
		$9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::float8[], $15::timestamptz[], $16::float8[])
		AS u(id, grp, variant, shard, state, reason, not_before, address, locale, tz, fields, base_tx, base_spend, base_last, ev)
	ON CONFLICT (run_id, customer_id) DO NOTHING`

// targetArrays are the columns of one chunk of TargetInsert.
type targetArrays struct {
	ids, groups, variants, states, reasons, addresses, locales, zones []string
	shards                                                            []int32
	notBefore, baseLast                                               []pgtype.Timestamptz
	fields                                                            []*string
	baseTx                                                            []int64
	baseSpend, ev                                                     []float64
}

func (a *targetArrays) reset() {
	a.ids, a.groups, a.variants, a.states, a.reasons = a.ids[:0], a.groups[:0], a.variants[:0], a.states[:0], a.reasons[:0]
	a.addresses, a.locales, a.zones, a.shards = a.addresses[:0], a.locales[:0], a.zones[:0], a.shards[:0]
	a.notBefore, a.baseLast, a.fields, a.baseTx, a.baseSpend, a.ev = a.notBefore[:0], a.baseLast[:0], a.fields[:0], a.baseTx[:0], a.baseSpend[:0], a.ev[:0]
}

func (a *targetArrays) add(t *store.NewTarget) error {
	fields, err := sqlshared.FieldsJSON(t.CustomerID, t.Data.Fields)
	if err != nil {
		return err
	}
	var f *string
	if fields != nil {
		s := string(fields)
		f = &s
	}
	a.ids = append(a.ids, t.CustomerID)
	a.groups = append(a.groups, string(t.Group))
	a.variants = append(a.variants, t.Variant)
	a.shards = append(a.shards, t.Shard)
	a.states = append(a.states, string(t.State))
	a.reasons = append(a.reasons, t.Reason)
	a.notBefore = append(a.notBefore, nullTime(t.NotBefore))
	a.addresses = append(a.addresses, t.Data.Address)
	a.locales = append(a.locales, t.Data.Locale)
	a.zones = append(a.zones, t.Data.TimeZone)
	a.fields = append(a.fields, f)
	a.baseTx = append(a.baseTx, t.Data.BaseTransactions)
	a.baseSpend = append(a.baseSpend, t.Data.BaseSpend)
	a.baseLast = append(a.baseLast, nullTime(t.Data.BaseLastPurchase))
	a.ev = append(a.ev, t.Data.ExpectedValue)
	return nil
}

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
		var a targetArrays
		for start := 0; start < len(p.Targets); start += insertChunk {
			a.reset()
			for _, t := range p.Targets[start:min(start+insertChunk, len(p.Targets))] {
				t, err := t.Normalize(shards)
				if err != nil {
					return err
				}
				if err := a.add(&t); err != nil {
					return err
				}
			}
			tag, err := tx.Exec(ctx, targetInsertSQL, p.RunID, a.ids, a.groups, a.variants, a.shards, a.states, a.reasons,
				a.notBefore, a.addresses, a.locales, a.zones, a.fields, a.baseTx, a.baseSpend, a.baseLast, a.ev)
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

const targetColumns = `run_id, customer_id, grp, variant, shard, state, reason, attempts, last_error, claimed_by,
	not_before, address, locale, time_zone, fields, base_transactions, base_spend, base_last_purchase, expected_value,
	claimed_at, sent_at, converted_at, coalesce(converted_snapshot, 0), revenue`

func scanTarget(row pgx.Row, t *store.Target) error {
	var grp, state string
	var notBefore, baseLast, claimed, sent, converted *time.Time
	var fields []byte
	if err := row.Scan(&t.RunID, &t.CustomerID, &grp, &t.Variant, &t.Shard, &state, &t.Reason, &t.Attempts, &t.LastError,
		&t.ClaimedBy, &notBefore, &t.Data.Address, &t.Data.Locale, &t.Data.TimeZone, &fields, &t.Data.BaseTransactions,
		&t.Data.BaseSpend, &baseLast, &t.Data.ExpectedValue, &claimed, &sent, &converted, &t.ConvertedSnapshot, &t.Revenue); err != nil {
		return err
	}
	t.Group, t.State = store.TargetGroup(grp), store.TargetState(state)
	t.NotBefore, t.Data.BaseLastPurchase = utc(notBefore), utc(baseLast)
	t.ClaimedAt, t.SentAt, t.ConvertedAt = utc(claimed), utc(sent), utc(converted)
	var err error
	t.Data.Fields, err = sqlshared.DecodeFields(fields)
	return err
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// TargetClaim implements store.Store: stale claims first, then due pending
// targets, each with UPDATE … WHERE customer_id = ANY(ARRAY(SELECT … LIMIT n
// FOR UPDATE SKIP LOCKED)), which walks the partial index of its state and
// never waits for, or takes, a row another claimer holds. "Now" is
// coalesce($clock, now()): Options.Clock when set, else the database clock.
func (s *Store) TargetClaim(ctx context.Context, p *store.TargetClaimParams) ([]*store.Target, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := s.clockParam()
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
			if err := claim(c, `UPDATE targets
				SET claimed_at = coalesce($4::timestamptz, now()), claimed_by = $5, attempts = attempts + 1
				WHERE run_id = $1 AND customer_id = ANY(ARRAY(
					SELECT customer_id FROM targets
					WHERE run_id = $1 AND shard = $2 AND state = 'claimed' AND claimed_at < $6
					ORDER BY claimed_at LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING `+targetColumns, p.RunID, p.Shard, p.Limit, now, p.Token, p.StaleBefore.UTC()); err != nil {
				return err
			}
		}
		if left := p.Limit - len(out); left > 0 {
			return claim(c, `UPDATE targets
				SET state = 'claimed', claimed_at = coalesce($4::timestamptz, now()), claimed_by = $5, attempts = attempts + 1
				WHERE run_id = $1 AND customer_id = ANY(ARRAY(
					SELECT customer_id FROM targets
					WHERE run_id = $1 AND shard = $2 AND state = 'pending'
					  AND (not_before IS NULL OR not_before <= coalesce($4::timestamptz, now()))
					ORDER BY not_before NULLS FIRST, customer_id LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING `+targetColumns, p.RunID, p.Shard, left, now, p.Token)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim targets of run %s shard %d: %w", p.RunID, p.Shard, err)
	}
	return out, nil
}

// holder is the compare-and-set condition of a record: with a token, only
// targets still claimed by it; without, pending or claimed ones. $token is
// the parameter holding the token.
func holder(alias, token string) string {
	return `(` + alias + `state IN ('pending', 'claimed') AND (` + token + ` = '' OR (` +
		alias + `state = 'claimed' AND ` + alias + `claimed_by = ` + token + `)))`
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
			WHERE run_id = $1 AND customer_id = ANY($2::text[]) AND `+holder("", "$4::text"),
			p.RunID, p.CustomerIDs, s.opts.Now(), p.Token)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record sent targets of run %s: %w", p.RunID, err)
	}
	return n, nil
}

// voidTransitioned is the tail of a record that voids the ledger entries
// of the targets it moved to failed or skipped (the CTE "moved"), in the
// same statement, when the run wrote entries of its own (before migration
// 0003; a later run's entries are its targets, voided with them); it
// returns how many targets moved.
const voidTransitioned = `, voided AS (
		UPDATE contacts c SET void = true FROM moved
		WHERE ` + sqlshared.OwnEntries + ` AND moved.state IN ('failed', 'skipped') AND NOT c.void
		  AND c.channel = (SELECT channel FROM runs WHERE run_id = $1)
		  AND c.run_id = $1 AND c.customer_id = moved.customer_id)
	SELECT count(*) FROM moved`

// TargetSetFailed implements store.Store.
func (s *Store) TargetSetFailed(ctx context.Context, p *store.TargetSetFailedParams) (int64, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if len(p.Failures) == 0 {
		return 0, nil
	}
	ids, errs, retry := make([]string, len(p.Failures)), make([]string, len(p.Failures)), make([]bool, len(p.Failures))
	notBefore := make([]pgtype.Timestamptz, len(p.Failures))
	for i, f := range p.Failures {
		ids[i], errs[i], retry[i], notBefore[i] = f.CustomerID, f.Error, f.Retryable, nullTime(f.NotBefore)
	}
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `WITH moved AS (
				UPDATE targets t
				SET state = CASE WHEN u.retry THEN 'pending' ELSE 'failed' END, last_error = u.err,
					not_before = CASE WHEN u.retry THEN u.not_before END, claimed_at = NULL, claimed_by = ''
				FROM unnest($2::text[], $3::text[], $4::bool[], $5::timestamptz[]) AS u(customer_id, err, retry, not_before)
				WHERE t.run_id = $1 AND t.customer_id = u.customer_id AND `+holder("t.", "$6::text")+`
				RETURNING t.customer_id, t.state)`+voidTransitioned,
			p.RunID, ids, errs, retry, notBefore, p.Token).Scan(&n)
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
		return c.QueryRow(ctx, `WITH moved AS (
				UPDATE targets t SET state = 'skipped', reason = u.reason, not_before = NULL, claimed_at = NULL, claimed_by = ''
				FROM unnest($2::text[], $3::text[]) AS u(customer_id, reason)
				WHERE t.run_id = $1 AND t.customer_id = u.customer_id AND `+holder("t.", "$4::text")+`
				RETURNING t.customer_id, t.state)`+voidTransitioned,
			p.RunID, ids, reasons, p.Token).Scan(&n)
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
	var t store.Target
	return s.stream(ctx, "scan targets of run "+p.RunID,
		func(rows pgx.Rows) error { return scanTarget(rows, &t) },
		func() error { return fn(&t) },
		"SELECT "+targetColumns+` FROM targets
			WHERE run_id = $1 AND ($2 = '' OR state = $2) ORDER BY customer_id`, p.RunID, string(p.State))
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
				WHERE t2.converted_at IS NULL AND t2.grp IN ('treatment', 'holdout')
				  AND r.reference_at IS NOT NULL AND u.at >= r.reference_at
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

// TargetWaiting implements store.Store.
func (s *Store) TargetWaiting(ctx context.Context, p *store.TargetWaitingParams) (*store.TargetWaiting, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var pending, noNotBefore, claimed int64
	var notBefore, claimedAt *time.Time
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, sqlshared.TargetWaiting, p.RunID, p.Shard, p.Token, p.ClaimedBefore.UTC()).
			Scan(&pending, &noNotBefore, &notBefore, &claimed, &claimedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("targets waiting in run %s shard %d: %w", p.RunID, p.Shard, err)
	}
	return sqlshared.Waiting(pending, noNotBefore, utcOrZero(notBefore), claimed, utcOrZero(claimedAt)), nil
}

// utcOrZero is *t in UTC, or the zero time for NULL.
func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
