// Package store is the data plane of the operator: everything kept per
// customer (scored snapshots, segment membership, campaign runs and their
// targets, contact history) lives behind the Store interface, never in
// Kubernetes objects.
//
// There is one interface and two drivers, each in its own package with its
// own embedded, numbered migrations: internal/store/postgres (pgx, for
// clusters) and internal/store/sqlite (modernc.org/sqlite, pure Go, the
// embedded default for local runs). internal/store/storetest is the
// contract suite both drivers run.
//
// Methods take (ctx, *Params) and are named noun+verb. State changes are
// compare-and-set in SQL; "zero rows changed" means another worker won and
// is not an error. Timestamps come from the Clock in Options when it is
// set, so tests drive time. Without one, records are stamped with the
// process clock, while the store's time — claims, stale cut-offs, the
// contact ledger and Now — is the database server's, the one clock every
// process sharing the database sees (SQLite has no server: there it is the
// process clock; its processes share one machine).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"time"

	"github.com/retention-dev/retention-operator/internal/clock"
	"github.com/retention-dev/retention-operator/internal/customer"
)

// Sentinel errors. Drivers wrap them with context; test with errors.Is.
var (
	// ErrNotFound is returned when a snapshot, run or source does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid is returned for parameters that can never work (empty
	// keys, out-of-range shards, unsupported attribute types).
	ErrInvalid = errors.New("store: invalid parameters")
	// ErrConflict is returned when a write would move state backwards, for
	// example applying a segment membership for an older snapshot than the
	// one already applied.
	ErrConflict = errors.New("store: conflict")
	// ErrClosed is returned by a store, writer or scan used after Close.
	ErrClosed = errors.New("store: closed")
	// ErrSchema is returned by Open with NoMigrate when the database's
	// schema version is not the one this binary needs.
	ErrSchema = errors.New("store: schema version mismatch")
	// ErrBaseMoved is returned by an incremental MembershipApply (Changes
	// set) when the stored membership is no longer the one the changes
	// were computed against (its Version differs): nothing changed, and
	// the caller applies the whole membership instead.
	ErrBaseMoved = errors.New("store: membership moved since its base version")
	// ErrUnavailable marks an error caused by the store's database being
	// unreachable (refused or lost connection, server shutting down): a
	// condition to wait out, not a fault of the request. See IsUnavailable.
	ErrUnavailable = errors.New("store: unavailable")
)

// Clock gives the time the store writes into every timestamp it records.
// When Options.Clock is unset, claims and stale cut-offs use the database
// server's clock (several processes share one database; their clocks may
// disagree, the database's is the one they all see).
type Clock = clock.Clock

// RealClock is the wall clock.
type RealClock = clock.Real

// Options configure a store.
type Options struct {
	// Clock stamps every time the store writes. If unset, RealClock stamps
	// records, and the store's time (see Now) is the database's.
	Clock Clock
	// MaxConns bounds the connections the store opens. If unset, 4 on
	// PostgreSQL (a pool_max_conns URL parameter also works) and 4 on
	// SQLite.
	MaxConns int
	// NoMigrate opens the store without applying migrations: the schema
	// must already be at the driver's latest version, or Open fails with
	// ErrSchema naming the version found and the one needed. Outreach
	// runners open the store this way; only the operator migrates.
	NoMigrate bool
}

// Now returns the options' clock reading in UTC, with the precision both
// drivers keep (microseconds).
func (o *Options) Now() time.Time {
	c := o.Clock
	if c == nil {
		c = RealClock{}
	}
	return c.Now().UTC().Truncate(time.Microsecond)
}

// Store is the data-plane store. Implementations are safe for concurrent
// use by many goroutines, and several processes may open the same database
// at once (the operator plus outreach runners). Consumers that need one
// area only can depend on SnapshotStore, MembershipStore or RunStore.
type Store interface {
	SnapshotStore
	MembershipStore
	RunStore
	ErasureStore
	// Close releases the store's connections.
	Close() error
}

// SnapshotStore keeps scored snapshots per customer source.
type SnapshotStore interface {
	// SnapshotWrite starts writing a new scored snapshot for a source. The
	// snapshot becomes the source's current one only when the writer's
	// Commit returns; readers never see part of it, and a writer that is
	// aborted (or whose process dies) leaves the previous one current.
	// ctx governs the whole write, until Commit or Abort; the writer holds
	// one connection until then.
	SnapshotWrite(ctx context.Context, params *SnapshotWriteParams) (SnapshotWriter, error)
	// SnapshotGetCurrent returns the current snapshot of a source, or
	// ErrNotFound when the source has none.
	SnapshotGetCurrent(ctx context.Context, source string) (*Snapshot, error)
	// SnapshotGetByID returns a committed snapshot, or ErrNotFound.
	SnapshotGetByID(ctx context.Context, id int64) (*Snapshot, error)
	// SnapshotList returns a source's committed snapshots, newest first.
	SnapshotList(ctx context.Context, source string) ([]*Snapshot, error)
	// SnapshotScan streams every customer of a snapshot to fn, in no
	// particular order, without loading them all. The *customer.Scored
	// passed to fn, including its Attributes and Scores.Custom maps, is
	// reused for the next customer: copy what you keep (strings are safe to
	// keep). An error from fn stops the scan and is returned as is. A
	// snapshot that does not exist (or was pruned) gives ErrNotFound.
	SnapshotScan(ctx context.Context, params *SnapshotScanParams, fn func(*customer.Scored) error) error
	// SnapshotPrune drops a source's older snapshots, keeping the newest
	// Keep committed ones and always the current one, and removes the
	// leftovers of writers that died (see SnapshotPruneParams). A scan
	// already reading a dropped snapshot finishes undisturbed.
	SnapshotPrune(ctx context.Context, params *SnapshotPruneParams) (*SnapshotPruneResult, error)
	// SnapshotDeleteBySource drops every snapshot of a source and the
	// source itself (a deleted CustomerSource).
	SnapshotDeleteBySource(ctx context.Context, source string) error
}

// MembershipStore keeps segment membership.
type MembershipStore interface {
	// MembershipApply replaces a segment's membership with Members,
	// computing exact entries and exits against the previous membership in
	// one transaction: either all of it applies or none. With Changes set
	// instead, it adds and removes only the customers given, provided the
	// stored membership is still at Changes.BaseVersion (else
	// ErrBaseMoved): the cost follows the change, not the membership.
	MembershipApply(ctx context.Context, params *MembershipApplyParams) (*MembershipDiff, error)
	// MembershipScan streams a segment's members to fn (reused between
	// calls, as in SnapshotScan), optionally only those that entered at or
	// after a snapshot. An unknown segment has no members.
	MembershipScan(ctx context.Context, params *MembershipScanParams, fn func(*Member) error) error
	// MembershipGet returns a segment's membership summary, or ErrNotFound
	// when the segment was never applied.
	MembershipGet(ctx context.Context, segment string) (*Membership, error)
	// MembershipDelete removes a segment and its membership (a deleted
	// Segment). Deleting an unknown segment is not an error.
	MembershipDelete(ctx context.Context, segment string) error
	// MembershipClone copies the membership of segment from (members,
	// snapshot, size) to segment to, which has none, at version 1: the next
	// incremental apply to it (the segment package reads a stored
	// membership back when its baseline does not know the segment) then
	// reports the entries and exits against from's membership — a preview
	// of a rule against a segment's current members. ErrNotFound when from
	// has no membership, ErrInvalid when to has one.
	MembershipClone(ctx context.Context, from, to string) error
}

// RunStore keeps campaign runs, their targets and delivery state, and the
// records that outlive a run: the contact ledger that frequency caps count,
// the ghost contacts of each campaign's holdout that its own caps count too,
// the holdout assignment of each (campaign, customer), the opt-out list and
// each campaign's cumulative tally. While a materialized run is stored, its
// targets are its ledger entries, ghost contacts and holdout assignments
// (nothing else records them twice); RunDelete moves them to the records
// that outlive it.
type RunStore interface {
	// RunCreate records a campaign run, frozen. It is idempotent on RunID:
	// when the run exists, the stored record is returned unchanged.
	RunCreate(ctx context.Context, params *RunCreateParams) (*Run, error)
	// RunGet returns a run, or ErrNotFound.
	RunGet(ctx context.Context, runID string) (*Run, error)
	// RunSetPhase moves a run to another phase, compare-and-set: only from
	// one of From (any phase when From is empty). It returns false, and no
	// error, when the run was in another phase; ErrNotFound when there is
	// no such run. ReferenceAt, when not zero, is stored as the run's
	// reference time (the start of sending) if none is stored yet.
	RunSetPhase(ctx context.Context, params *RunSetPhaseParams) (bool, error)
	// RunMaterialize writes a run's audience as targets, in one transaction
	// serialized with every other materialization on the run's channel
	// (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so a
	// frequency cap reads every contact planned before it. It streams the
	// audience (see RunMaterializeParams) through Plan, writes the targets,
	// excludes the eligible beyond MaxPerRun (lowest expected value first),
	// and moves the run from Pending to Materialized, stamped with the
	// store's time (see Now). From then on the run's treatment targets are
	// its contact ledger entries (at that time; void when the target is
	// failed or skipped — so those of a dry run, and of treatment targets
	// Plan skipped, from the start), its holdout targets are ghost contacts
	// of their customers for the run's campaign on its channel (at that
	// time too; none for a dry run, void when RunCancel finds the run
	// contacted nobody), and its eligible targets record their holdout
	// group for the campaign, when none was recorded before. It is
	// idempotent: a run no longer
	// Pending (materialized, or cancelled before it was) is not written,
	// and its tally is returned. Errors: ErrNotFound for an unknown run or
	// a snapshot that is gone; ErrInvalid for invalid parameters, a run
	// without a segment or snapshot, or an invalid target from Plan;
	// ErrConflict when the run already has targets (from TargetInsert);
	// Plan's own error, wrapped. Any error leaves nothing written.
	RunMaterialize(ctx context.Context, params *RunMaterializeParams) (*RunTally, error)
	// RunCancel ends a run early: its pending targets become skipped with
	// reason "cancelled" (their ledger entries are voided) and the run's
	// phase becomes Cancelled, unless it already finished (Succeeded,
	// Failed). When that leaves the run with no live ledger entry (no
	// treatment target claimed or sent: it was cancelled before sending),
	// its ghost contacts are voided too: its holdout would not have been
	// contacted either. Claimed targets are left to their runner, which
	// records them as usual. It returns how many targets it skipped; ErrNotFound when
	// there is no such run.
	RunCancel(ctx context.Context, runID string) (int64, error)
	// RunDelete removes a run and its targets (history limits), first
	// folding its tally into its campaign's cumulative tally, so
	// CampaignTally never changes when a run is deleted, and copying its
	// ledger entries, its live ghost contacts and the holdout assignments
	// it recorded to the records that outlive it, so ContactCounts,
	// HoldoutGet and later materializations see no change either. The
	// ledger, ghost contacts, holdout assignments and opt-outs stay. Deleting an unknown run is not an
	// error.
	RunDelete(ctx context.Context, runID string) error
	// RunTally counts a run's targets by group, state and skip reason, and
	// its conversions by group; and the same per variant of the treatment
	// and holdout groups (RunTally.Variants).
	RunTally(ctx context.Context, runID string) (*RunTally, error)
	// CampaignTally counts the targets of every run a campaign ever made
	// (by campaign UID): the runs still stored plus the folded tallies of
	// the deleted ones. An unknown campaign has an empty tally.
	CampaignTally(ctx context.Context, campaignUID string) (*RunTally, error)

	// TargetInsert adds targets to a run in bulk. It is idempotent: a
	// target that exists for (run, customer) is left untouched, whatever
	// its state. It returns how many were inserted. Its targets are no
	// ledger entries and record no holdout group (RunMaterialize's are). A
	// run is fed by RunMaterialize or by TargetInsert, not both: ErrConflict
	// for a run RunMaterialize wrote.
	TargetInsert(ctx context.Context, params *TargetInsertParams) (int64, error)
	// TargetClaim claims up to Limit targets of one shard for sending:
	// claims older than StaleBefore first (their runner is presumed dead),
	// then pending ones whose NotBefore has passed. Concurrent claimers
	// never get the same target. Each claim stores Token as ClaimedBy,
	// increments Attempts and stamps ClaimedAt with the store's time (the
	// database clock unless Options.Clock is set).
	TargetClaim(ctx context.Context, params *TargetClaimParams) ([]*Target, error)
	// TargetSetSent records targets as sent: with a Token, only targets
	// still claimed by that token; without, from claimed or pending. It
	// returns how many transitioned; a target another worker finished or
	// took over is not counted and is not an error.
	TargetSetSent(ctx context.Context, params *TargetSetSentParams) (int64, error)
	// TargetSetFailed records failed deliveries (Token as in TargetSetSent):
	// a retryable failure goes back to pending with its NotBefore, otherwise
	// to failed (its ledger entry is voided). It returns how many
	// transitioned.
	TargetSetFailed(ctx context.Context, params *TargetSetFailedParams) (int64, error)
	// TargetSetSkipped records targets that will not be sent (Token as in
	// TargetSetSent); their ledger entries are voided. It returns how many
	// transitioned.
	TargetSetSkipped(ctx context.Context, params *TargetSetSkippedParams) (int64, error)
	// TargetScan streams a run's targets to fn (reused between calls), in
	// customer id order.
	TargetScan(ctx context.Context, params *TargetScanParams, fn func(*Target) error) error
	// TargetWaiting reports, in one set-based query, what is left in one
	// shard that a runner could not claim: pending targets (and the
	// earliest not-before among them) and the claims of other runners
	// made before ClaimedBefore (and the earliest of those). A runner
	// whose claim found nothing asks it to decide whether to wait or exit.
	TargetWaiting(ctx context.Context, params *TargetWaitingParams) (*TargetWaiting, error)

	// ConversionRecord records conversions: the first conversion seen per
	// target after its reference time (see ConversionRecordParams). It
	// returns how many targets converted for the first time.
	ConversionRecord(ctx context.Context, params *ConversionRecordParams) (int64, error)
	// RunMeasure measures a run against one committed snapshot of its
	// source (intent to treat): it streams the run's treatment and holdout
	// targets that have a record in the snapshot, with their frozen
	// baselines, to Measure, and stores what it returns — a first
	// conversion (its time and the snapshot that showed it) and the revenue
	// since the baseline — then records the snapshot as the run's last
	// measured one. Runs without a reference time, dry runs, excluded
	// targets and targets missing from the snapshot are never measured. A
	// snapshot at or before the run's last measured one changes nothing
	// (Skipped in the result), so a retried or late call cannot move the
	// figures back. Errors: ErrNotFound for an unknown run or snapshot;
	// ErrInvalid for a snapshot of another source or a run without one.
	RunMeasure(ctx context.Context, params *RunMeasureParams) (*RunMeasureResult, error)
	// CampaignStrata returns one stratum per measured run of a campaign
	// (by campaign UID) — a run with a reference time that is no dry run:
	// the stored runs' counted from their targets, the deleted runs' as
	// RunDelete kept them — ordered by reference time, so a campaign's
	// pooled figures never change when history limits delete its runs.
	CampaignStrata(ctx context.Context, campaignUID string) ([]RunStratum, error)
	// ContactCounts counts, for a whole audience in one set-based query,
	// the ledger entries of each customer on a channel since a time (an
	// entry's time is its run's materialization): contacts sent, and
	// contacts planned (pending or claimed) by any run; voided entries
	// (failed, skipped, cancelled, dry runs) do not count, nor do ghost
	// contacts (a holdout is never contacted: only a materialization's cap
	// counts them, AudienceMember.Contacts). Customers with no contact are
	// not reported.
	ContactCounts(ctx context.Context, params *ContactCountsParams, fn func(customerID string, contacts int64) error) error

	// HoldoutGet returns the recorded groups of a campaign's customers
	// (treatment or holdout); customers with none recorded are absent.
	HoldoutGet(ctx context.Context, campaignUID string, customerIDs []string) (map[string]TargetGroup, error)
	// OptOutAdd records that a customer asked not to be contacted on a
	// channel. Adding an existing opt-out is not an error.
	OptOutAdd(ctx context.Context, params *OptOutAddParams) error
	// OptOutDelete removes an opt-out (the customer subscribed again).
	OptOutDelete(ctx context.Context, channel, customerID string) error
	// OptOutFilter returns which of the customers opted out on a channel.
	OptOutFilter(ctx context.Context, channel string, customerIDs []string) (map[string]bool, error)
	// Now reads the store's clock: Options.Clock when set, otherwise the
	// database server's clock. Runners take their stale-claim cut-off from
	// it once at start-up.
	Now(ctx context.Context) (time.Time, error)
}

// SnapshotWriteParams start a snapshot.
type SnapshotWriteParams struct {
	// Source is the key of the customer source, "namespace/name".
	Source string
	// Meta is stored as JSON with the snapshot (model parameters, fit
	// quality, source revision). It may be nil.
	Meta any
	// ErasedThrough is the newest tombstone (Tombstones.Through) whose
	// customers the caller already leaves out. At Commit, the customers of
	// every later tombstone of the source are removed from the snapshot:
	// an erasure that ran while it was written wins. 0 checks every
	// tombstone of the source (one pass over the snapshot when it has any).
	ErasedThrough int64
}

// SnapshotWriter receives the customers of one snapshot. It is not safe
// for concurrent use. Exactly one of Commit or Abort must be called;
// Abort after Commit is a no-op, so `defer w.Abort()` is the idiom.
type SnapshotWriter interface {
	// Add appends one customer. The record is encoded before Add returns,
	// so the caller may reuse it.
	Add(c *customer.Scored) error
	// Commit finishes the snapshot and makes it the source's current one
	// atomically.
	Commit() (*Snapshot, error)
	// Abort discards the snapshot; the previous one stays current.
	Abort() error
}

// MembershipCount returns the number of members of a segment (0 for an
// unknown segment), from its membership summary.
func MembershipCount(ctx context.Context, s MembershipStore, segment string) (int64, error) {
	m, err := s.MembershipGet(ctx, segment)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Size, nil
}

// WriteAll adds a batch of customers to a snapshot writer.
func WriteAll(w SnapshotWriter, batch []*customer.Scored) error {
	for _, c := range batch {
		if err := w.Add(c); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot describes a committed scored snapshot.
type Snapshot struct {
	ID        int64
	Source    string
	CreatedAt time.Time
	// Customers is the number of customers in the snapshot.
	Customers int64
	// Meta is the JSON given as SnapshotWriteParams.Meta ("null" if none).
	Meta json.RawMessage
}

// SnapshotScanParams select a snapshot to read.
type SnapshotScanParams struct {
	SnapshotID int64
}

// SnapshotPruneParams select the snapshots to drop.
type SnapshotPruneParams struct {
	Source string
	// Keep is how many of the newest committed snapshots to keep; the
	// current snapshot is kept even if Keep is 0.
	Keep int
	// AbandonedBefore: unfinished snapshots whose writer last wrote before
	// this time are dropped as abandoned (their process died). If zero,
	// one hour before the store's clock.
	AbandonedBefore time.Time
}

// SnapshotPruneResult reports what a prune dropped.
type SnapshotPruneResult struct {
	// Dropped are the IDs of committed snapshots dropped.
	Dropped []int64
	// Abandoned is the number of unfinished snapshots dropped.
	Abandoned int
}

// MembershipApplyParams give a segment's new membership.
type MembershipApplyParams struct {
	// Segment is the key of the segment, "namespace/name".
	Segment string
	// SnapshotID is the snapshot the membership was evaluated on. It must
	// not be older than the one last applied (ErrConflict).
	SnapshotID int64
	// Members yields the customer ids of the new membership (duplicates
	// are ignored). An error stops the apply and nothing changes. Exactly
	// one of Members and Changes is set.
	Members iter.Seq2[string, error]
	// Changes, when set, describe the new membership as a change of the
	// stored one (an incremental apply).
	Changes *MembershipChanges
}

// MembershipChanges are the customers that enter and exit a segment's
// membership, computed by the caller against the membership at
// BaseVersion. Duplicates in Entered or in Exited are ignored. Exits apply
// first: a customer in both leaves (counted if it was a member), then
// enters anew (counted): a member afterwards, entered on the apply's
// SnapshotID.
type MembershipChanges struct {
	// BaseVersion is the Version of the membership the changes were
	// computed against (from MembershipDiff or Membership). When the stored
	// membership has another version, the apply fails with ErrBaseMoved and
	// nothing changes.
	BaseVersion int64
	// Entered yields the customers that join: each becomes a member that
	// entered on the apply's SnapshotID (one already a member is left as
	// it is, and not counted).
	Entered iter.Seq2[string, error]
	// Exited yields the customers that leave (one not a member is
	// ignored, and not counted).
	Exited iter.Seq2[string, error]
}

// MembersFromSlice adapts a slice of customer ids to
// MembershipApplyParams.Members.
func MembersFromSlice(ids []string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, id := range ids {
			if !yield(id, nil) {
				return
			}
		}
	}
}

// MembershipDiff is the result of one apply.
type MembershipDiff struct {
	// Size is the number of members after the apply.
	Size int64
	// Entered and Exited count the customers that joined and left.
	Entered, Exited int64
	// PreviousSnapshotID is the snapshot of the membership replaced (0 for
	// the first apply).
	PreviousSnapshotID int64
	// Version identifies the membership this apply left: it grows with
	// every apply of the segment (full or incremental), so a caller that
	// remembers the members of Version can send only the changes next
	// time (MembershipChanges.BaseVersion).
	Version int64
}

// Membership summarises a segment's membership.
type Membership struct {
	Segment string
	// SnapshotID is the snapshot of the last apply; every member was seen
	// in it.
	SnapshotID int64
	Size       int64
	UpdatedAt  time.Time
	// Version is the membership's version (see MembershipDiff.Version).
	Version int64
}

// MembershipScanParams select members.
type MembershipScanParams struct {
	Segment string
	// EnteredSince, if not 0, keeps only members that entered in this
	// snapshot or a later one (OnEnter triggers).
	EnteredSince int64
}

// Member is one customer in a segment.
type Member struct {
	CustomerID string
	// EnteredAt is when the apply that added the customer ran.
	EnteredAt time.Time
	// EnteredSnapshotID is the snapshot on which the customer entered.
	EnteredSnapshotID int64
	// LastSeenSnapshotID is the snapshot of the latest apply (the
	// segment's SnapshotID: current members were all seen in it).
	LastSeenSnapshotID int64
}

// RunPhase is where a run is in the store. The operator's CampaignRun
// phases map onto it; runners read it to stop sending a cancelled run.
type RunPhase string

const (
	// PhasePending runs are created, not yet materialized.
	PhasePending RunPhase = "Pending"
	// PhaseMaterialized runs have their targets written.
	PhaseMaterialized RunPhase = "Materialized"
	// PhaseSending runs are being sent by their Job.
	PhaseSending RunPhase = "Sending"
	// PhaseMeasuring runs are sent; conversions are being counted.
	PhaseMeasuring RunPhase = "Measuring"
	// PhaseSucceeded, PhaseFailed and PhaseCancelled runs are finished.
	PhaseSucceeded RunPhase = "Succeeded"
	PhaseFailed    RunPhase = "Failed"
	PhaseCancelled RunPhase = "Cancelled"
)

// RunCreateParams describe a campaign run, frozen when it is created.
type RunCreateParams struct {
	// RunID is the run's unique id (the CampaignRun UID); it is also the
	// first half of every message's idempotency key.
	RunID string
	// Campaign is the key of the campaign, "namespace/name".
	Campaign string
	// CampaignUID is the Campaign's UID: holdout assignments and the
	// cumulative tally are kept per campaign UID, so a campaign deleted and
	// created again under the same name starts afresh.
	CampaignUID string
	// Channel is the key of the channel, "namespace/name". Frequency caps
	// count contacts per channel.
	Channel string
	// Segment is the key of the segment the audience comes from.
	Segment string
	// SnapshotID is the scored snapshot the audience is read from.
	SnapshotID int64
	// ScheduledAt is the run's slot (or, for an ad-hoc run, when it was
	// asked for).
	ScheduledAt time.Time
	// ConversionWindow is how long after the reference time a purchase
	// counts as a conversion.
	ConversionWindow time.Duration
	// DryRun runs are materialized and counted, never sent.
	DryRun bool
	// Settings is the frozen message, variants and the channel's
	// non-secret settings the runners need, stored as JSON.
	Settings any
	// HoldoutPercent is the share of the audience held out, 0 to 100.
	HoldoutPercent float64
	// Shards is the number of shards (Job completions), at least 1.
	Shards int32
}

// Run is a stored campaign run.
type Run struct {
	ID               string
	Campaign         string
	CampaignUID      string
	Channel          string
	Segment          string
	SnapshotID       int64
	ScheduledAt      time.Time
	ConversionWindow time.Duration
	DryRun           bool
	Phase            RunPhase
	Settings         json.RawMessage
	HoldoutPercent   float64
	Shards           int32
	CreatedAt        time.Time
	// ReferenceAt is the start of sending (zero until then): both groups'
	// conversions are counted from it.
	ReferenceAt time.Time
	// Source is the key of the source of the run's snapshot, recorded at
	// materialization (empty before).
	Source string
	// MeasuredSnapshot is the last snapshot the run was measured against
	// (0: none yet).
	MeasuredSnapshot int64
}

// WindowEnd is the end of the run's conversion window, or zero while the
// run has no reference time.
func (r *Run) WindowEnd() time.Time {
	if r.ReferenceAt.IsZero() {
		return time.Time{}
	}
	return r.ReferenceAt.Add(r.ConversionWindow)
}

// RunSetPhaseParams move a run to another phase.
type RunSetPhaseParams struct {
	RunID string
	// From lists the phases the run may be in; empty means any.
	From []RunPhase
	To   RunPhase
	// ReferenceAt, if not zero, is stored when the run has none yet.
	ReferenceAt time.Time
}

// TargetGroup is the experiment group of a target.
type TargetGroup string

const (
	// GroupTreatment targets are contacted.
	GroupTreatment TargetGroup = "treatment"
	// GroupHoldout targets are never contacted; they measure the effect.
	GroupHoldout TargetGroup = "holdout"
	// GroupExcluded targets were in the audience but not eligible (Reason
	// says why: unreachable, opted out, suppressed, capped, over the
	// per-run maximum). They are in neither experiment group.
	GroupExcluded TargetGroup = "excluded"
)

// TargetState is where a target is in delivery.
type TargetState string

const (
	// StatePending targets wait to be claimed.
	StatePending TargetState = "pending"
	// StateClaimed targets are being sent by a runner.
	StateClaimed TargetState = "claimed"
	// StateSent targets were delivered to the channel.
	StateSent TargetState = "sent"
	// StateFailed targets could not be delivered (permanent failure).
	StateFailed TargetState = "failed"
	// StateSkipped targets will not be sent; Reason says why.
	StateSkipped TargetState = "skipped"
)

// Skip and exclusion reasons used by the operator. Reason is free text;
// these are the conventional values, in the order materialization applies
// the exclusions.
const (
	ReasonUnreachable = "unreachable"
	ReasonOptedOut    = "opted_out"
	ReasonSuppressed  = "suppressed"
	ReasonCapped      = "capped"
	ReasonOverMax     = "over_max"
	ReasonHoldout     = "holdout"
	ReasonCancelled   = "cancelled"
	ReasonDryRun      = "dry_run"
	ReasonQuietHours  = "quiet_hours"
)

// TargetData is what a target's sending and measuring need, frozen into it
// at materialization, so neither the runner nor measurement reads a
// snapshot. Address, Locale, TimeZone and Fields are personal data.
type TargetData struct {
	// Address is the contact address on the run's channel (an email
	// address for SMTP; for webhooks the customer's email, may be empty).
	Address  string `json:"address,omitempty"`
	Locale   string `json:"locale,omitempty"`
	TimeZone string `json:"timeZone,omitempty"`
	// Fields are the customer fields the message templates use.
	Fields map[string]any `json:"fields,omitempty"`
	// The measurement baseline: the customer's transactions and spend so
	// far, and their last purchase, when the run was materialized.
	BaseTransactions int64     `json:"-"`
	BaseSpend        float64   `json:"-"`
	BaseLastPurchase time.Time `json:"-"`
	// ExpectedValue ranks the eligible for MaxPerRun.
	ExpectedValue float64 `json:"-"`
}

// Target is one customer of a run.
type Target struct {
	RunID      string
	CustomerID string
	Group      TargetGroup
	Variant    string
	Shard      int32
	State      TargetState
	// Reason says why a target was skipped or excluded.
	Reason string
	// Attempts counts claims.
	Attempts  int32
	LastError string
	// ClaimedBy is the token of the runner that holds the claim.
	ClaimedBy string
	// NotBefore is the earliest time the target may be claimed (quiet
	// hours, retry backoff); zero means at once.
	NotBefore time.Time
	Data      TargetData
	// ClaimedAt, SentAt and ConvertedAt are zero when not (yet) set.
	ClaimedAt   time.Time
	SentAt      time.Time
	ConvertedAt time.Time
	// ConvertedSnapshot is the snapshot that first showed the conversion
	// (0: none, or recorded by ConversionRecord); Revenue the revenue since
	// the baseline that measurement recorded.
	ConvertedSnapshot int64
	Revenue           float64
}

// NewTarget is a target to insert.
type NewTarget struct {
	CustomerID string
	// Group defaults to treatment.
	Group   TargetGroup
	Variant string
	// Shard is in [0, run's Shards).
	Shard int32
	// State is pending or skipped. If unset: pending for treatment, skipped
	// (reason "holdout") for holdout; a holdout or excluded target is never
	// pending, and an excluded one needs a Reason.
	State     TargetState
	Reason    string
	NotBefore time.Time
	Data      TargetData
}

// AudienceMember is one member of a run's audience as RunMaterialize
// passes it to Plan: the scored record and what the store knows of the
// customer. It is reused between calls.
type AudienceMember struct {
	Customer *customer.Scored
	// Suppressed is true when the customer is a member of one of the
	// suppression segments.
	Suppressed bool
	// OptedOut is true when the customer is on the opt-out list of the
	// run's channel.
	OptedOut bool
	// Contacts counts the customer's live ledger entries on the run's
	// channel since CapSince (as ContactCounts does) plus the live ghost
	// contacts of the run's campaign on that channel since then (see
	// RunMaterialize): a customer held out of a campaign's earlier runs
	// is capped by its later runs as if it had been treated, so the cap
	// excludes holdout and treatment customers alike and the groups stay
	// comparable. Ghosts of other campaigns never count. 0 when CapSince is
	// zero.
	Contacts int64
	// RecordedGroup is the customer's recorded holdout assignment for the
	// run's campaign, or "" when none is recorded.
	RecordedGroup TargetGroup
}

// RunMaterializeParams give a run's audience and how to plan each target.
type RunMaterializeParams struct {
	RunID string
	// EnteredSince, if not 0, keeps only the members of the run's segment
	// that entered at or after this snapshot (OnEnter runs).
	EnteredSince int64
	// SuppressSegments are the keys of the suppression segments.
	SuppressSegments []string
	// CapSince starts the frequency-cap window (real and ghost contacts at
	// or after it count, AudienceMember.Contacts); zero: no cap data.
	CapSince time.Time
	// MaxPerRun, if above 0, keeps the MaxPerRun eligible (treatment and
	// holdout) members with the highest Data.ExpectedValue and excludes the
	// rest with reason over_max.
	MaxPerRun int64
	// Plan fills t for the member: t is zeroed before each call but for
	// its CustomerID, the member's, which Plan must leave as it is. The
	// audience is the run's segment's members (at its current membership)
	// joined with their records in the run's snapshot; members missing
	// from the snapshot are not passed. An error aborts the
	// materialization and nothing is written. Plan is called from one
	// goroutine (not necessarily the caller's), inside the
	// materialization's transaction, which holds locks and connections:
	// it must not call the store.
	Plan func(m *AudienceMember, t *NewTarget) error
}

// TargetInsertParams add targets to a run.
type TargetInsertParams struct {
	RunID   string
	Targets []NewTarget
}

// TargetClaimParams claim work for one shard. Claims take the due targets
// first: those without NotBefore, then the earliest NotBefore, each in
// customer id order.
type TargetClaimParams struct {
	RunID string
	Shard int32
	// Limit is the most targets to claim, at least 1.
	Limit int
	// StaleBefore: claims made before this time are taken over (their
	// runner is presumed dead). If zero, no claim is taken over. A
	// restarting runner should take it once at start-up (from Now), or it
	// re-claims its own fresh claims.
	StaleBefore time.Time
	// Token identifies the claimer; only it may record the claimed targets.
	Token string
}

// TargetSetSentParams record deliveries.
type TargetSetSentParams struct {
	RunID       string
	CustomerIDs []string
	// Token, if set, records only targets still claimed by it.
	Token string
}

// TargetFailure is one failed delivery.
type TargetFailure struct {
	CustomerID string
	Error      string
	// Retryable sends the target back to pending; otherwise it fails.
	Retryable bool
	// NotBefore, for a retryable failure, is when it may be claimed again.
	NotBefore time.Time
}

// TargetSetFailedParams record failed deliveries.
type TargetSetFailedParams struct {
	RunID    string
	Failures []TargetFailure
	// Token, if set, records only targets still claimed by it.
	Token string
}

// TargetSkip is one target that will not be sent.
type TargetSkip struct {
	CustomerID string
	Reason     string
}

// TargetSetSkippedParams record skipped targets.
type TargetSetSkippedParams struct {
	RunID string
	Skips []TargetSkip
	// Token, if set, records only targets still claimed by it.
	Token string
}

// TargetScanParams select a run's targets.
type TargetScanParams struct {
	RunID string
	// State, if set, keeps only targets in this state.
	State TargetState
}

// TargetWaitingParams select one shard and the claims that may go stale.
type TargetWaitingParams struct {
	RunID string
	Shard int32
	// Token is the asking runner's claim token: its own claims are not
	// counted.
	Token string
	// ClaimedBefore: only claims made before it are counted (zero: none).
	ClaimedBefore time.Time
}

// TargetWaiting is what TargetWaiting found.
type TargetWaiting struct {
	// Pending counts pending targets; EarliestNotBefore is the earliest
	// time one may be claimed (zero when one is due at once, or none).
	Pending           int64
	EarliestNotBefore time.Time
	// Claimed counts other runners' claims made before ClaimedBefore;
	// EarliestClaim is the oldest of them (zero when none).
	Claimed       int64
	EarliestClaim time.Time
}

// RunTally counts a run's targets.
type RunTally struct {
	Groups map[TargetGroup]*GroupTally
	// Variants breaks the treatment and holdout groups down by variant:
	// Variants[g][v] counts the targets of group g with variant v ("" for
	// targets without one), so each variant's treatment can be compared
	// with the holdout members of the same variant. Excluded targets are
	// not broken down. CampaignTally leaves it nil (the folded tallies of
	// deleted runs are kept per group only).
	Variants map[TargetGroup]map[string]*GroupTally
}

// GroupTally counts one group's targets.
type GroupTally struct {
	Total int64
	// ByState counts targets per state.
	ByState map[TargetState]int64
	// SkippedByReason counts skipped targets per reason.
	SkippedByReason map[string]int64
	// Converted counts targets with a recorded conversion.
	Converted int64
	// Revenue sums the recorded revenue since the baseline.
	Revenue float64
	// Deferred counts the pending targets whose NotBefore is still to come
	// (quiet hours, retry backoff), at the store's time of the tally.
	Deferred int64
}

// RunMeasureParams measure a run against a snapshot.
type RunMeasureParams struct {
	RunID string
	// SnapshotID is a committed snapshot of the source of the run's own
	// snapshot, usually the source's current one.
	SnapshotID int64
	// Measure decides one target. It is called from one goroutine, while
	// the store streams (it must not call the store); b is reused between
	// calls and so is c (as in SnapshotScan).
	Measure func(b *Baseline, c *customer.Scored) Measured
}

// Baseline is what a target carries for measurement: its group, the
// customer's purchases when the run was materialized, and what earlier
// measurements recorded.
type Baseline struct {
	CustomerID   string
	Group        TargetGroup
	Transactions int64
	Spend        float64
	LastPurchase time.Time
	// ReferenceAt and WindowEnd are the run's.
	ReferenceAt, WindowEnd time.Time
	// ConvertedAt is zero while no conversion is recorded.
	ConvertedAt time.Time
	Revenue     float64
}

// Measured is Measure's verdict on one target.
type Measured struct {
	// ConvertedAt, when not zero and no conversion is recorded yet, records
	// one (with the measured snapshot).
	ConvertedAt time.Time
	// Revenue replaces the recorded revenue when SetRevenue is true.
	Revenue    float64
	SetRevenue bool
}

// RunMeasureResult counts what a measurement did.
type RunMeasureResult struct {
	// Measured counts the targets passed to Measure; Missing the treatment
	// and holdout targets the snapshot has no record of.
	Measured, Missing int64
	// Converted counts first conversions recorded; Updated the targets
	// whose revenue changed.
	Converted, Updated int64
	// Skipped is true when the snapshot was not newer than the run's last
	// measured one: nothing was read or written.
	Skipped bool
}

// RunStratum is one measured run of a campaign: its two groups.
type RunStratum struct {
	RunID       string
	ReferenceAt time.Time
	// Final is true once the run succeeded (its window closed and was
	// measured); earlier figures are provisional.
	Final              bool
	Treatment, Holdout StratumGroup
}

// StratumGroup counts one group of a run: its targets, those converted,
// and their revenue since the baseline.
type StratumGroup struct {
	Assigned, Converted int64
	Revenue             float64
}

// Conversion is a conversion event of a customer.
type Conversion struct {
	CustomerID string
	At         time.Time
}

// ConversionRecordParams record conversions for a run. Measurement is
// intent to treat: a conversion counts for a treatment or holdout target
// (sent or not) when the target has none yet and it happened at or after
// the run's reference time; excluded targets never convert, nor do the
// targets of a run without a reference time. The caller bounds the
// conversion window.
type ConversionRecordParams struct {
	RunID       string
	Conversions []Conversion
}

// OptOutAddParams record an opt-out.
type OptOutAddParams struct {
	Channel    string
	CustomerID string
	// Via says how the opt-out arrived ("unsubscribe-link", "api"); no
	// personal data.
	Via string
}

// ContactCountsParams choose a channel, a window and an audience. Exactly
// one of RunID, Segment or CustomerIDs gives the audience.
type ContactCountsParams struct {
	Channel string
	// Since is the start of the window (inclusive).
	Since time.Time
	// RunID: the customers targeted by this run.
	RunID string
	// Segment: the members of this segment.
	Segment string
	// CustomerIDs: these customers.
	CustomerIDs []string
}
