package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// SegmentReconciler keeps a Segment's membership current with its source's
// scored snapshot.
type SegmentReconciler struct {
	client.Client
	Recorder   EventRecorder
	Clock      Clock
	RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=retention.dev,resources=segments,verbs=get;list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=segments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=retention.dev,resources=customersources,verbs=get;list;watch

// Reconcile resolves the Segment's source and evaluates its rule.
func (r *SegmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var seg retentionv1.Segment
	if err := r.Get(ctx, req.NamespacedName, &seg); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &seg)
	before := slices.Clone(seg.Status.Conditions)

	err := r.reconcileSource(ctx, &seg)
	if err == nil {
		err = notImplemented("segment evaluation")
	}
	markReady(&seg, err, retentionv1.ReasonSucceeded, "membership is current")
	eventForTransition(r.Recorder, &seg, before)
	if perr := patcher.Patch(ctx, &seg); perr != nil {
		return ctrl.Result{}, perr
	}
	return requeueFor(err, retryAfter(r.RetryAfter))
}

// reconcileSource checks that the referenced CustomerSource exists and has
// a current snapshot.
func (r *SegmentReconciler) reconcileSource(ctx context.Context, seg *retentionv1.Segment) error {
	var cs retentionv1.CustomerSource
	key := types.NamespacedName{Namespace: seg.Namespace, Name: seg.Spec.SourceRef.Name}
	if err := r.Get(ctx, key, &cs); err != nil {
		if apierrors.IsNotFound(err) {
			return waiting(retentionv1.ReasonSourceNotFound, "customersource %s not found", key)
		}
		return fmt.Errorf("reading customersource %s: %w", key, err)
	}
	if cs.Status.SnapshotID == 0 {
		return waiting(retentionv1.ReasonSourceNotReady, "customersource %s has no scored snapshot yet", key)
	}
	return nil
}

// SetupWithManager registers the reconciler; a CustomerSource's change
// (a new snapshot) re-reconciles the Segments that select from it.
func (r *SegmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &retentionv1.Segment{}, indexSourceRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.Segment).Spec.SourceRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.Segment{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&retentionv1.CustomerSource{}, handler.EnqueueRequestsFromMapFunc(
			referrers(r.Client, func() client.ObjectList { return &retentionv1.SegmentList{} }, indexSourceRef))).
		Named("segment").
		Complete(r)
}
