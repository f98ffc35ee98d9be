package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
)

// CustomerErasureReconciler forgets customers on request: it reads their
// ids from the erasure's Secret, erases them from the store
// (store.ErasureStore), records the counts in status and removes the
// Secret's data. The ids never reach a log, an Event or a status.
type CustomerErasureReconciler struct {
	client.Client
	// APIReader reads the Secret uncached (get only: the operator does not
	// watch Secrets).
	APIReader client.Reader
	Recorder  EventRecorder
	Clock     Clock
	Stores    *StoreProvider
	// RetryAfter is how long to wait before looking again for a missing
	// source or Secret. If zero, this defaults to 5m.
	RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=retention.dev,resources=customererasures,verbs=list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=customererasures/status,verbs=patch
// +kubebuilder:rbac:groups=retention.dev,resources=customersources,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile erases the customers once: a completed or failed erasure is
// final (the spec is immutable).
func (r *CustomerErasureReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ce retentionv1.CustomerErasure
	if err := r.Get(ctx, req.NamespacedName, &ce); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ce.Status.Phase == retentionv1.ErasureCompleted || ce.Status.Phase == retentionv1.ErasureFailed {
		return ctrl.Result{}, nil
	}
	patcher := newStatusPatcher(r.Client, &ce)
	msg, err := r.erase(ctx, &ce, patcher)
	var s *stalledError
	switch {
	case err == nil:
		ce.Status.Phase = retentionv1.ErasureCompleted
	case errors.As(err, &s):
		ce.Status.Phase = retentionv1.ErasureFailed
	case ce.Status.Phase == "":
		ce.Status.Phase = retentionv1.ErasurePending
	}
	q := requeue{Retry: r.RetryAfter}
	var pr *progressError
	if errors.As(err, &pr) {
		q.Next = 2 * time.Second // the cache catching up with our own status
	}
	return patcher.finish(ctx, r.Recorder, &ce, err, msg, q)
}

// erase runs the erasure's steps and returns the Ready message.
func (r *CustomerErasureReconciler) erase(ctx context.Context, ce *retentionv1.CustomerErasure, patcher *statusPatcher) (string, error) {
	key := types.NamespacedName{Namespace: ce.Namespace, Name: ce.Spec.SourceRef.Name}
	// A deleted source is no reason to wait: its snapshots went with it,
	// but its runs' targets and the records that outlive them did not, and
	// the tombstones keep the customers out of a source made again under
	// the name. The Ready message says the source is gone.
	sourceGone := ""
	if err := r.Get(ctx, key, &retentionv1.CustomerSource{}); apierrors.IsNotFound(err) {
		sourceGone = fmt.Sprintf(" (customersource %s does not exist: nothing was in its snapshots; its runs and records were erased)", key.Name)
	} else if err != nil {
		return "", fmt.Errorf("reading customersource %s: %w", key, err)
	}
	var sec corev1.Secret
	ref := ce.Spec.CustomerIDsSecretRef
	if err := getReference(ctx, r.APIReader, types.NamespacedName{Namespace: ce.Namespace, Name: ref.Name}, &sec, "secret", retentionv1.ReasonSecretNotFound); err != nil {
		return "", err
	}
	if sec.Type != retentionv1.CustomerIDsSecretType {
		// The operator clears the Secret afterwards: only a Secret made for
		// it, never one an erasure could name to wipe it.
		return "", stalled(retentionv1.ReasonInvalidSecret, "secret %s is of type %q, not %s: create the ids' Secret with --type=%s",
			ref.Name, sec.Type, retentionv1.CustomerIDsSecretType, retentionv1.CustomerIDsSecretType)
	}
	if ce.Status.Erased == nil {
		if err := r.apply(ctx, ce, &sec, key.String(), patcher); err != nil {
			return "", err
		}
	}
	if err := r.clearSecret(ctx, &sec, ce.UID); err != nil {
		return "", err
	}
	now := metav1.NewTime(r.Clock.Now())
	ce.Status.CompletionTime = &now
	n := ce.Status.Erased
	return fmt.Sprintf("erased %d customers (%d already erased): %d snapshot records, %d segment memberships, %d campaign targets (%d skipped), %d ledger and holdout records, %d opt-outs; the Secret's data is removed%s",
		n.Customers, n.AlreadyErased, n.SnapshotRows, n.Memberships, n.Targets, n.SkippedTargets, n.Records, n.OptOuts, sourceGone), nil
}

// apply erases the Secret's customers from the store and records the
// counts in status at once, so that they survive a restart before the
// Secret is cleared (a second apply would find the customers erased
// already, and count them so).
func (r *CustomerErasureReconciler) apply(ctx context.Context, ce *retentionv1.CustomerErasure, sec *corev1.Secret, source string, patcher *statusPatcher) error {
	ref := ce.Spec.CustomerIDsSecretRef
	data, ok := sec.Data[ref.Key]
	if !ok {
		if sec.Annotations[retentionv1.ErasedByAnnotation] == string(ce.UID) {
			// Cleared by this erasure, whose status this cache has not
			// seen yet: the next reconcile will.
			return progressing(retentionv1.ReasonErasing, "the Secret is cleared; waiting for the status to show it")
		}
		return waiting(retentionv1.ReasonSecretKeyNotFound, "secret %s has no key %s", ref.Name, ref.Key)
	}
	ids, err := store.ParseCustomerIDs(data)
	if err != nil {
		return stalled(retentionv1.ReasonInvalidSecret, "secret %s key %s: %v", ref.Name, ref.Key, err)
	}
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return err
	}
	start := metav1.NewTime(r.Clock.Now())
	ce.Status.StartTime, ce.Status.Phase = &start, retentionv1.ErasureErasing
	res, err := st.ErasureApply(ctx, &store.ErasureApplyParams{Source: source, CustomerIDs: ids})
	if err != nil {
		return err
	}
	ce.Status.Erased = &retentionv1.ErasureCounts{
		Customers: int64(len(ids)), Tombstones: res.Tombstones, AlreadyErased: res.AlreadyErased,
		SnapshotRows: res.SnapshotRows, Memberships: res.Memberships, Segments: res.Segments,
		Targets: res.Targets, SkippedTargets: res.SkippedTargets, Records: res.Records, OptOuts: res.OptOuts,
	}
	markReady(ce, progressing(retentionv1.ReasonErasing, "%d customers erased; clearing the Secret", len(ids)), "", "")
	return patcher.Patch(ctx, ce)
}

// lastApplied is the annotation `kubectl apply` keeps the whole applied
// object in: for a Secret applied with stringData, the ids in the clear.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// clearSecret removes the Secret's data (and the copy `kubectl apply`
// keeps of it) and marks it with the erasure's UID.
func (r *CustomerErasureReconciler) clearSecret(ctx context.Context, sec *corev1.Secret, uid types.UID) error {
	_, applied := sec.Annotations[lastApplied]
	if len(sec.Data) == 0 && !applied && sec.Annotations[retentionv1.ErasedByAnnotation] == string(uid) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{retentionv1.ErasedByAnnotation: string(uid), lastApplied: nil}},
		"data":     nil,
	})
	if err != nil {
		return err
	}
	if err := r.Patch(ctx, sec, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("clearing secret %s: %w", sec.Name, err)
	}
	return nil
}

// SetupWithManager registers the reconciler: a new erasure is reconciled
// (the spec is immutable), and again every RetryAfter while its source or
// Secret is missing.
func (r *CustomerErasureReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if r.Stores == nil {
		return errors.New("customererasure reconciler needs a store")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.CustomerErasure{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("customererasure").
		Complete(r)
}
