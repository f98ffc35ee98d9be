package sqlshared

import (
	"crypto/rand"
	"fmt"

	"github.com/retention-dev/retention-operator/internal/store"
)

// The statements of an erasure (store.ErasureStore), in the order
// ErasureApply runs them (ErasureSteps). $1 is the source key; in is the driver's
// membership test of customer_id in the erased ids ($2): PostgreSQL's
// "= ANY($2::text[])", SQLite's "IN (SELECT value FROM json_each($2))".

// sourceSegments are the segments whose membership may hold the source's
// customers: those applied from one of its snapshots, and those whose
// snapshot is gone (pruned), which no other source claims.
const sourceSegments = `SELECT id FROM segments WHERE snapshot_id NOT IN (SELECT id FROM snapshots WHERE source <> $1)`

// sourceRuns are the source's runs: materialized from one of its
// snapshots, or fed by TargetInsert (no source recorded).
const sourceRuns = `SELECT run_id FROM runs WHERE source IN ($1, '')`

// erasureSegments shrinks the segments that lose members and moves their
// membership version on (an incremental apply against the old version
// gets ErrBaseMoved). It runs before erasureMemberships.
func erasureSegments(in string) string {
	return `UPDATE segments SET
		size = size - (SELECT count(*) FROM memberships m WHERE m.segment_id = segments.id AND m.customer_id ` + in + `),
		version = version + 1
	WHERE id IN (` + sourceSegments + `)
	  AND EXISTS (SELECT 1 FROM memberships m WHERE m.segment_id = segments.id AND m.customer_id ` + in + `)`
}

// erasureMemberships removes the erased from the source's segments.
func erasureMemberships(in string) string {
	return `DELETE FROM memberships WHERE customer_id ` + in + ` AND segment_id IN (` + sourceSegments + `)`
}

// erasureSkipTargets skips the erased customers' targets still to send
// (their ledger entries become void, as for any skipped target).
func erasureSkipTargets(in string) string {
	return `UPDATE targets SET state = 'skipped', reason = '` + store.ReasonErased + `', claimed_by = ''
	WHERE state IN ('pending', 'claimed') AND customer_id ` + in + ` AND run_id IN (` + sourceRuns + `)`
}

// erasureTargets replaces the erased customers' ids in the source's
// targets by tombstone ids (random: they link to nothing, not even one
// run's target to another's) and clears what was frozen for sending;
// group, state, baseline, conversion and revenue stay, so the runs'
// tallies and measured figures do not change. random is the driver's
// expression of 32 random hexadecimal digits.
func erasureTargets(in, random string) string {
	return `UPDATE targets SET customer_id = 'erased-' || ` + random + `,
		address = '', locale = '', time_zone = '', fields = NULL, last_error = '', claimed_by = ''
	WHERE customer_id ` + in + ` AND run_id IN (` + sourceRuns + `)`
}

// erasureOptOuts removes the erased ids' opt-outs on every channel: the
// list is per channel and names no source. The customer is never contacted
// again through this source (its tombstone keeps it out of every
// snapshot). $1 takes no part but is typed, as PostgreSQL wants of every
// parameter.
func erasureOptOuts(in string) string {
	return `DELETE FROM opt_outs WHERE customer_id ` + in + ` AND $1 <> ''`
}

// ErasureStep is one statement of an erasure ($1 the source, $2 the ids)
// and the count of ErasureResult its affected rows go to.
type ErasureStep struct {
	SQL   string
	Count *int64
}

// ErasureSteps are the statements ErasureApply runs after recording the
// tombstones and erasing the snapshots, in order, counting into res: the
// segments (before their memberships), the memberships, the targets still
// to send, the targets, the opt-outs, then the records that outlive runs
// (the ledger, ghost contacts and holdout assignments of the source, and
// those recorded before they named one). in is the driver's erased-ids
// test, random its expression of 32 random hexadecimal digits.
func ErasureSteps(in, random string, res *store.ErasureResult) []ErasureStep {
	steps := []ErasureStep{
		{erasureSegments(in), &res.Segments},
		{erasureMemberships(in), &res.Memberships},
		{erasureSkipTargets(in), &res.SkippedTargets},
		{erasureTargets(in, random), &res.Targets},
		{erasureOptOuts(in), &res.OptOuts},
	}
	for _, table := range []string{"contacts", "ghost_contacts", "holdout_assignments"} {
		steps = append(steps, ErasureStep{`DELETE FROM ` + table + ` WHERE customer_id ` + in + ` AND source IN ($1, '')`, &res.Records})
	}
	return steps
}

// ErasureSnapshots lists the source's committed snapshots, whose tables
// the erased are deleted from.
const ErasureSnapshots = `SELECT id FROM snapshots WHERE source = $1 AND state = 'committed' ORDER BY id`

// ErasureSalt makes the store's salt unless it exists ($1: 32 random
// bytes); SaltGet reads it.
const (
	ErasureSalt = `INSERT INTO erasure_salt (id, salt) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`
	SaltGet     = `SELECT salt FROM erasure_salt WHERE id = 1`
)

// TombstonesSince reads a source's tombstones after sequence number $2
// (0: all), newest last.
const TombstonesSince = `SELECT seq, hash, fingerprint FROM erased_customers WHERE source = $1 AND seq > $2 ORDER BY seq`

// NewSalt returns 32 random bytes.
func NewSalt() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("erasure salt: %w", err)
	}
	return b, nil
}

// TombstoneHashes returns the ids' tombstone hashes.
func TombstoneHashes(salt []byte, ids []string) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h := store.TombstoneHash(salt, id)
		out[i] = h[:]
	}
	return out
}

// TombstoneFingerprints returns the ids' tombstone fingerprints.
func TombstoneFingerprints(salt []byte, ids []string) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = store.TombstoneFingerprint(salt, id)
	}
	return out
}

// Distinct returns ids without repeats, in their first order.
func Distinct(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
