package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/segment"
	"github.com/retention-dev/retention-operator/internal/store"
)

// membershipFinalizer removes a segment's membership from the store when
// the Segment is deleted.
const membershipFinalizer = "retention.dev/membership"

// SegmentReconciler keeps a Segment's membership current with its source's
// scored snapshot: it evaluates the rule whenever the source's current
// snapshot or the rule changes (a watch on the CustomerSource, not a timer).
// The stale Segments of a source are evaluated together, in one scan of
// the snapshot (segmentBatches).
type SegmentReconciler struct {
	client.Client
	Recorder   EventRecorder
	Clock      Clock
	RetryAfter time.Duration
	// Stores opens the data-plane store that holds snapshots and membership.
	Stores *StoreProvider
	// Metrics, when set, receives the segment metrics.
	Metrics *metrics.Metrics

	rules   ruleCache
	batches segmentBatches
}

// +kubebuilder:rbac:groups=retention.dev,resources=segments,verbs=list;watch;patch
// +kubebuilder:rbac:groups=retention.dev,resources=segments/status,verbs=patch
// +kubebuilder:rbac:groups=retention.dev,resources=customersources,verbs=list;watch

// Reconcile evaluates the Segment's rule against its source's current snapshot.
func (r *SegmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var seg retentionv1.Segment
	if err := r.Get(ctx, req.NamespacedName, &seg); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !seg.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &seg)
	}
	if err := ensureFinalizer(ctx, r.Client, &seg, membershipFinalizer); err != nil {
		return ctrl.Result{}, err
	}
	r.exportStatus(&seg)
	patcher := newStatusPatcher(r.Client, &seg)
	msg, err := r.evaluate(ctx, &seg)
	if err != nil && r.Metrics != nil {
		r.Metrics.SegmentEvaluationTotal.WithLabelValues(seg.Namespace, seg.Name, "failure").Inc()
	}
	return patcher.finish(ctx, r.Recorder, &seg, err, msg, requeue{Retry: r.RetryAfter})
}

// evaluate runs the steps: source, rule, membership. It returns the Ready message.
func (r *SegmentReconciler) evaluate(ctx context.Context, seg *retentionv1.Segment) (string, error) {
	cs, err := r.source(ctx, seg)
	if err != nil {
		return "", err
	}
	rule, err := r.rules.compile(seg, cs)
	if err != nil {
		return "", err
	}
	if current(seg, cs) {
		return readyMessage(seg), nil
	}
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return "", err
	}
	if err := clonePreview(ctx, st, seg); err != nil {
		return "", err
	}
	res, err := r.materialize(ctx, st, seg, cs, rule)
	if err == nil {
		err = res.err
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", waiting(retentionv1.ReasonSourceNotReady, "snapshot %d of customersource %s/%s is gone; waiting for the next", cs.Status.SnapshotID, cs.Namespace, cs.Name)
	case err != nil:
		return "", fmt.Errorf("evaluating segment: %w", err)
	}
	r.record(seg, res.stats, cs.Status.SnapshotID, res.now)
	return readyMessage(seg), nil
}

// source returns the referenced CustomerSource once it has a snapshot.
func (r *SegmentReconciler) source(ctx context.Context, seg *retentionv1.Segment) (*retentionv1.CustomerSource, error) {
	var cs retentionv1.CustomerSource
	key := types.NamespacedName{Namespace: seg.Namespace, Name: seg.Spec.SourceRef.Name}
	if err := getReference(ctx, r.Client, key, &cs, "customersource", retentionv1.ReasonSourceNotFound); err != nil {
		return nil, err
	}
	if cs.Status.SnapshotID == 0 {
		return nil, waiting(retentionv1.ReasonSourceNotReady, "customersource %s has no scored snapshot yet", key)
	}
	return &cs, nil
}

// current reports whether the membership already reflects this generation
// of the rule on the source's current snapshot.
func current(seg *retentionv1.Segment, cs *retentionv1.CustomerSource) bool {
	return seg.Status.SnapshotID == cs.Status.SnapshotID && seg.Status.ObservedGeneration == seg.Generation &&
		isReady(seg.Status.Conditions) && seg.Status.LastEvaluatedTime != nil
}

// record writes an evaluation into status and metrics.
func (r *SegmentReconciler) record(seg *retentionv1.Segment, s *segment.Stats, snapshotID int64, now time.Time) {
	st := &seg.Status
	st.Size, st.Entered, st.Exited = s.Size, s.Entered, s.Exited
	st.SharePercent = decimal(100*s.Share, 1)
	st.ExpectedValue = decimal(s.Value, 2)
	st.SnapshotID = snapshotID
	st.LastEvaluatedTime = &metav1.Time{Time: now}
	if r.Recorder != nil {
		r.Recorder.Eventf(seg, nil, "Normal", "Evaluated", "Evaluate",
			"snapshot %d: %d members (%d entered, %d exited)", snapshotID, s.Size, s.Entered, s.Exited)
		if s.Errors > 0 {
			r.Recorder.Eventf(seg, nil, "Warning", "EvaluationErrors", "Evaluate",
				"the rule failed for %d customers (not members); first: %s", s.Errors, s.FirstError)
		}
	}
	if m := r.Metrics; m != nil {
		m.SegmentSize.WithLabelValues(seg.Namespace, seg.Name).Set(float64(s.Size))
		m.SegmentEntriesTotal.WithLabelValues(seg.Namespace, seg.Name).Add(float64(s.Entered))
		m.SegmentExitsTotal.WithLabelValues(seg.Namespace, seg.Name).Add(float64(s.Exited))
		m.SegmentEvaluationTotal.WithLabelValues(seg.Namespace, seg.Name, "success").Inc()
	}
}

// exportStatus exports what status already says, on every reconcile: the
// size of the last evaluation (a restarted operator reports it before the
// source's next snapshot), and the event counters at 0, so rate() sees
// them from the first scrape.
func (r *SegmentReconciler) exportStatus(seg *retentionv1.Segment) {
	m := r.Metrics
	if m == nil {
		return
	}
	ns, name := seg.Namespace, seg.Name
	if seg.Status.SnapshotID != 0 {
		m.SegmentSize.WithLabelValues(ns, name).Set(float64(seg.Status.Size))
	}
	m.SegmentEntriesTotal.WithLabelValues(ns, name)
	m.SegmentExitsTotal.WithLabelValues(ns, name)
	for _, result := range []string{"success", "failure"} {
		m.SegmentEvaluationTotal.WithLabelValues(ns, name, result)
	}
}

func readyMessage(seg *retentionv1.Segment) string {
	return fmt.Sprintf("%d members (%s%% of the source) on snapshot %d", seg.Status.Size, seg.Status.SharePercent, seg.Status.SnapshotID)
}

// finalize removes the membership and the metrics, then lets the Segment go.
func (r *SegmentReconciler) finalize(ctx context.Context, seg *retentionv1.Segment) error {
	return releaseFinalizer(ctx, r.Client, r.Stores, seg, membershipFinalizer, func(st store.Store) error {
		if err := st.MembershipDelete(ctx, seg.Namespace+"/"+seg.Name); err != nil {
			return fmt.Errorf("deleting membership: %w", err)
		}
		if r.Metrics != nil {
			r.Metrics.ForgetSegment(seg.Namespace, seg.Name)
		}
		r.rules.forget(seg.UID)
		r.batches.forget(seg)
		return nil
	})
}

// ruleCache keeps each Segment's compiled rule for its generation and its
// source's generation (the source's attribute schema), so a rule is
// compiled once per generation, not once per evaluation.
type ruleCache struct {
	mu      sync.Mutex
	entries map[types.UID]ruleEntry
}

type ruleEntry struct {
	segGen, srcGen int64
	rule           *segment.Rule
	err            error
}

func (c *ruleCache) compile(seg *retentionv1.Segment, cs *retentionv1.CustomerSource) (*segment.Rule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.UID]ruleEntry{}
	}
	if e, ok := c.entries[seg.UID]; ok && e.segGen == seg.Generation && e.srcGen == cs.Generation {
		return e.rule, e.err
	}
	rule, err := segment.Compile(seg.Spec.Rule, schemaOf(cs))
	if err != nil {
		var re *segment.RuleError
		if errors.As(err, &re) {
			err = stalled(retentionv1.ReasonInvalidRule, "%s", re.Message)
		}
	}
	c.entries[seg.UID] = ruleEntry{segGen: seg.Generation, srcGen: cs.Generation, rule: rule, err: err}
	return rule, err
}

func (c *ruleCache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, uid)
}

// schemaOf is the attribute schema and custom score names a source declares.
func schemaOf(cs *retentionv1.CustomerSource) segment.Schema {
	s := segment.Schema{Attributes: map[string]customer.AttributeType{}}
	for _, a := range cs.Spec.Mapping.Attributes {
		t := customer.AttributeType(a.Type)
		if t == "" {
			t = customer.String
		}
		s.Attributes[a.Name] = t
	}
	for _, c := range cs.Spec.Scoring.CustomScores {
		s.CustomScores = append(s.CustomScores, c.Name)
	}
	return s
}

// SetupWithManager registers the reconciler; a CustomerSource's change
// (a new snapshot, a new schema) re-reconciles the Segments that select from it.
func (r *SegmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if r.Stores == nil {
		return errors.New("segment reconciler needs a store")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &retentionv1.Segment{}, indexSourceRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.Segment).Spec.SourceRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.Segment{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletionPredicate()))).
		Watches(&retentionv1.CustomerSource{}, handler.EnqueueRequestsFromMapFunc(
			referrers(r.Client, func() client.ObjectList { return &retentionv1.SegmentList{} }, indexSourceRef))).
		Named("segment").
		Complete(r)
}

// clonePreview gives a preview Segment (kubectl retention preview segment)
// the current membership of the Segment it previews before its first
// evaluation: the evaluation then applies only the changes to it, and its
// entered and exited counts are against that membership.
func clonePreview(ctx context.Context, st store.Store, seg *retentionv1.Segment) error {
	of := seg.Annotations[retentionv1.PreviewOfAnnotation]
	if of == "" || !seg.IsPreview() || seg.Status.SnapshotID != 0 {
		return nil
	}
	err := st.MembershipClone(ctx, seg.Namespace+"/"+of, seg.Namespace+"/"+seg.Name)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil // nothing to compare with (all entries), or cloned by an earlier try
	}
	return err
}
