package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/source"
	"github.com/retention-dev/retention-operator/internal/store"
)

// snapshotsFinalizer removes a source's snapshots from the store when the
// CustomerSource is deleted.
const snapshotsFinalizer = "retention.dev/snapshots"

// snapshotsKept is how many committed snapshots of a source the store keeps.
const snapshotsKept = 3

// CustomerSourceReconciler keeps a CustomerSource scored on its refresh
// interval: read the source, score every customer, write a snapshot to the
// store and make it current, report the fit and the population in status.
// controller-runtime never reconciles one object twice at once, so there
// is one scoring at a time per source.
type CustomerSourceReconciler struct {
	client.Client
	// APIReader reads Secrets and ConfigMaps uncached.
	APIReader client.Reader
	Recorder  EventRecorder
	Clock     Clock
	// RetryAfter bounds the wait before looking again for a missing
	// dependency that no watch reports. If zero, 5m.
	RetryAfter time.Duration
	// Stores opens the data-plane store where snapshots are written.
	Stores *StoreProvider
	// Metrics, when set, receives the source metrics.
	Metrics *metrics.Metrics
}

// +kubebuilder:rbac:groups=retention.dev,resources=customersources,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=retention.dev,resources=customersources/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile scores the source when it is due and requeues for the next refresh.
func (r *CustomerSourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cs retentionv1.CustomerSource
	if err := r.Get(ctx, req.NamespacedName, &cs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cs.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &cs)
	}
	if err := ensureFinalizer(ctx, r.Client, &cs, snapshotsFinalizer); err != nil {
		return ctrl.Result{}, err
	}

	r.exportStatus(&cs)
	patcher := newStatusPatcher(r.Client, &cs)
	now := r.Clock.Now()

	// 1. Suspended: nothing is refreshed; the current snapshot stays current.
	if cs.Spec.Suspend {
		cs.Status.NextScoredTime = nil
		setCondition(&cs, retentionv1.ConditionReconciling, metav1.ConditionFalse, retentionv1.ReasonSuspended, "refreshes are suspended")
		return ctrl.Result{}, patcher.Patch(ctx, &cs)
	}
	// 2. Not due (same spec, same data, before the next refresh): come back when it is.
	revision, known := r.inputRevision(ctx, &cs)
	if wait, due := r.due(&cs, now, revision, known); !due {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	// A scoring is costly and makes a snapshot: confirm it is due on the
	// object as the API server has it, not on a cache that may not have
	// seen the status of the scoring that just finished (a reconcile queued
	// by that scoring's own finalizer patch would otherwise score the same
	// data twice).
	fresh, err := r.latest(ctx, &cs)
	if err != nil || fresh == nil { // fresh is nil when the source is gone
		return ctrl.Result{}, err
	}
	if wait, due := r.due(fresh, now, revision, known); !due {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	// The request (retention.dev/requestedAt) this scoring handles, as read
	// before the source is: a later request is scored again.
	requested, _ := reconcileRequest(fresh)
	// 3. Read the Secrets and ConfigMaps the source refers to, and score.
	in, err := r.resolveInput(ctx, &cs)
	var msg string
	if err == nil {
		msg, err = r.score(ctx, &cs, in, now)
	}
	if err == nil {
		cs.Status.InputRevision = revision
	}
	if requested != "" {
		cs.Status.LastHandledReconcileAt = requested
	}
	// 4. Record the outcome; come back at the next refresh (or the backoff).
	interval := durationOr(cs.Spec.RefreshInterval, time.Hour)
	next := now.Add(interval)
	if err != nil {
		next = now.Add(r.failureBackoff(&cs, now, interval))
		r.countScoring(&cs, "failure")
	}
	cs.Status.NextScoredTime = &metav1.Time{Time: next}
	// A store outage is retried on the failure backoff too: a scoring
	// costs a read of the source and a fit before it writes anything.
	return patcher.finish(ctx, r.Recorder, &cs, err, msg, requeue{Retry: next.Sub(now), Outage: next.Sub(now), Next: next.Sub(now)})
}

// latest reads the source uncached (APIReader), or returns cs when the
// reconciler has no APIReader; nil when the source is gone.
func (r *CustomerSourceReconciler) latest(ctx context.Context, cs *retentionv1.CustomerSource) (*retentionv1.CustomerSource, error) {
	if r.APIReader == nil {
		return cs, nil
	}
	var fresh retentionv1.CustomerSource
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cs), &fresh); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return &fresh, nil
}

// due reports whether the source should be scored now, or how long to wait.
// A spec change (new generation), new data in a referenced ConfigMap or
// Secret (a new input revision) or a request not handled yet (a new value of
// the retention.dev/requestedAt annotation) is due at once, also while a
// failed scoring backs off; otherwise the next refresh time in status
// decides.
func (r *CustomerSourceReconciler) due(cs *retentionv1.CustomerSource, now time.Time, inputRevision string, known bool) (time.Duration, bool) {
	ready := meta.FindStatusCondition(cs.Status.Conditions, retentionv1.ConditionReady)
	if ready == nil || ready.ObservedGeneration != cs.Generation || cs.Status.NextScoredTime == nil {
		return 0, true
	}
	if _, pending := reconcileRequest(cs); pending {
		return 0, true
	}
	if !known || inputRevision != cs.Status.InputRevision {
		// A referenced object is missing (resolveInput will say which) or
		// changed since the last successful scoring: a watch brought us here.
		return 0, true
	}
	if wait := cs.Status.NextScoredTime.Sub(now); wait > 0 {
		return wait, false
	}
	return 0, true
}

// reconcileRequest returns the value of the retention.dev/requestedAt
// annotation, and whether it asks for a scoring not handled yet: it is set
// and differs from status.lastHandledReconcileAt.
func reconcileRequest(cs *retentionv1.CustomerSource) (string, bool) {
	v := cs.Annotations[retentionv1.ReconcileRequestedAnnotation]
	return v, v != "" && v != cs.Status.LastHandledReconcileAt
}

// failureBackoff grows with how long the source has been failing: the wait
// is as long as the failure has lasted, between 30s and the interval, so
// retries double without keeping a counter.
func (r *CustomerSourceReconciler) failureBackoff(cs *retentionv1.CustomerSource, now time.Time, interval time.Duration) time.Duration {
	d := 30 * time.Second
	if c := meta.FindStatusCondition(cs.Status.Conditions, retentionv1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
		if since := now.Sub(c.LastTransitionTime.Time); since > d {
			d = since
		}
	}
	return min(d, interval, retryAfter(r.RetryAfter))
}

// score reads and scores the source into a new current snapshot and
// records the outcome in status. It returns the Ready message.
func (r *CustomerSourceReconciler) score(ctx context.Context, cs *retentionv1.CustomerSource, in *sourceInput, now time.Time) (string, error) {
	opts := scoringOptions(cs, r.Clock)
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return "", err
	}
	key := cs.Namespace + "/" + cs.Name
	// The erased customers (CustomerErasure) are left out as they are
	// read; an erasure that runs while the snapshot is written is applied
	// at its Commit (ErasedThrough).
	erased, err := st.TombstonesGet(ctx, key)
	if err != nil {
		return "", fmt.Errorf("reading the erased customers: %w", err)
	}
	reader := newReader(cs, in)
	if erased.Len() > 0 {
		reader = &source.WithoutErased{Reader: reader, Erased: erased.ErasedBytes}
	}
	w, err := st.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: key, Meta: map[string]any{"generation": cs.Generation}, ErasedThrough: erased.Through})
	if err != nil {
		return "", waiting(retentionv1.ReasonStoreUnavailable, "starting a snapshot: %v", err)
	}
	defer func() { _ = w.Abort() }()

	var bands riskBands
	emit := func(c *customer.Scored) error {
		bands.add(c.Scores.PAlive)
		if err := w.Add(c); err != nil {
			return &snapshotWriteError{err: err}
		}
		return nil
	}
	res, err := scoring.Score(ctx, reader, opts, emit)
	if err != nil {
		return "", r.scoringFailure(cs, err)
	}
	snap, err := w.Commit()
	if err != nil {
		return "", waiting(retentionv1.ReasonStoreUnavailable, "committing the snapshot: %v", err)
	}
	if _, err := st.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: key, Keep: snapshotsKept}); err != nil {
		// The new snapshot is current; old ones wait for the next prune.
		ctrl.LoggerFrom(ctx).Error(err, "pruning old snapshots")
	}
	recordScoring(cs, res, snap.ID, now, r.Clock.Now().Sub(now))
	r.observe(cs, res, &bands, now)
	if res.Rejected > 0 && r.Recorder != nil {
		r.Recorder.Eventf(cs, nil, corev1.EventTypeWarning, "RejectedRows", "Score",
			"%d of %d rows rejected; first: %s", res.Rejected, res.Source.Rows, firstRejection(res.Source))
	}
	ctrl.LoggerFrom(ctx).Info("scored", "customers", res.Customers, "transactions", res.Transactions,
		"rejectedRows", res.Rejected, "erasedRecords", res.Source.Erased, "model", res.Selected, "snapshot", snap.ID, "duration", cs.Status.Duration.Duration)
	return fmt.Sprintf("scored %d customers with %s (%s)", res.Customers, res.Selected, selectionText(res)), nil
}

// snapshotWriteError is the snapshot writer's error, as it comes back
// through scoring (which wraps it): it tells a store that went away while
// the rows were written from a source that could not be read (whose
// errors may be network errors too: an HTTP or PostgreSQL source).
type snapshotWriteError struct{ err error }

func (e *snapshotWriteError) Error() string { return e.err.Error() }
func (e *snapshotWriteError) Unwrap() error { return e.err }

// scoringFailure maps a scoring error to a condition: a snapshot write
// cut off by the store's outage waits for the store (StoreUnavailable),
// bad data waits for better data (the previous snapshot stays current), a
// custom score that cannot compile stalls until the spec changes.
func (r *CustomerSourceReconciler) scoringFailure(cs *retentionv1.CustomerSource, err error) error {
	var tooMany *source.TooManyRejectedError
	var missing *source.MissingColumnError
	var custom *scoring.CustomScoreError
	var write *snapshotWriteError
	if errors.As(err, &write) && store.IsUnavailable(write.err) {
		return waiting(retentionv1.ReasonStoreUnavailable, "%s", storeUnreachable(fmt.Errorf("writing the snapshot: %w", write.err)))
	}
	switch {
	case errors.As(err, &tooMany):
		cs.Status.RejectedRows = tooMany.Report.Rejected
		cs.Status.RejectedSamples = rejections(tooMany.Report)
		return waiting(retentionv1.ReasonTooManyRejectedRows, "%v; the previous snapshot stays current", tooMany)
	case errors.As(err, &missing):
		return waiting(retentionv1.ReasonReadFailed, "%v", missing)
	case errors.As(err, &custom):
		return stalled(retentionv1.ReasonInvalidRule, "custom score %q: %v", custom.Name, custom.Err)
	case errors.Is(err, scoring.ErrInvalidOptions):
		return stalled(retentionv1.ReasonInvalidSpec, "%v", err)
	case errors.Is(err, scoring.ErrNoCustomers):
		return waiting(retentionv1.ReasonScoringFailed, "%v", err)
	}
	return waiting(retentionv1.ReasonReadFailed, "reading the source: %v", err)
}

// finalize drops the source's snapshots and metrics, then lets it go.
func (r *CustomerSourceReconciler) finalize(ctx context.Context, cs *retentionv1.CustomerSource) error {
	return releaseFinalizer(ctx, r.Client, r.Stores, cs, snapshotsFinalizer, func(st store.Store) error {
		if err := st.SnapshotDeleteBySource(ctx, cs.Namespace+"/"+cs.Name); err != nil {
			return fmt.Errorf("deleting snapshots: %w", err)
		}
		if r.Metrics != nil {
			r.Metrics.ForgetSource(cs.Namespace, cs.Name)
		}
		return nil
	})
}

// SetupWithManager registers the reconciler: spec changes (generation), a
// new retention.dev/requestedAt value (which leaves the generation alone)
// and the start of a deletion reconcile the source, and so do changes of
// referenced ConfigMaps (a metadata-only watch) and, every RetryAfter, a
// pass over the sources that refer to Secrets (secretRecheck: the operator
// may get Secrets but not watch them).
func (r *CustomerSourceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if r.Stores == nil {
		return errors.New("customersource reconciler needs a store")
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &retentionv1.CustomerSource{}, indexConfigMapNames,
		func(o client.Object) []string { return sourceConfigMapNames(o.(*retentionv1.CustomerSource)) }); err != nil {
		return err
	}
	newList := func() client.ObjectList { return &retentionv1.CustomerSourceList{} }
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.CustomerSource{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, reconcileRequestedPredicate(), deletionPredicate()))).
		WatchesRawSource(r.secretRecheck(mgr)).
		WatchesMetadata(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexConfigMapNames))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Named("customersource").
		Complete(r)
}

// deletionPredicate passes updates that start a deletion.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// reconcileRequestedPredicate passes updates that set a new value of the
// retention.dev/requestedAt annotation, as Flux's ReconcileRequestedPredicate
// does: other annotation and label changes still reconcile nothing.
func reconcileRequestedPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return false
		}
		v := e.ObjectNew.GetAnnotations()[retentionv1.ReconcileRequestedAnnotation]
		return v != "" && v != e.ObjectOld.GetAnnotations()[retentionv1.ReconcileRequestedAnnotation]
	}}
}
