// Package sqlshared holds the SQL that is the same text in both drivers,
// and the Go that folds its results, so that a tally, the contact ledger,
// holdout assignments and the frequency cap are written once.
//
// A materialized run writes its targets and nothing else: while it is
// stored, its treatment targets are its contact ledger entries and its
// eligible targets its holdout assignments (runs.materialized_at and
// materialized_seq mark such a run; migration 0003). What counts a
// contact or reads a recorded group reads both the records that outlive
// runs (contacts, holdout_assignments) and the targets of the stored
// materialized runs; RunDelete moves a run's entries and assignments into
// those records (LedgerKeep, HoldoutKeep) in the transaction that deletes
// its targets, so a reader sees them in one place or the other, never in
// both nor in neither. Runs materialized before 0003 wrote their entries
// and assignments to the records already and carry no mark.
//
// Ghost contacts (migration 0005) follow the same pattern: while a run is
// stored, its holdout targets are its ghosts (the contacts its holdout
// would have had, counted against the frequency cap of its own campaign's
// later runs on its channel only); RunDelete moves them into
// ghost_contacts (GhostKeep). A run materialized before 0003 has none.
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
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

// RunTally counts one run's targets, one row per (group, variant, state,
// reason): targets, conversions, revenue and the pending targets deferred
// to a not-before time still to come. $1 run id; now is the driver's
// expression of the store's time ($2).
func RunTally(now string) string {
	return `SELECT grp, variant, state, reason, count(*), count(converted_at), coalesce(sum(revenue), 0), ` + deferred("", now) + `
	FROM targets WHERE run_id = $1 GROUP BY grp, variant, state, reason`
}

// Deferred is 1 for a new target that is pending with a not-before time
// after now (what the tally queries count), else 0: for the tallies counted
// while a materialization streams.
func Deferred(t *store.NewTarget, now time.Time) int64 {
	if t.State == store.StatePending && t.NotBefore.After(now) {
		return 1
	}
	return 0
}

// deferred counts the pending targets of alias whose not_before is after now.
func deferred(alias, now string) string {
	return `coalesce(sum(CASE WHEN ` + alias + `state = 'pending' AND ` + alias + `not_before > ` + now + ` THEN 1 ELSE 0 END), 0)`
}

// CampaignTally counts a campaign's targets: the folded tallies of its
// deleted runs and the targets of its stored runs, one row per (group,
// state, reason) and part, with the columns of RunTally (variant empty);
// the caller adds them up. $1 campaign UID, $2 the store's time (now).
func CampaignTally(now string) string {
	return `SELECT grp, '' AS variant, state, reason, n, converted, revenue, 0 FROM campaign_tallies WHERE campaign_uid = $1
	UNION ALL
	SELECT t.grp, '', t.state, t.reason, count(*), count(t.converted_at), coalesce(sum(t.revenue), 0), ` + deferred("t.", now) + `
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE r.campaign_uid = $1
	GROUP BY t.grp, t.state, t.reason`
}

// FoldTally adds a run's tally to its campaign's cumulative tally, before
// the run is deleted (in the same transaction). Runs without a campaign
// UID have no cumulative tally. $1 run id.
const FoldTally = `INSERT INTO campaign_tallies (campaign_uid, grp, state, reason, n, converted, revenue)
	SELECT r.campaign_uid, t.grp, t.state, t.reason, count(*), count(t.converted_at), coalesce(sum(t.revenue), 0)
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE t.run_id = $1 AND r.campaign_uid <> ''
	GROUP BY r.campaign_uid, t.grp, t.state, t.reason
	ON CONFLICT (campaign_uid, grp, state, reason) DO UPDATE
	SET n = campaign_tallies.n + excluded.n, converted = campaign_tallies.converted + excluded.converted,
	revenue = campaign_tallies.revenue + excluded.revenue`

// measuredRun is the condition on a run r that it is measured: sent (it
// has a reference time), no dry run, of a campaign.
const measuredRun = `r.campaign_uid <> '' AND r.reference_at IS NOT NULL AND NOT r.dry_run AND t.grp IN ('treatment', 'holdout')`

// KeepStrata keeps a measured run's two groups as a stratum of its
// campaign, before the run is deleted (in the same transaction). $1 run id.
const KeepStrata = `INSERT INTO run_strata (campaign_uid, run_id, reference_at, final, grp, assigned, converted, revenue)
	SELECT r.campaign_uid, r.run_id, r.reference_at, r.phase = 'Succeeded', t.grp, count(*), count(t.converted_at), coalesce(sum(t.revenue), 0)
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE t.run_id = $1 AND ` + measuredRun + `
	GROUP BY r.campaign_uid, r.run_id, r.reference_at, r.phase, t.grp
	ON CONFLICT (campaign_uid, run_id, grp) DO NOTHING`

// CampaignStrata lists a campaign's strata, one row per (run, group): the
// kept ones of deleted runs and those of its stored measured runs, by
// reference time. $1 campaign UID.
const CampaignStrata = `SELECT run_id, reference_at, final, grp, assigned, converted, revenue FROM run_strata WHERE campaign_uid = $1
	UNION ALL
	SELECT r.run_id, r.reference_at, r.phase = 'Succeeded', t.grp, count(*), count(t.converted_at), coalesce(sum(t.revenue), 0)
	FROM targets t JOIN runs r ON r.run_id = t.run_id
	WHERE r.campaign_uid = $1 AND ` + measuredRun + `
	GROUP BY r.run_id, r.reference_at, r.phase, t.grp
	ORDER BY 2, 1, 4`

// AddStratum adds one row of CampaignStrata to strata (ordered by run).
func AddStratum(strata []store.RunStratum, runID string, referenceAt time.Time, final bool, grp string, assigned, converted int64, revenue float64) []store.RunStratum {
	if n := len(strata); n == 0 || strata[n-1].RunID != runID {
		strata = append(strata, store.RunStratum{RunID: runID, ReferenceAt: referenceAt.UTC(), Final: final})
	}
	s := &strata[len(strata)-1]
	g := &s.Holdout
	if store.TargetGroup(grp) == store.GroupTreatment {
		g = &s.Treatment
	}
	*g = store.StratumGroup{Assigned: assigned, Converted: converted, Revenue: revenue}
	return strata
}

// MeasuredTarget selects what RunMeasure passes to Measure: the run's
// treatment and holdout targets joined with their snapshot records, in no
// particular order. $1 run id; the snapshot table is the caller's.
func MeasuredTarget(snapshotTable string) string {
	return `SELECT t.customer_id, t.grp, t.base_transactions, t.base_spend, t.base_last_purchase, t.converted_at, t.revenue, s.data
	FROM targets t JOIN ` + snapshotTable + ` s ON s.customer_id = t.customer_id
	WHERE t.run_id = $1 AND t.grp IN ('treatment', 'holdout')`
}

// CountMeasurable counts a run's treatment and holdout targets. $1 run id.
const CountMeasurable = `SELECT count(*) FROM targets WHERE run_id = $1 AND grp IN ('treatment', 'holdout')`

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

// MarkMaterialized ends a materialization: the run becomes Materialized,
// stamped with the time of its ledger entries and numbered after every
// run of its campaign materialized before it (the order in which their
// groups were recorded: the callers serialize the materializations of a
// campaign). $1 run id, $2 time.
const MarkMaterialized = `UPDATE runs SET phase = 'Materialized', materialized_at = $2,
	source = coalesce((SELECT s.source FROM snapshots s WHERE s.id = runs.snapshot_id), ''),
	materialized_seq = (SELECT coalesce(max(p.materialized_seq), 0) + 1 FROM runs p WHERE p.campaign_uid = runs.campaign_uid)
	WHERE run_id = $1`

// liveEntry is the condition on a target t of a materialized run r that
// its ledger entry is live: a treatment target not failed or skipped (so
// pending, claimed or sent) of a run that is not a dry run. The other
// treatment targets' entries are void.
const liveEntry = `t.grp = 'treatment' AND t.state IN ('pending', 'claimed', 'sent') AND NOT r.dry_run`

// liveGhost is the condition on a target t of a materialized run r that
// it is a live ghost contact: a holdout target of a run of a campaign that
// is not a dry run (which records no contacts, real or ghost) and whose
// ghosts RunCancel did not void (it contacted nobody: VoidGhosts). A ghost
// is at its run's materialization, the time of the run's ledger entries
// (LedgerKeep, runEntries): a holdout customer's ghost falls in exactly the
// cap windows that a treatment customer's real contact of the same run
// falls in. The run's scheduled time would not do: a run materialized
// after its slot (a late or retried reconcile, an ad-hoc run) would put
// the two on either side of a window's start.
const liveGhost = `t.grp = 'holdout' AND r.campaign_uid <> '' AND NOT r.dry_run AND NOT r.ghosts_void`

// runEntries are the live ledger entries (customer ids) of the stored
// materialized runs on channel $1 since time $since.
func runEntries(channel, since string) string {
	return `SELECT t.customer_id FROM runs r JOIN targets t ON t.run_id = r.run_id
		WHERE r.channel = ` + channel + ` AND r.materialized_at >= ` + since + ` AND ` + liveEntry
}

// runCapEntries are what a materialization of campaign $campaign counts
// against its cap from the stored materialized runs on channel $channel
// since time $since: every run's live ledger entries and the campaign's
// own runs' live ghosts, in one pass over each run's targets (the same
// rows runEntries reads: ghosts add no read to the cap join).
func runCapEntries(channel, campaign, since string) string {
	return `SELECT t.customer_id FROM runs r JOIN targets t ON t.run_id = r.run_id
		WHERE r.channel = ` + channel + ` AND r.materialized_at >= ` + since + `
		  AND ((` + liveEntry + `) OR (` + liveGhost + ` AND r.campaign_uid = ` + campaign + `))`
}

// runGroups are the holdout assignments the stored materialized runs of
// campaign $campaign recorded, one row (customer_id, grp) per customer:
// the group of its eligible target in the first of them, by
// materialization order (materialized_seq*2 + 1 for holdout: the least is
// the first run's, its parity the group). filter adds conditions on t.
func runGroups(campaign, filter string) string {
	return `SELECT t.customer_id,
			CASE min(r.materialized_seq * 2 + CASE WHEN t.grp = 'holdout' THEN 1 ELSE 0 END) % 2
				WHEN 1 THEN 'holdout' ELSE 'treatment' END AS grp
		FROM runs r JOIN targets t ON t.run_id = r.run_id
		WHERE r.campaign_uid = ` + campaign + ` AND r.campaign_uid <> '' AND r.materialized_seq IS NOT NULL
		  AND t.grp IN ('treatment', 'holdout')` + filter + `
		GROUP BY t.customer_id`
}

// LedgerKeep copies the ledger entries of a materialized run into
// contacts before the run is deleted (in the same transaction): one per
// treatment target, at the run's materialization, void unless live. A run
// materialized before migration 0003 has its entries there already. $1
// run id.
const LedgerKeep = `INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void, source)
	SELECT r.channel, t.customer_id, r.campaign, r.run_id, r.materialized_at, NOT (` + liveEntry + `), r.source
	FROM runs r JOIN targets t ON t.run_id = r.run_id
	WHERE r.run_id = $1 AND r.materialized_at IS NOT NULL AND t.grp = 'treatment'`

// GhostKeep copies the live ghost contacts of a materialized run into
// ghost_contacts before the run is deleted (in the same transaction): one
// per holdout target, at the run's materialization. Void ghosts are not
// kept: nothing counts them, and nothing can make them live once the run
// is gone. $1 run id.
const GhostKeep = `INSERT INTO ghost_contacts (campaign_uid, channel, customer_id, run_id, at, source)
	SELECT r.campaign_uid, r.channel, t.customer_id, r.run_id, r.materialized_at, r.source
	FROM runs r JOIN targets t ON t.run_id = r.run_id
	WHERE r.run_id = $1 AND r.materialized_at IS NOT NULL AND ` + liveGhost

// HoldoutKeep copies the holdout assignments a materialized run recorded
// into holdout_assignments before the run is deleted (in the same
// transaction): the group of each of its eligible targets whose customer
// has none recorded, neither in holdout_assignments nor by a stored run of
// the campaign materialized before it (that run's group is the recorded
// one, and it will be copied when that run is deleted). A recorded
// assignment is never changed. $1 run id.
const HoldoutKeep = `INSERT INTO holdout_assignments (campaign_uid, customer_id, grp, source)
	SELECT r.campaign_uid, t.customer_id, t.grp, r.source
	FROM runs r JOIN targets t ON t.run_id = r.run_id
	WHERE r.run_id = $1 AND r.materialized_seq IS NOT NULL AND r.campaign_uid <> ''
	  AND t.grp IN ('treatment', 'holdout')
	  AND NOT EXISTS (SELECT 1 FROM holdout_assignments h WHERE h.campaign_uid = r.campaign_uid AND h.customer_id = t.customer_id)
	  AND NOT EXISTS (SELECT 1 FROM runs p JOIN targets pt ON pt.run_id = p.run_id
		WHERE p.campaign_uid = r.campaign_uid AND p.materialized_seq < r.materialized_seq
		  AND pt.customer_id = t.customer_id AND pt.grp IN ('treatment', 'holdout'))`

// HoldoutGet returns the recorded groups (customer_id, grp) of listed
// customers of campaign $1: those in holdout_assignments, and those the
// campaign's stored materialized runs recorded for the others. inList
// renders "IN the list of text parameter $2" in the dialect.
func HoldoutGet(inList string) string {
	return `SELECT customer_id, grp FROM holdout_assignments WHERE campaign_uid = $1 AND customer_id ` + inList + `
	UNION ALL
	SELECT g.customer_id, g.grp FROM (` + runGroups("$1", " AND t.customer_id "+inList) + `) g
	WHERE NOT EXISTS (SELECT 1 FROM holdout_assignments h WHERE h.campaign_uid = $1 AND h.customer_id = g.customer_id)`
}

// CancelTargets skips a run's pending targets with reason cancelled.
// $1 run id.
const CancelTargets = `UPDATE targets SET state = 'skipped', reason = 'cancelled', not_before = NULL
	WHERE run_id = $1 AND state = 'pending'`

// VoidGhosts voids the ghost contacts of a materialized run that RunCancel
// ends (after CancelTargets, in the same transaction) when the run
// contacted nobody: no treatment target is left pending, claimed or sent,
// so every ledger entry it had is void, and its holdout would not have
// been contacted either. A run cancelled after some of its treatment was
// claimed or sent keeps its ghosts: its contacts happened, and which
// holdout customers would have been among them cannot be told. $1 run id.
const VoidGhosts = `UPDATE runs SET ghosts_void = true
	WHERE run_id = $1 AND materialized_at IS NOT NULL AND NOT ghosts_void AND NOT EXISTS (
		SELECT 1 FROM targets t WHERE t.run_id = $1 AND t.grp = 'treatment' AND t.state IN ('pending', 'claimed', 'sent'))`

// OwnEntries is the condition that run $1 wrote ledger entries of its
// own, those that the void statements update: a run materialized before
// migration 0003 (a later one's entries are its targets). An uncorrelated
// EXISTS: both databases evaluate it once, and skip the statement when it
// is false.
const OwnEntries = `EXISTS (SELECT 1 FROM runs WHERE run_id = $1 AND materialized_at IS NULL)`

// VoidRun voids the ledger entries of a run whose targets ended failed or
// skipped. $1 run id, $2 the run's channel.
const VoidRun = `UPDATE contacts SET void = true
	WHERE ` + OwnEntries + ` AND channel = $2 AND run_id = $1 AND NOT void AND customer_id IN (
		SELECT customer_id FROM targets WHERE run_id = $1 AND state IN ('failed', 'skipped'))`

// ContactCounts counts the live ledger entries per customer of an
// audience on a channel since a time: those in contacts and those of the
// stored materialized runs; audience is a SELECT of customer ids that may
// use $3. $1 channel, $2 since.
func ContactCounts(audience string) string {
	return `SELECT customer_id, count(*) FROM (
		SELECT customer_id FROM contacts
		WHERE channel = $1 AND at >= $2 AND NOT void AND customer_id IN (` + audience + `)
		UNION ALL
		` + runEntries("$1", "$2") + ` AND t.customer_id IN (` + audience + `)) e
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
// the channel since the cap window's start (in contacts and of the stored
// materialized runs) plus the live ghost contacts of the run's own
// campaign on the channel since then (in ghost_contacts and of its stored
// materialized runs), recorded holdout group (in holdout_assignments, else
// by the campaign's stored materialized runs). Its columns: customer_id,
// data, suppressed, opted_out, contacts, recorded.
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
	b.WriteString(`coalesce(h.grp, rg.grp, '')
	FROM segments g
	JOIN memberships m ON m.segment_id = g.id
	JOIN ` + q.SnapshotTable + ` s ON s.customer_id = m.customer_id
	LEFT JOIN opt_outs o ON o.channel = $3 AND o.customer_id = m.customer_id
	LEFT JOIN holdout_assignments h ON h.campaign_uid = $4 AND h.customer_id = m.customer_id
	LEFT JOIN (` + runGroups("$4", "") + `) rg ON rg.customer_id = m.customer_id`)
	if q.Suppress {
		fmt.Fprintf(&b, `
	LEFT JOIN (SELECT DISTINCT sm.customer_id FROM memberships sm JOIN segments sg ON sg.id = sm.segment_id
		WHERE sg.key %s) sup ON sup.customer_id = m.customer_id`, q.InList(next))
		next++
	}
	if q.Cap {
		since := "$" + strconv.Itoa(next)
		b.WriteString(`
	LEFT JOIN (SELECT customer_id, count(*) AS n FROM (
			SELECT customer_id FROM contacts WHERE channel = $3 AND at >= ` + since + ` AND NOT void
			UNION ALL
			SELECT customer_id FROM ghost_contacts WHERE campaign_uid = $4 AND channel = $3 AND at >= ` + since + `
			UNION ALL
			` + runCapEntries("$3", "$4", since) + `) e
		GROUP BY customer_id) c ON c.customer_id = m.customer_id`)
	}
	b.WriteString(`
	WHERE g.key = $1 AND m.entered_snapshot >= $2`)
	return b.String()
}

// NewTally returns an empty run tally, with variants.
func NewTally() *store.RunTally {
	return &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}, Variants: map[store.TargetGroup]map[string]*store.GroupTally{}}
}

// NewCampaignTally returns an empty campaign tally: groups only.
func NewCampaignTally() *store.RunTally {
	return &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}}
}

// AddTally adds one row of RunTally or CampaignTally to t: to its group,
// and to its variant's tally when t keeps variants (Variants not nil) and
// the group is treatment or holdout.
func AddTally(t *store.RunTally, grp, variant, state, reason string, n, converted int64, revenue float64, deferred int64) {
	g := store.TargetGroup(grp)
	addGroup(t.Groups, g, state, reason, n, converted, revenue, deferred)
	if t.Variants == nil || (g != store.GroupTreatment && g != store.GroupHoldout) {
		return
	}
	vs := t.Variants[g]
	if vs == nil {
		vs = map[string]*store.GroupTally{}
		t.Variants[g] = vs
	}
	addGroup(vs, variant, state, reason, n, converted, revenue, deferred)
}

func addGroup[K comparable](m map[K]*store.GroupTally, key K, state, reason string, n, converted int64, revenue float64, deferred int64) {
	g := m[key]
	if g == nil {
		g = &store.GroupTally{ByState: map[store.TargetState]int64{}, SkippedByReason: map[string]int64{}}
		m[key] = g
	}
	g.Total += n
	g.ByState[store.TargetState(state)] += n
	if store.TargetState(state) == store.StateSkipped {
		g.SkippedByReason[reason] += n
	}
	g.Converted += converted
	g.Revenue += revenue
	g.Deferred += deferred
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

// TargetWaiting reads what is left in one shard for a runner
// (store.TargetWaiting), over the pending and claimed partial indexes: the
// pending targets, how many of them have no not-before, the earliest
// not-before, and the claims of other runners ($3 is the asker's token)
// made before $4, with the earliest. $1 run, $2 shard.
const TargetWaiting = `SELECT
	(SELECT count(*) FROM targets WHERE run_id = $1 AND shard = $2 AND state = 'pending'),
	(SELECT count(*) FROM targets WHERE run_id = $1 AND shard = $2 AND state = 'pending' AND not_before IS NULL),
	(SELECT min(not_before) FROM targets WHERE run_id = $1 AND shard = $2 AND state = 'pending'),
	(SELECT count(*) FROM targets WHERE run_id = $1 AND shard = $2 AND state = 'claimed' AND claimed_by <> $3 AND claimed_at < $4),
	(SELECT min(claimed_at) FROM targets WHERE run_id = $1 AND shard = $2 AND state = 'claimed' AND claimed_by <> $3 AND claimed_at < $4)`

// Waiting builds a store.TargetWaiting from TargetWaiting's columns, the
// times already decoded by the driver (zero for NULL).
func Waiting(pending, noNotBefore int64, earliestNotBefore time.Time, claimed int64, earliestClaim time.Time) *store.TargetWaiting {
	w := &store.TargetWaiting{Pending: pending, Claimed: claimed, EarliestClaim: earliestClaim}
	if noNotBefore == 0 {
		w.EarliestNotBefore = earliestNotBefore
	}
	return w
}

// Measurement collects what RunMeasure writes: the targets whose
// conversion or revenue Measure changed.
type Measurement struct {
	Result store.RunMeasureResult
	// IDs, ConvertedAt (zero: no new conversion) and Revenue are parallel.
	IDs         []string
	ConvertedAt []time.Time
	Revenue     []float64
}

// Add records Measure's verdict v on the target b.
func (m *Measurement) Add(b *store.Baseline, v store.Measured) {
	m.Result.Measured++
	converts := b.ConvertedAt.IsZero() && !v.ConvertedAt.IsZero()
	revenue := b.Revenue
	if v.SetRevenue && v.Revenue != b.Revenue {
		revenue = v.Revenue
		m.Result.Updated++
	}
	if !converts && revenue == b.Revenue {
		return
	}
	var at time.Time
	if converts {
		at = v.ConvertedAt.UTC()
		m.Result.Converted++
	}
	m.IDs = append(m.IDs, b.CustomerID)
	m.ConvertedAt = append(m.ConvertedAt, at)
	m.Revenue = append(m.Revenue, revenue)
}

// MarkMeasured records a run's last measured snapshot. $1 run id, $2
// snapshot id, $3 time.
const MarkMeasured = `UPDATE runs SET measured_snapshot = $2, measured_at = $3 WHERE run_id = $1 AND measured_snapshot < $2`

// SnapshotState reads a snapshot's source, state and layout. $1 snapshot id.
const SnapshotState = `SELECT source, state, layout FROM snapshots WHERE id = $1`

// SnapshotRow is a row of SnapshotState; Found is false when there was none.
type SnapshotRow struct {
	Found         bool
	Source, State string
	Layout        int
}

// CheckMeasurable says whether a run can be measured against a snapshot
// (snap, read with SnapshotState; layout is the layout the driver reads):
// ErrNotFound for a snapshot that is not committed; ErrInvalid when the
// run has no source or another one; skip when the run is not measured (no
// reference time, a dry run) or the snapshot is not newer than its last
// measured one; an error for a layout the driver cannot read.
func CheckMeasurable(run *store.Run, snapshotID int64, snap SnapshotRow, layout int) (skip bool, err error) {
	if !snap.Found || snap.State != "committed" {
		return false, fmt.Errorf("snapshot %d: %w", snapshotID, store.ErrNotFound)
	}
	if run.ReferenceAt.IsZero() || run.DryRun || snapshotID <= run.MeasuredSnapshot {
		return true, nil
	}
	if run.Source == "" || run.Source != snap.Source {
		return false, fmt.Errorf("snapshot %d is of source %q, the run's is %q: %w", snapshotID, snap.Source, run.Source, store.ErrInvalid)
	}
	if snap.Layout != layout {
		return false, fmt.Errorf("snapshot layout %d is not known to this program", snap.Layout)
	}
	return false, nil
}

// The statements of MembershipClone: whether to exists ($1 to), the
// segment row (at version 1), then its members ($1 from, $2 to).
const (
	MembershipCloneExists  = `SELECT count(*) FROM segments WHERE key = $1`
	MembershipCloneSegment = `INSERT INTO segments (key, snapshot_id, size, updated_at, version)
	SELECT $2, snapshot_id, size, updated_at, 1 FROM segments WHERE key = $1`
	MembershipCloneMembers = `INSERT INTO memberships (segment_id, customer_id, entered_at, entered_snapshot)
	SELECT t.id, m.customer_id, m.entered_at, m.entered_snapshot
	FROM segments f JOIN memberships m ON m.segment_id = f.id JOIN segments t ON t.key = $2
	WHERE f.key = $1`
)
