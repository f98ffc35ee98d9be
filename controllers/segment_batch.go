package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/segment"
	"github.com/retention-dev/retention-operator/internal/store"
)

// segmentBatches evaluates all the stale Segments of a source in one scan
// of its snapshot. A new snapshot queues every Segment of the source; the
// first one reconciled evaluates them all (segment.MaterializeBatch) and
// keeps the others' results, which their own reconciles then record in
// their status. A result is used only for the Segment generation and
// snapshot it was computed for; anything else is evaluated again.
//
// Each source also has a segment.Baseline, the memberships the store holds
// for its Segments, so that a batch sends the store only the customers
// that enter and exit. It lives in memory only: after a restart (or a
// leader change) the first batch applies in full.
type segmentBatches struct {
	mu      sync.Mutex
	sources map[types.NamespacedName]*sourceBatch
	results map[types.UID]batchResult
}

// sourceBatch is a source's batch lock and the baseline the batches,
// holding the lock, use and update.
type sourceBatch struct {
	sync.Mutex
	baseline *segment.Baseline
}

// batchResult is one Segment's outcome of a batch.
type batchResult struct {
	generation, snapshotID int64
	now                    time.Time
	stats                  *segment.Stats
	err                    error
}

// source returns the source's batch state.
func (b *segmentBatches) source(key types.NamespacedName) *sourceBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sources == nil {
		b.sources = map[types.NamespacedName]*sourceBatch{}
		b.results = map[types.UID]batchResult{}
	}
	sb, ok := b.sources[key]
	if !ok {
		sb = &sourceBatch{baseline: segment.NewBaseline()}
		b.sources[key] = sb
	}
	return sb
}

// take returns and forgets seg's result on the snapshot, if a batch left one.
func (b *segmentBatches) take(seg *retentionv1.Segment, snapshotID int64) (batchResult, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	res, ok := b.results[seg.UID]
	if !ok {
		return res, false
	}
	delete(b.results, seg.UID)
	return res, res.generation == seg.Generation && res.snapshotID == snapshotID
}

// keep stores the results of a batch until the Segments' reconciles take
// them (or the Segment is deleted: forget).
func (b *segmentBatches) keep(segs []*retentionv1.Segment, res []batchResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range segs {
		b.results[s.UID] = res[i]
	}
}

// forget drops a deleted Segment's result and its membership from its
// source's baseline.
func (b *segmentBatches) forget(seg *retentionv1.Segment) {
	b.mu.Lock()
	delete(b.results, seg.UID)
	sb := b.sources[types.NamespacedName{Namespace: seg.Namespace, Name: seg.Spec.SourceRef.Name}]
	b.mu.Unlock()
	if sb != nil {
		sb.Lock()
		sb.baseline.Forget(seg.Namespace + "/" + seg.Name)
		sb.Unlock()
	}
}

// materialize returns seg's evaluation on the source's current snapshot:
// a batch's result when one is waiting, else a new batch of seg and every
// other stale Segment of the source.
func (r *SegmentReconciler) materialize(ctx context.Context, st store.Store, seg *retentionv1.Segment, cs *retentionv1.CustomerSource, rule *segment.Rule) (batchResult, error) {
	sb := r.batches.source(types.NamespacedName{Namespace: cs.Namespace, Name: cs.Name})
	sb.Lock()
	defer sb.Unlock()
	if res, ok := r.batches.take(seg, cs.Status.SnapshotID); ok {
		return res, nil
	}
	segs, rules, err := r.staleSegments(ctx, seg, cs, rule)
	if err != nil {
		return batchResult{}, err
	}
	p := &segment.BatchParams{SnapshotID: cs.Status.SnapshotID, Now: r.Clock.Now(), Baseline: sb.baseline}
	for i, s := range segs {
		p.Segments = append(p.Segments, segment.BatchSegment{Segment: s.Namespace + "/" + s.Name, Rule: rules[i]})
	}
	out, err := segment.MaterializeBatch(ctx, st, p)
	if err != nil {
		return batchResult{}, err
	}
	res := make([]batchResult, len(segs))
	for i, s := range segs {
		res[i] = batchResult{generation: s.Generation, snapshotID: p.SnapshotID, now: p.Now, stats: out[i].Stats, err: out[i].Err}
	}
	// segs[0] is seg: its result is returned, the others kept.
	r.batches.keep(segs[1:], res[1:])
	return res[0], nil
}

// staleSegments returns seg and the other Segments of the source (from
// the cache) whose membership is not on its current snapshot, with their
// compiled rules; a Segment whose rule does not compile is left to its
// own reconcile.
func (r *SegmentReconciler) staleSegments(ctx context.Context, seg *retentionv1.Segment, cs *retentionv1.CustomerSource, rule *segment.Rule) ([]*retentionv1.Segment, []*segment.Rule, error) {
	var list retentionv1.SegmentList
	if err := r.List(ctx, &list, client.InNamespace(cs.Namespace), client.MatchingFields{indexSourceRef: cs.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing the segments of customersource %s: %w", cs.Name, err)
	}
	segs, rules := []*retentionv1.Segment{seg}, []*segment.Rule{rule}
	for i := range list.Items {
		s := &list.Items[i]
		if s.UID == seg.UID || !s.DeletionTimestamp.IsZero() || current(s, cs) {
			continue
		}
		rl, err := r.rules.compile(s, cs)
		if err != nil {
			continue
		}
		segs, rules = append(segs, s), append(rules, rl)
	}
	return segs, rules, nil
}
