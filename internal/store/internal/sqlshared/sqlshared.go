// Package sqlshared holds the SQL that is the same text in both drivers,
// and the Go that folds its results, so that a tally, the contact ledger,
// holdout assignments and the frequency cap are written once.
//
// Placeholders are $n. PostgreSQL reads them as its own; SQLite reads $n as
// a parameter named "$n", and modernc.org/sqlite binds the parameter named
// $n to the n-th argument (sqlshared_test.go checks it). Literals true and
// false are booleans on PostgreSQL and the integers 1 and 0 on SQLite,
// which stores booleans as integers. Times travel as parameters: timestamptz
// on PostgreSQL, Unix microseconds on SQLite; both orders agree.
//
// What truly differs stays in the drivers: arrays (PostgreSQL's
// ANY($n::text[]) and unnest against SQLite's json_each), claims (FOR
// UPDATE SKIP LOCKED against one BEGIN IMMEDIATE transaction) and bulk
// writes (COPY against multi-row INSERT).
package sqlshared

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/retention-dev/retention-operator/internal/store"
)

// RunTally counts one run's targets. $1 run id.
const RunTally = `SELECT grp, state, reason, count(*), count(converted_at)
	FROM targets WHERE run_id = $1 GROUP BY grp, state, reason`

// CampaignTally counts a campaign's targets: the folded tallies of its
// deleted runs and the targets of its stored runs, one row per (group,
// state, reason) and part; the caller adds them up. $1 campaign UID.
const CampaignTally = `SELECT grp, state, reason, n, converted FROM campaign_tallies WHERE campaign_uid = $1
	UNION ALL
	SELECT t.grp, t.state, t.reason, count(*), count(t.converted_at)
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE r.campaign_uid = $1
	GROUP BY t.grp, t.state, t.reason`

// FoldTally adds a run's tally to its campaign's cumulative tally, before
// the run is deleted (in the same transaction). Runs without a campaign
// UID have no cumulative tally. $1 run id.
const FoldTally = `INSERT INTO campaign_tallies (campaign_uid, grp, state, reason, n, converted)
	SELECT r.campaign_uid, t.grp, t.state, t.reason, count(*), count(t.converted_at)
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE t.run_id = $1 AND r.campaign_uid <> ''
	GROUP BY r.campaign_uid, t.grp, t.state, t.reason
	ON CONFLICT (campaign_uid, grp, state, reason) DO UPDATE
	SET n = campaign_tallies.n + excluded.n, converted = campaign_tallies.converted + excluded.converted`

// OverMax excludes the eligible targets of a run beyond the first $2 by
// expected value (highest first, ties by customer id) with reason
// over_max. $1 run id, $2 MaxPerRun, $3 a limit above any run's size
// (SQLite needs a LIMIT before an OFFSET; PostgreSQL refuses a negative one).
const OverMax = `UPDATE targets SET grp = 'excluded', state = 'skipped', reason = 'over_max', not_before = NULL
	WHERE run_id = $1 AND customer_id IN (
		SELECT customer_id FROM targets
		WHERE run_id = $1 AND grp IN ('treatment', 'holdout')
		ORDER BY expected_value DESC, customer_id
		LIMIT $3 OFFSET $2)`

// NoLimit is the $3 of OverMax.
const NoLimit = int64(math.MaxInt64)

// LedgerInsert records one contact ledger entry per treatment target of a
// run. An entry whose target will not be sent (skipped at
// materialization, or any target of a dry run) is void from the start, so
// it is kept for the record but never counted. $1 run id, $2 channel,
// $3 campaign key, $4 time, $5 dry run.
const LedgerInsert = `INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void)
	SELECT $2, customer_id, $3, run_id, $4, (state <> 'pending' OR $5)
	FROM targets WHERE run_id = $1 AND grp = 'treatment'`

// HoldoutInsert records the holdout assignment of every eligible target of
// a run that has none yet; a recorded assignment is never changed. An
// anti-join rather than ON CONFLICT DO NOTHING, whose speculative insertion
// made this statement 1.7 times slower on PostgreSQL: the callers serialize
// the materializations of one campaign instead (an advisory lock on
// PostgreSQL, the write lock on SQLite). $1 run id, $2 campaign UID.
const HoldoutInsert = `INSERT INTO holdout_assignments (campaign_uid, customer_id, grp)
	SELECT $2, t.customer_id, t.grp FROM targets t
	WHERE t.run_id = $1 AND t.grp IN ('treatment', 'holdout')
	  AND NOT EXISTS (SELECT 1 FROM holdout_assignments h WHERE h.campaign_uid = $2 AND h.customer_id = t.customer_id)`

// CancelTargets skips a run's pending targets with reason cancelled.
// $1 run id.
const CancelTargets = `UPDATE targets SET state = 'skipped', reason = 'cancelled', not_before = NULL
	WHERE run_id = $1 AND state = 'pending'`

// VoidRun voids the ledger entries of a run whose targets ended failed or
// skipped. $1 run id, $2 the run's channel.
const VoidRun = `UPDATE contacts SET void = true
	WHERE channel = $2 AND run_id = $1 AND NOT void AND customer_id IN (
		SELECT customer_id FROM targets WHERE run_id = $1 AND state IN ('failed', 'skipped'))`

// ContactCounts counts the live ledger entries per customer of an
// audience on a channel since a time; audience is a SELECT of customer
// ids that may use $3. $1 channel, $2 since.
func ContactCounts(audience string) string {
	return `SELECT customer_id, count(*) FROM contacts
	WHERE channel = $1 AND at >= $2 AND NOT void AND customer_id IN (` + audience + `)
	GROUP BY customer_id`
}

// Audiences of ContactCounts that are the same in both dialects ($3 run id
// or segment key).
const (
	AudienceOfRun     = `SELECT customer_id FROM targets WHERE run_id = $3`
	AudienceOfSegment = `SELECT m.customer_id FROM memberships m JOIN segments g ON g.id = m.segment_id WHERE g.key = $3`
)

// AudienceQuery is the read of RunMaterialize: a segment's members joined
// with their records in a snapshot table and, per member, set-based: in a
// suppression segment, opted out on the channel, live ledger entries on
// the channel since the cap window's start, recorded holdout group. Its
// columns: customer_id, data, suppressed, opted_out, contacts, recorded.
type AudienceQuery struct {
	// SnapshotTable is the quoted name of the snapshot's table.
	SnapshotTable string
	// Suppress and Cap add the suppression and cap joins (and their
	// parameters, in that order after the first four).
	Suppress, Cap bool
	// InList renders "IN the list of text parameter $n" in the dialect.
	InList func(n int) string
}

// SQL returns the query. Parameters: $1 segment key, $2 entered-since
// snapshot, $3 channel, $4 campaign UID, then the suppression segment
// list if Suppress, then the cap window's start if Cap.
func (q AudienceQuery) SQL() string {
	var b strings.Builder
	next := 5
	b.WriteString(`SELECT s.customer_id, s.data, `)
	if q.Suppress {
		b.WriteString(`sup.customer_id IS NOT NULL, `)
	} else {
		b.WriteString(`false, `)
	}
	b.WriteString(`o.customer_id IS NOT NULL, `)
	if q.Cap {
		b.WriteString(`coalesce(c.n, 0), `)
	} else {
		b.WriteString(`CAST(0 AS bigint), `)
	}
	b.WriteString(`coalesce(h.grp, '')
	FROM segments g
	JOIN memberships m ON m.segment_id = g.id
	JOIN ` + q.SnapshotTable + ` s ON s.customer_id = m.customer_id
	LEFT JOIN opt_outs o ON o.channel = $3 AND o.customer_id = m.customer_id
	LEFT JOIN holdout_assignments h ON h.campaign_uid = $4 AND h.customer_id = m.customer_id`)
	if q.Suppress {
		fmt.Fprintf(&b, `
	LEFT JOIN (SELECT DISTINCT sm.customer_id FROM memberships sm JOIN segments sg ON sg.id = sm.segment_id
		WHERE sg.key %s) sup ON sup.customer_id = m.customer_id`, q.InList(next))
		next++
	}
	if q.Cap {
		b.WriteString(`
	LEFT JOIN (SELECT customer_id, count(*) AS n FROM contacts
		WHERE channel = $3 AND at >= $` + strconv.Itoa(next) + ` AND NOT void GROUP BY customer_id) c ON c.customer_id = m.customer_id`)
	}
	b.WriteString(`
	WHERE g.key = $1 AND m.entered_snapshot >= $2`)
	return b.String()
}

// NewTally returns an empty tally.
func NewTally() *store.RunTally {
	return &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}}
}

// AddTally adds one row of RunTally or CampaignTally to t.
func AddTally(t *store.RunTally, grp, state, reason string, n, converted int64) {
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

// FieldsJSON encodes a target's template fields as stored: nil (SQL NULL)
// when there are none.
func FieldsJSON(customerID string, fields map[string]any) ([]byte, error) {
	if len(fields) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("target %s: encode fields: %w (%w)", customerID, err, store.ErrInvalid)
	}
	return b, nil
}

// DecodeFields decodes stored template fields (nil or empty: none).
func DecodeFields(b []byte) (map[string]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode fields: %w", err)
	}
	return m, nil
}

// SchemaError is the error of an Open with NoMigrate on a database whose
// schema version is not the driver's latest.
func SchemaError(found, need int) error {
	hint := "start the operator, which migrates"
	if found > need {
		hint = "upgrade this program"
	}
	return fmt.Errorf("%w: store schema is at version %d; this binary needs version %d: %s", store.ErrSchema, found, need, hint)
}
