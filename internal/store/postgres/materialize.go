package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/internal/codec"
	"github.com/retention-dev/retention-operator/internal/store/internal/sqlshared"
)

// Materializations take two transaction-level advisory locks, (class,
// hashtext(key)): the channel's, which serializes them per channel so that
// a frequency cap reads every contact planned before it (and every ghost
// contact it counts: those of its campaign on its channel), then the
// campaign's, which serializes the holdout assignments of one campaign
// (its runs may be on several channels) and so the order of its runs'
// materialized_seq. Nothing waits for a channel lock
// while holding a campaign lock, so they cannot deadlock. The two-key
// space does not overlap the one-key space of the migration lock.
const (
	channelLockClass  int32 = 0x6d617465 // "mate"
	campaignLockClass int32 = 0x63616d70 // "camp"
)

// targetCopyColumns are the columns RunMaterialize copies, in row order.
var targetCopyColumns = []string{"run_id", "customer_id", "grp", "variant", "shard", "state", "reason", "not_before",
	"address", "locale", "time_zone", "fields", "base_transactions", "base_spend", "base_last_purchase", "expected_value"}

// RunMaterialize implements store.Store. In one transaction on one
// connection: the channel's and the campaign's advisory locks, the run's
// row lock, a binary COPY of the targets, a set-based statement for
// MaxPerRun, and the run's row marked materialized: its targets are its
// ledger entries and holdout assignments (see sqlshared), nothing else is
// written. The COPY is fed by the audience query, which runs on a second
// connection started after the locks were taken (so it sees every run
// materialized before, and every entry committed before), and streamed:
// Plan runs while the previous rows travel to the server. The tally is
// counted while the targets stream (a GROUP BY of a million rows costs a
// quarter second), unless MaxPerRun moved some.
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
	err = func() error {
		wc, rc, err := s.pool.acquirePair(ctx)
		if err != nil {
			return err
		}
		defer s.pool.releasePair(wc, rc)
		return pgx.BeginFunc(ctx, wc, func(tx pgx.Tx) error {
			var err error
			tally, planErr, err = s.materialize(ctx, tx, rc, p, run)
			return err
		})
	}()
	if planErr != nil {
		return nil, fmt.Errorf("materialize run %s: %w", p.RunID, planErr)
	}
	if err != nil {
		switch pgCode(err) {
		case codeUndefinedTable:
			err = fmt.Errorf("snapshot %d: %w", run.SnapshotID, store.ErrNotFound)
		case codeUniqueViolation:
			err = fmt.Errorf("the run already has targets: %w (%w)", err, store.ErrConflict)
		}
		return nil, fmt.Errorf("materialize run %s: %w", p.RunID, err)
	}
	return tally, nil
}

// materialize is RunMaterialize's transaction. planErr is the error of
// Plan or of a target it made, returned as is.
func (s *Store) materialize(ctx context.Context, tx pgx.Tx, rc *pgx.Conn, p *store.RunMaterializeParams, run *store.Run) (tally *store.RunTally, planErr, err error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", channelLockClass, run.Channel); err != nil {
		return nil, nil, fmt.Errorf("lock channel %s: %w", run.Channel, err)
	}
	if run.CampaignUID != "" {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", campaignLockClass, run.CampaignUID); err != nil {
			return nil, nil, fmt.Errorf("lock campaign %s: %w", run.CampaignUID, err)
		}
	}
	cur, err := getRun(ctx, tx, p.RunID, true)
	if err != nil {
		return nil, nil, err
	}
	if cur.Phase != store.PhasePending {
		// Another materialization won.
		tally, err = s.tallyQuery(ctx, tx, sqlshared.RunTally, p.RunID, sqlshared.NewTally())
		return tally, nil, err
	}
	var state, source string
	var layout int
	err = tx.QueryRow(ctx, "SELECT state, layout, source FROM snapshots WHERE id = $1", run.SnapshotID).Scan(&state, &layout, &source)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && state != "committed") {
		return nil, nil, fmt.Errorf("snapshot %d: %w", run.SnapshotID, store.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	// No erasure of the source commits while the audience is read and
	// written: one that came first is in what is read, one that comes
	// after finds the targets.
	if _, err := tx.Exec(ctx, erasureLockShared, source); err != nil {
		return nil, nil, fmt.Errorf("lock erasures of %s: %w", source, err)
	}
	if layout != snapshotLayout {
		return nil, nil, fmt.Errorf("snapshot layout %d is not known to this program", layout)
	}
	now, err := s.storeNow(ctx, tx)
	if err != nil {
		return nil, nil, err
	}

	q := sqlshared.AudienceQuery{
		SnapshotTable: snapshotTable(run.SnapshotID),
		Suppress:      len(p.SuppressSegments) > 0,
		Cap:           !p.CapSince.IsZero(),
		InList:        func(n int) string { return fmt.Sprintf("= ANY($%d::text[])", n) },
	}
	args := []any{run.Segment, p.EnteredSince, run.Channel, run.CampaignUID}
	if q.Suppress {
		args = append(args, p.SuppressSegments)
	}
	if q.Cap {
		args = append(args, p.CapSince.UTC())
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := rc.Query(qctx, q.SQL(), append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}, args...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("read audience: %w", err)
	}
	defer rows.Close()
	src := &audienceSource{rows: rows, p: p, run: run, dec: codec.NewDecoder(), row: make([]any, len(targetCopyColumns)), tally: sqlshared.NewTally(), now: now}
	src.m.Customer = &src.rec
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"targets"}, targetCopyColumns, src)
	if src.planErr != nil {
		return nil, src.planErr, src.planErr
	}
	if src.err != nil {
		return nil, nil, fmt.Errorf("read audience: %w", src.err)
	}
	if err != nil {
		if rerr := rows.Err(); rerr != nil {
			return nil, nil, fmt.Errorf("read audience: %w", rerr)
		}
		return nil, nil, fmt.Errorf("copy targets: %w", err)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read audience: %w", err)
	}

	if p.MaxPerRun > 0 {
		if _, err := tx.Exec(ctx, sqlshared.OverMax, p.RunID, p.MaxPerRun, sqlshared.NoLimit); err != nil {
			return nil, nil, fmt.Errorf("exclude over max: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, sqlshared.MarkMaterialized, p.RunID, now); err != nil {
		return nil, nil, err
	}
	if p.MaxPerRun > 0 {
		tally, err = s.tallyQuery(ctx, tx, sqlshared.RunTally, p.RunID, sqlshared.NewTally())
		return tally, nil, err
	}
	return src.tally, nil, nil
}

// audienceSource is the pgx.CopyFromSource of RunMaterialize: each row of
// the audience query is decoded, planned and turned into a target row.
// pgx calls it from one goroutine of its own.
type audienceSource struct {
	rows pgx.Rows
	p    *store.RunMaterializeParams
	run  *store.Run
	dec  *codec.Decoder
	rec  customer.Scored
	m    store.AudienceMember
	t    store.NewTarget
	row  []any
	// tally counts the targets written, the run's tally unless MaxPerRun
	// moves some.
	tally *store.RunTally
	// now is the store's time, against which a target is deferred.
	now time.Time

	planErr error // Plan's error, or a target Plan made that is invalid
	err     error // a read or decode error
}

func (a *audienceSource) Next() bool {
	if a.planErr != nil || a.err != nil || !a.rows.Next() {
		return false
	}
	v := a.rows.RawValues()
	if len(v) != 6 || len(v[2]) != 1 || len(v[3]) != 1 || len(v[4]) != 8 {
		a.err = errors.New("unexpected audience row shape")
		return false
	}
	a.rec.ID = string(v[0])
	if err := a.dec.Decode(v[1], &a.rec); err != nil {
		a.err = fmt.Errorf("customer %q: %w", a.rec.ID, err)
		return false
	}
	a.m.Suppressed = v[2][0] != 0
	a.m.OptedOut = v[3][0] != 0
	a.m.Contacts = int64(binary.BigEndian.Uint64(v[4]))
	a.m.RecordedGroup = store.TargetGroup(v[5])
	a.t = store.NewTarget{CustomerID: a.rec.ID}
	if err := a.p.Plan(&a.m, &a.t); err != nil {
		a.planErr = fmt.Errorf("plan customer %s: %w", a.rec.ID, err)
		return false
	}
	if a.t.CustomerID != a.rec.ID {
		a.planErr = fmt.Errorf("plan customer %s: target for customer %q: %w", a.rec.ID, a.t.CustomerID, store.ErrInvalid)
		return false
	}
	t, err := a.t.Normalize(a.run.Shards)
	if err != nil {
		a.planErr = err
		return false
	}
	fields, err := sqlshared.FieldsJSON(t.CustomerID, t.Data.Fields)
	if err != nil {
		a.planErr = err
		return false
	}
	sqlshared.AddTally(a.tally, string(t.Group), t.Variant, string(t.State), t.Reason, 1, 0, 0, sqlshared.Deferred(&t, a.now))
	r := a.row
	r[0], r[1], r[2], r[3], r[4], r[5], r[6] = a.p.RunID, t.CustomerID, string(t.Group), t.Variant, t.Shard, string(t.State), t.Reason
	r[7] = nullTime(t.NotBefore)
	r[8], r[9], r[10] = t.Data.Address, t.Data.Locale, t.Data.TimeZone
	if fields != nil {
		r[11] = fields
	} else {
		r[11] = nil
	}
	r[12], r[13], r[14], r[15] = t.Data.BaseTransactions, t.Data.BaseSpend, nullTime(t.Data.BaseLastPurchase), t.Data.ExpectedValue
	return true
}

func (a *audienceSource) Values() ([]any, error) { return a.row, nil }

func (a *audienceSource) Err() error {
	if a.planErr != nil {
		return a.planErr
	}
	if a.err != nil {
		return a.err
	}
	return a.rows.Err()
}
