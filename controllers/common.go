package controllers

import (
	"context"
	"errors"
	"fmt"
	"github.com/retention-dev/retention-operator/internal/clock"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Clock tells the time. Reconcilers take every "now" from it so tests can
// drive time, as in the kubebuilder CronJob tutorial.
type Clock = clock.Clock

// RealClock is the wall clock.
type RealClock = clock.Real

// EventRecorder records Events about an object (events.k8s.io/v1 shape).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// waitingError is a dependency that is not there yet (a Secret, a source):
// Ready=False with the reason, an Event, and a retry when the dependency
// appears (watches) or after a backoff.
type waitingError struct {
	Reason  string
	Message string
}

func (e *waitingError) Error() string { return e.Message }

// stalledError is a spec that can never work as written (a rule that does
// not compile): Ready=False, Stalled=True, an Event, and no retry until the
// spec changes.
type stalledError struct {
	Reason  string
	Message string
}

func (e *stalledError) Error() string { return e.Message }

// progressError is work under way (a run materializing, sending or
// measuring): Ready=False with the phase as reason, Reconciling=True (kstatus),
// and a requeue at the time the work needs looking at again.
type progressError struct {
	Reason  string
	Message string
}

func (e *progressError) Error() string { return e.Message }

// doneError is a final state that is not success and not a fault (a run
// cancelled by a newer one): Ready=False with the reason, neither
// Reconciling nor Stalled, and no retry.
type doneError struct {
	Reason  string
	Message string
}

func (e *doneError) Error() string { return e.Message }

func progressing(reason, format string, args ...any) error {
	return &progressError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func waiting(reason, format string, args ...any) error {
	return &waitingError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func stalled(reason, format string, args ...any) error {
	return &stalledError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// conditionsHolder is a kind of this API whose status has conditions.
type conditionsHolder interface {
	client.Object
	GetConditions() *[]metav1.Condition
	SetObservedGeneration(int64)
}

// setCondition sets one condition, stamping the object's generation.
func setCondition(obj conditionsHolder, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(obj.GetConditions(), metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: obj.GetGeneration(),
	})
}

// markReady records the outcome of a reconciliation in the conditions:
// nil is Ready=True with the given reason and message; a waiting or stalled
// error is Ready=False with its reason and message; any other error that
// shows the store's database unreachable (store.IsUnavailable: a refused
// or lost connection, the server shutting down), wherever in the reconcile
// it came from, is Ready=False reason=StoreUnavailable; anything else is
// Ready=False reason=Progressing with the error.
func markReady(obj conditionsHolder, err error, okReason, okMessage string) {
	obj.SetObservedGeneration(obj.GetGeneration())
	var w *waitingError
	var s *stalledError
	var pr *progressError
	var d *doneError
	if !errors.As(err, &pr) {
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionReconciling)
	}
	switch {
	case err == nil:
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionTrue, okReason, okMessage)
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionStalled)
	case errors.As(err, &d):
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, d.Reason, d.Message)
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionStalled)
	case pr != nil:
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, pr.Reason, pr.Message)
		setCondition(obj, retentionv1.ConditionReconciling, metav1.ConditionTrue, pr.Reason, pr.Message)
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionStalled)
	case errors.As(err, &s):
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, s.Reason, s.Message)
		setCondition(obj, retentionv1.ConditionStalled, metav1.ConditionTrue, s.Reason, s.Message)
	case errors.As(err, &w):
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, w.Reason, w.Message)
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionStalled)
	case store.IsUnavailable(err):
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, retentionv1.ReasonStoreUnavailable, storeUnreachable(err))
		meta.RemoveStatusCondition(obj.GetConditions(), retentionv1.ConditionStalled)
	default:
		setCondition(obj, retentionv1.ConditionReady, metav1.ConditionFalse, retentionv1.ReasonProgressing, err.Error())
	}
}

// notImplemented is the honest Ready condition of a kind whose references
// resolve but whose real work this version of the operator cannot do yet.
func notImplemented(what string) error {
	return waiting(retentionv1.ReasonNotImplemented, "references resolve, but %s is not built in this version of the operator", what)
}

// statusPatcher writes an object's status as a merge patch against the
// copy taken when reconciliation started, and only when it changed.
type statusPatcher struct {
	client client.Client
	before conditionsHolder
	// optimistic makes the patch carry the resourceVersion read, so that
	// it fails with a conflict when the object changed since: for a
	// transition that must happen once (a run's end, counted and
	// announced), computed from a cache that may be stale.
	optimistic bool
	// patched is set once the status is written (or had nothing to
	// write); a conflicting optimistic patch leaves it false.
	patched bool
}

func newStatusPatcher(c client.Client, obj conditionsHolder) *statusPatcher {
	return &statusPatcher{client: c, before: obj.DeepCopyObject().(conditionsHolder)}
}

// storeRetry is how soon a reconcile that found the store unreachable
// runs again: often enough that the objects recover within seconds of the
// database's return, seldom enough that an outage of any length costs each
// object a failed connect every few seconds, not a hot loop (nor the
// doubling backoff of controller-runtime, which after a few minutes of
// outage waits many minutes past the database's return).
const storeRetry = 10 * time.Second

// storeUnreachable is the Ready message of a store outage: the driver's
// error, which names the store's address and the call, never a customer.
func storeUnreachable(err error) string {
	return "store unreachable: " + err.Error()
}

// storeOutage reports whether a reconcile's outcome is the store being
// unreachable: a waiting error with reason StoreUnavailable (the store
// could not be opened, a snapshot not started) or an error that
// store.IsUnavailable recognizes and that no reconciler turned into a
// waiting, stalled, progress or done outcome.
func storeOutage(err error) bool {
	var w *waitingError
	if errors.As(err, &w) {
		return w.Reason == retentionv1.ReasonStoreUnavailable
	}
	var s *stalledError
	var pr *progressError
	var d *doneError
	if errors.As(err, &s) || errors.As(err, &pr) || errors.As(err, &d) {
		return false
	}
	return store.IsUnavailable(err)
}

// requeue says when a reconcile wants to run again.
type requeue struct {
	// Retry is the wait after a waiting error (a missing dependency that no
	// watch reports). If zero, retryAfter's default.
	Retry time.Duration
	// Outage, when above zero, is the wait after the store was found
	// unreachable. If zero, storeRetry, or Retry when that is shorter.
	Outage time.Duration
	// Next, when above zero, brings the object back after a success or
	// while work progresses: a campaign's next slot, a run's window end, a
	// source's next refresh. Zero: only watches bring it back.
	Next time.Duration
}

// finish is the one way a reconcile ends: it sets Ready from err (okMessage
// when err is nil) and Reconciling/Stalled per kstatus, records an Event if
// Ready changed, patches the status when it changed, and turns err into a
// result: stalled is not retried, waiting retries after q.Retry, a store
// outage after q.Outage (storeRetry), progress and success come back after
// q.Next, anything else is returned so controller-runtime backs off.
func (p *statusPatcher) finish(ctx context.Context, rec EventRecorder, obj conditionsHolder, err error, okMessage string, q requeue) (reconcile.Result, error) {
	markReady(obj, err, retentionv1.ReasonSucceeded, okMessage)
	eventForTransition(rec, obj, *p.before.GetConditions())
	if perr := p.Patch(ctx, obj); perr != nil {
		return reconcile.Result{}, perr
	}
	res, rerr := requeueFor(err, q)
	if storeOutage(err) {
		// Not returned to controller-runtime (its doubling backoff would
		// outlast the outage), so logged here.
		log.FromContext(ctx).Info("store unavailable; retrying", "after", res.RequeueAfter, "error", err.Error())
	}
	return res, rerr
}

// getReference reads a referenced object of this API; a missing one is a
// waiting error with the reason and "<kind> <namespace>/<name> not found".
func getReference(ctx context.Context, c client.Reader, key types.NamespacedName, obj client.Object, kind, notFoundReason string) error {
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return waiting(notFoundReason, "%s %s not found", kind, key)
		}
		return fmt.Errorf("reading %s %s: %w", kind, key, err)
	}
	return nil
}

func (p *statusPatcher) Patch(ctx context.Context, obj client.Object) error {
	patch := client.MergeFrom(p.before)
	data, err := patch.Data(obj)
	if err != nil {
		return fmt.Errorf("computing status patch: %w", err)
	}
	if string(data) == "{}" {
		p.patched = true
		return nil
	}
	if p.optimistic {
		patch = client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	}
	if err := p.client.Status().Patch(ctx, obj, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patching status: %w", err)
	}
	p.patched = true
	return nil
}

// eventForTransition records an Event when Ready changed: Normal when it
// became True, Warning with the reason when it became (or stays, with a new
// reason) False.
func eventForTransition(rec EventRecorder, obj conditionsHolder, before []metav1.Condition) {
	if rec == nil {
		return
	}
	now := meta.FindStatusCondition(*obj.GetConditions(), retentionv1.ConditionReady)
	if now == nil {
		return
	}
	was := meta.FindStatusCondition(before, retentionv1.ConditionReady)
	if was != nil && was.Status == now.Status && was.Reason == now.Reason && was.Message == now.Message {
		return
	}
	typ := "Normal"
	if now.Status != metav1.ConditionTrue {
		typ = "Warning"
	}
	rec.Eventf(obj, nil, typ, now.Reason, "Reconcile", "%s", now.Message)
}

// requeueFor turns a reconciliation error into a result: a stalled spec is
// not retried (a spec change brings it back), a missing dependency waits for
// its watch or retries after q.Retry, an unreachable store (storeOutage) is
// tried again after q.Outage (storeRetry by default), success and progress
// come back after q.Next (if set), anything else is returned so
// controller-runtime backs off.
func requeueFor(err error, q requeue) (reconcile.Result, error) {
	var w *waitingError
	var s *stalledError
	var pr *progressError
	var d *doneError
	switch {
	case err == nil, errors.As(err, &pr):
		return reconcile.Result{RequeueAfter: max(q.Next, 0)}, nil
	case errors.As(err, &s), errors.As(err, &d):
		return reconcile.Result{}, nil
	case storeOutage(err):
		return reconcile.Result{RequeueAfter: outageRetry(q)}, nil
	case errors.As(err, &w):
		return reconcile.Result{RequeueAfter: retryAfter(q.Retry)}, nil
	default:
		return reconcile.Result{}, err
	}
}

// outageRetry is the wait after a store outage: q.Outage if set, else
// storeRetry or q.Retry, whichever is shorter.
func outageRetry(q requeue) time.Duration {
	if q.Outage > 0 {
		return q.Outage
	}
	if q.Retry > 0 && q.Retry < storeRetry {
		return q.Retry
	}
	return storeRetry
}

// referrers maps an object to the reconcile requests of the objects in its
// namespace that refer to it by name through the field index.
func referrers(c client.Client, newList func() client.ObjectList, index string) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()}); err != nil {
			return nil
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, it := range items {
			o, ok := it.(client.Object)
			if !ok {
				continue
			}
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
		}
		return reqs
	}
}

// isReady reports whether the Ready condition is True.
func isReady(conds []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conds, retentionv1.ConditionReady)
}

// ensureFinalizer adds a finalizer that lets the operator clean the store
// before the object goes.
func ensureFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	if controllerutil.ContainsFinalizer(obj, finalizer) {
		return nil
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	controllerutil.AddFinalizer(obj, finalizer)
	if err := c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// releaseFinalizer runs cleanup against the store, then removes the
// finalizer so the deleted object goes. A store that is down keeps the
// object until it is back: nothing is left behind in the store.
func releaseFinalizer(ctx context.Context, c client.Client, stores *StoreProvider, obj client.Object, finalizer string, cleanup func(store.Store) error) error {
	if !controllerutil.ContainsFinalizer(obj, finalizer) {
		return nil
	}
	st, err := stores.Get(ctx)
	if err != nil {
		return err
	}
	if err := cleanup(st); err != nil {
		return err
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	controllerutil.RemoveFinalizer(obj, finalizer)
	return c.Patch(ctx, obj, patch)
}
