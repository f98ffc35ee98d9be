package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/store"
)

// runFinalizer folds a deleted run's counts into its campaign's tally in
// the store and removes its Job and Secret from the jobs namespace (owner
// references cannot cross namespaces).
const runFinalizer = "retention.dev/run"

// maxFollowUpJobs bounds how often a run launches a Job again for shards
// a finished Job left unfinished (a pod died mid-shard).
const maxFollowUpJobs = 3

// sendingRefresh is how often delivery counts are re-read while a Job
// sends; Job events bring the run back sooner.
const sendingRefresh = time.Minute

// CampaignRunReconciler drives a CampaignRun through its phases:
// Pending → Materializing → Sending → Measuring → Succeeded, or Failed, or
// Cancelled.
type CampaignRunReconciler struct {
	client.Client
	// APIReader reads the channel's Secrets uncached.
	APIReader client.Reader
	Recorder  EventRecorder
	Clock     Clock
	// RetryAfter bounds the wait before looking again for a missing
	// dependency that no watch reports. If zero, 5m.
	RetryAfter time.Duration
	// Stores opens the store the audience is materialized in.
	Stores *StoreProvider
	// Runner says how outreach Jobs are made.
	Runner RunnerConfig
	// Metrics, when set, receives the campaign metrics.
	Metrics *metrics.Metrics
}

// +kubebuilder:rbac:groups=retention.dev,resources=campaignruns,verbs=list;watch;patch
// +kubebuilder:rbac:groups=retention.dev,resources=campaignruns/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Jobs and the per-run Secrets live in the jobs namespace only, through a
// namespaced Role: controller-gen writes it for namespace "system", which
// config/default's kustomization renames to the operator's namespace, the
// default --jobs-namespace (another jobs namespace needs the Role and its
// RoleBinding patched to it). The manager caches Jobs from that namespace
// alone (CacheOptions) and never reads a Secret through its cache.
// jobs/finalizers: the per-run Secret's owner reference to its Job blocks
// the Job's deletion, which the OwnerReferencesPermissionEnforcement
// admission plugin allows only with update on the Job's finalizers.
// +kubebuilder:rbac:groups=batch,namespace=system,resources=jobs,verbs=list;watch;create;deletecollection
// +kubebuilder:rbac:groups=batch,namespace=system,resources=jobs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=create;deletecollection

// Reconcile moves the run one phase forward, or refreshes its counts.
func (r *CampaignRunReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var run retentionv1.CampaignRun
	if err := r.Get(ctx, req.NamespacedName, &run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !run.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &run)
	}
	if err := ensureRunMetadata(ctx, r.Client, &run); err != nil {
		return ctrl.Result{}, err
	}
	patcher := newStatusPatcher(r.Client, &run)
	now := r.Clock.Now()
	if run.Status.Phase == "" {
		run.Status.Phase = retentionv1.RunPending
	}
	before := run.Status.Phase
	msg, next, err := r.step(ctx, &run, now)
	if run.Status.Phase.Finished() && run.Status.CompletionTime == nil {
		run.Status.CompletionTime = &metav1.Time{Time: now}
	}
	q := requeue{Retry: r.RetryAfter}
	if !next.IsZero() {
		q.Next = max(next.Sub(now), time.Second)
	}
	// A phase change is written only onto the run as it was read, and
	// announced only once written: a reconcile of a stale cached copy
	// would otherwise take (and count) the same step again.
	moved := run.Status.Phase != before
	patcher.optimistic = moved
	res, err := patcher.finish(ctx, r.Recorder, &run, err, msg, q)
	if moved && patcher.patched {
		r.recordPhase(&run, before)
	}
	return res, err
}

// recordPhase records a phase change: an Event, and the metrics of what
// ended (sending, or the run).
func (r *CampaignRunReconciler) recordPhase(run *retentionv1.CampaignRun, before retentionv1.RunPhase) {
	if r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Normal", string(run.Status.Phase), "Phase", "phase %s → %s", before, run.Status.Phase)
	}
	m := r.Metrics
	if m == nil {
		return
	}
	if run.Status.Phase.Finished() {
		m.CampaignRunsTotal.WithLabelValues(run.Namespace, run.Spec.CampaignRef.Name, strings.ToLower(string(run.Status.Phase))).Inc()
	}
}

// ensureRunMetadata adds the finalizer and the campaign label (a run made
// by hand lacks it; the campaign lists its runs by it) in one patch.
func ensureRunMetadata(ctx context.Context, c client.Client, run *retentionv1.CampaignRun) error {
	if controllerutil.ContainsFinalizer(run, runFinalizer) && run.Labels[labelCampaign] == run.Spec.CampaignRef.Name {
		return nil
	}
	patch := client.MergeFrom(run.DeepCopy())
	controllerutil.AddFinalizer(run, runFinalizer)
	if run.Labels == nil {
		run.Labels = map[string]string{}
	}
	run.Labels[labelCampaign] = run.Spec.CampaignRef.Name
	if err := c.Patch(ctx, run, patch); err != nil {
		return fmt.Errorf("adding finalizer and labels: %w", err)
	}
	return nil
}

// step runs the work of the run's phase. It returns the Ready message
// (when the run succeeded), when to look again, and the outcome: a
// progressError while the run works, a stalledError when it failed.
func (r *CampaignRunReconciler) step(ctx context.Context, run *retentionv1.CampaignRun, now time.Time) (string, time.Time, error) {
	switch run.Status.Phase {
	case retentionv1.RunSucceeded:
		return succeededMessage(run), time.Time{}, nil
	case retentionv1.RunFailed:
		if v := run.Annotations[retentionv1.RetryRequestedAnnotation]; v != "" && v != run.Status.LastHandledRetryAt {
			return r.retry(ctx, run, v, now)
		}
		return "", time.Time{}, failedOutcome(run)
	case retentionv1.RunCancelled:
		return "", time.Time{}, cancelledOutcome(run)
	}
	var c retentionv1.Campaign
	key := types.NamespacedName{Namespace: run.Namespace, Name: run.Spec.CampaignRef.Name}
	if err := getReference(ctx, r.Client, key, &c, "campaign", retentionv1.ReasonCampaignNotFound); err != nil {
		return "", time.Time{}, err
	}
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if by := run.Annotations[cancelAnnotation]; by != "" && run.Status.Phase.Active() {
		return "", time.Time{}, r.cancel(ctx, st, run, by)
	}
	switch run.Status.Phase {
	case retentionv1.RunPending, retentionv1.RunMaterializing:
		return r.materialize(ctx, st, run, &c, now)
	case retentionv1.RunSending:
		return r.track(ctx, st, run, now)
	case retentionv1.RunMeasuring:
		return r.measure(ctx, st, run, now)
	}
	return "", time.Time{}, fmt.Errorf("run %s is in an unknown phase %q", run.Name, run.Status.Phase)
}

// cancel ends an active run replaced by a newer one: its pending targets
// are skipped with reason cancelled; targets a runner holds are sent and
// recorded as usual (the Job is left to finish them).
func (r *CampaignRunReconciler) cancel(ctx context.Context, st store.Store, run *retentionv1.CampaignRun, by string) error {
	switch _, err := st.RunCancel(ctx, string(run.UID)); {
	case errors.Is(err, store.ErrNotFound): // never materialized: nothing to skip
	case err != nil:
		return fmt.Errorf("cancelling run in the store: %w", err)
	}
	if err := r.refreshCounts(ctx, st, run); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	run.Status.Phase = retentionv1.RunCancelled
	run.Annotations[cancelAnnotation] = by
	return cancelledOutcome(run)
}

// track follows the outreach Job: delivery counts from the store; when the
// Job has finished, a follow-up Job for unfinished shards, or Measuring.
func (r *CampaignRunReconciler) track(ctx context.Context, st store.Store, run *retentionv1.CampaignRun, now time.Time) (string, time.Time, error) {
	if err := r.refreshCounts(ctx, st, run); err != nil {
		return "", time.Time{}, err
	}
	job, err := r.currentJob(ctx, run)
	if err != nil {
		return "", time.Time{}, err
	}
	if job == nil {
		// The run is Sending but its Job is gone (deleted by hand, or the
		// operator stopped between the phase change and the create).
		if err := r.launch(ctx, st, run); err != nil {
			return "", time.Time{}, err
		}
		return "", now.Add(sendingRefresh), sendingOutcome(run)
	}
	// Found by its deterministic name even when the status write that
	// recorded it was lost (an operator stopped right after the create).
	run.Status.JobRef = &retentionv1.NamespacedReference{Namespace: job.Namespace, Name: job.Name}
	finished, failed := jobFinished(job)
	if !finished {
		return "", now.Add(sendingRefresh), sendingOutcome(run)
	}
	d := run.Status.Delivery
	if d.Pending+d.InFlight > 0 {
		if run.Status.FollowUpJobs >= maxFollowUpJobs {
			run.Status.Phase = retentionv1.RunFailed
			return "", time.Time{}, stalled(retentionv1.ReasonJobFailed,
				"Job %s finished with %d targets unsent after %d follow-up Jobs", job.Name, d.Pending+d.InFlight, run.Status.FollowUpJobs)
		}
		run.Status.FollowUpJobs++
		if err := r.launch(ctx, st, run); err != nil {
			return "", time.Time{}, err
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(run, nil, "Warning", retentionv1.EventFollowUpJob, "Track",
				"Job %s finished with %d targets unsent; launched follow-up Job %d", job.Name, d.Pending+d.InFlight, run.Status.FollowUpJobs)
		}
		return "", now.Add(sendingRefresh), sendingOutcome(run)
	}
	if failed && d.Sent == 0 && d.Failed > 0 {
		run.Status.Phase = retentionv1.RunFailed
		return "", time.Time{}, stalled(retentionv1.ReasonJobFailed, "Job %s failed: %d targets failed, none sent", job.Name, d.Failed)
	}
	if _, err := st.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: string(run.UID), To: store.PhaseMeasuring}); err != nil {
		return "", time.Time{}, fmt.Errorf("recording the run's phase: %w", err)
	}
	run.Status.Phase = retentionv1.RunMeasuring
	if r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Normal", retentionv1.EventSent, "Track", "sent %d, failed %d, skipped %d", d.Sent, d.Failed, d.Skipped)
	}
	return r.measure(ctx, st, run, now)
}

// refreshCounts reads the run's tally into status.
func (r *CampaignRunReconciler) refreshCounts(ctx context.Context, st store.Store, run *retentionv1.CampaignRun) error {
	tally, err := st.RunTally(ctx, string(run.UID))
	if err != nil {
		return fmt.Errorf("counting the run's targets: %w", err)
	}
	setCounts(run, tally)
	return nil
}

// variantCounts reads the per-variant split out of a tally, by name; nil
// for a message without variants.
func variantCounts(t *store.RunTally) []retentionv1.VariantCounts {
	byName := map[string]*retentionv1.VariantCounts{}
	get := func(name string) *retentionv1.VariantCounts {
		if byName[name] == nil {
			byName[name] = &retentionv1.VariantCounts{Name: name}
		}
		return byName[name]
	}
	for name, g := range t.Variants[store.GroupTreatment] {
		if name != "" {
			v := get(name)
			v.Treatment, v.Sent, v.Failed = g.Total, g.ByState[store.StateSent], g.ByState[store.StateFailed]
		}
	}
	for name, g := range t.Variants[store.GroupHoldout] {
		if name != "" {
			get(name).Holdout = g.Total
		}
	}
	if len(byName) == 0 {
		return nil
	}
	out := make([]retentionv1.VariantCounts, 0, len(byName))
	for _, v := range byName {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b retentionv1.VariantCounts) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func succeededMessage(run *retentionv1.CampaignRun) string {
	a := run.Status.Audience
	if a == nil {
		a = &retentionv1.AudienceCounts{}
	}
	if run.Status.DryRun {
		return fmt.Sprintf("dry run: %d members, %d treatment, %d holdout, %d excluded; nothing sent",
			a.Members, a.Treatment, a.Holdout, a.Members-a.Treatment-a.Holdout)
	}
	d := run.Status.Delivery
	if d == nil {
		d = &retentionv1.DeliveryCounts{}
	}
	msg := fmt.Sprintf("sent %d of %d treatment targets (%d failed), %d held out", d.Sent, a.Treatment, d.Failed, a.Holdout)
	if m := run.Status.Measurement; m != nil {
		msg += "; " + m.Verdict
	}
	return msg
}

func sendingOutcome(run *retentionv1.CampaignRun) error {
	d := run.Status.Delivery
	return progressing(retentionv1.ReasonSending, "sending: %d sent, %d pending, %d in flight, %d failed", d.Sent, d.Pending, d.InFlight, d.Failed)
}

func failedOutcome(run *retentionv1.CampaignRun) error {
	if c := readyCondition(run); c != nil && c.Status == metav1.ConditionFalse {
		return stalled(c.Reason, "%s", c.Message)
	}
	return stalled(retentionv1.ReasonJobFailed, "the run failed")
}

func cancelledOutcome(run *retentionv1.CampaignRun) error {
	if by := run.Annotations[cancelAnnotation]; by != retentionv1.AbortRequest {
		return &doneError{Reason: retentionv1.ReasonCancelled, Message: fmt.Sprintf("cancelled: replaced by run %s", by)}
	}
	return &doneError{Reason: retentionv1.ReasonCancelled, Message: "cancelled: aborted on request (kubectl retention abort run); nothing more is sent"}
}

func readyCondition(run *retentionv1.CampaignRun) *metav1.Condition {
	for i := range run.Status.Conditions {
		if run.Status.Conditions[i].Type == retentionv1.ConditionReady {
			return &run.Status.Conditions[i]
		}
	}
	return nil
}

// audienceCounts reads the audience split out of a tally.
func audienceCounts(t *store.RunTally) retentionv1.AudienceCounts {
	var a retentionv1.AudienceCounts
	for grp, g := range t.Groups {
		a.Members += g.Total
		switch grp {
		case store.GroupTreatment:
			a.Treatment = g.Total
		case store.GroupHoldout:
			a.Holdout = g.Total
		case store.GroupExcluded:
			a.Unreachable = g.SkippedByReason[store.ReasonUnreachable]
			a.OptedOut = g.SkippedByReason[store.ReasonOptedOut]
			a.Suppressed = g.SkippedByReason[store.ReasonSuppressed]
			a.Capped = g.SkippedByReason[store.ReasonCapped]
			a.OverMax = g.SkippedByReason[store.ReasonOverMax]
		}
	}
	return a
}

// deliveryCounts reads the treatment targets' delivery out of a tally.
func deliveryCounts(t *store.RunTally) retentionv1.DeliveryCounts {
	g := t.Groups[store.GroupTreatment]
	if g == nil {
		return retentionv1.DeliveryCounts{}
	}
	return retentionv1.DeliveryCounts{
		Pending:  g.ByState[store.StatePending],
		Deferred: g.Deferred,
		InFlight: g.ByState[store.StateClaimed],
		Sent:     g.ByState[store.StateSent],
		Failed:   g.ByState[store.StateFailed],
		Skipped:  g.ByState[store.StateSkipped],
	}
}

// finalize removes the run's Job and Secret, folds its counts into the
// campaign's tally (store.RunDelete), then lets the run go.
func (r *CampaignRunReconciler) finalize(ctx context.Context, run *retentionv1.CampaignRun) error {
	if err := r.deleteJobs(ctx, run); err != nil {
		return err
	}
	return releaseFinalizer(ctx, r.Client, r.Stores, run, runFinalizer, func(st store.Store) error {
		if err := st.RunDelete(ctx, string(run.UID)); err != nil {
			return fmt.Errorf("deleting the run from the store: %w", err)
		}
		return nil
	})
}

// SetupWithManager registers the reconciler; a Campaign's change
// re-reconciles its runs, and a Job's change its run (found by label, as
// the Job lives in the jobs namespace).
func (r *CampaignRunReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if r.Stores == nil {
		return errors.New("campaign run reconciler needs a store")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &retentionv1.CampaignRun{}, indexCampaignRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.CampaignRun).Spec.CampaignRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.CampaignRun{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&retentionv1.Campaign{}, handler.EnqueueRequestsFromMapFunc(
			referrers(r.Client, func() client.ObjectList { return &retentionv1.CampaignRunList{} }, indexCampaignRef))).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(runOfJob)).
		Watches(&retentionv1.Segment{}, handler.EnqueueRequestsFromMapFunc(r.runsOfSegment)).
		Watches(&retentionv1.Channel{}, handler.EnqueueRequestsFromMapFunc(r.runsOfChannel)).
		Watches(&retentionv1.CustomerSource{}, handler.EnqueueRequestsFromMapFunc(r.runsOfSource)).
		Named("campaignrun").
		Complete(r)
}

// runsOfSegment maps a Segment (evaluated, perhaps, for the first time) to
// the unfinished runs of the campaigns that reach or suppress it: a run
// waiting for its audience moves on as soon as the segment is ready.
func (r *CampaignRunReconciler) runsOfSegment(ctx context.Context, o client.Object) []reconcile.Request {
	return r.runsOfCampaigns(ctx, o.GetNamespace(), indexSegmentRefs, o.GetName(), retentionv1.RunPhase.Active)
}

// runsOfChannel maps a Channel (Ready, perhaps) to its campaigns' unfinished runs.
func (r *CampaignRunReconciler) runsOfChannel(ctx context.Context, o client.Object) []reconcile.Request {
	return r.runsOfCampaigns(ctx, o.GetNamespace(), indexChannelRef, o.GetName(), retentionv1.RunPhase.Active)
}

// runsOfSource maps a CustomerSource (a new snapshot, perhaps) to the
// measuring runs of the campaigns of its segments: each new snapshot is
// measured as soon as it is current.
func (r *CampaignRunReconciler) runsOfSource(ctx context.Context, o client.Object) []reconcile.Request {
	var segs retentionv1.SegmentList
	if err := r.List(ctx, &segs, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSourceRef: o.GetName()}); err != nil {
		return nil
	}
	measuring := func(p retentionv1.RunPhase) bool { return p == retentionv1.RunMeasuring }
	var reqs []reconcile.Request
	for _, seg := range segs.Items {
		reqs = append(reqs, r.runsOfCampaigns(ctx, seg.Namespace, indexSegmentRefs, seg.Name, measuring)...)
	}
	return reqs
}

func (r *CampaignRunReconciler) runsOfCampaigns(ctx context.Context, ns, index, name string, phase func(retentionv1.RunPhase) bool) []reconcile.Request {
	var campaigns retentionv1.CampaignList
	if err := r.List(ctx, &campaigns, client.InNamespace(ns), client.MatchingFields{index: name}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, c := range campaigns.Items {
		var runs retentionv1.CampaignRunList
		if err := r.List(ctx, &runs, client.InNamespace(ns), client.MatchingFields{indexCampaignRef: c.Name}); err != nil {
			continue
		}
		for _, run := range runs.Items {
			if phase(run.Status.Phase) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: run.Name}})
			}
		}
	}
	return reqs
}

// runOfJob maps an outreach Job to its run through the Job's labels.
func runOfJob(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	ns, name := l[labelRunNamespace], l[labelRunName]
	if ns == "" || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// retry sends a Failed run's unsent targets once more, on request (the
// retention.dev/retry-requested-at annotation): one more Job for the
// shards that still have pending or stale-claimed targets, and the run is
// Sending again. Targets that failed for good stay failed; a run with
// nothing unsent stays Failed.
func (r *CampaignRunReconciler) retry(ctx context.Context, run *retentionv1.CampaignRun, request string, now time.Time) (string, time.Time, error) {
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := r.refreshCounts(ctx, st, run); err != nil {
		return "", time.Time{}, err
	}
	run.Status.LastHandledRetryAt = request
	d := run.Status.Delivery
	if d == nil || d.Pending+d.InFlight == 0 {
		if r.Recorder != nil {
			r.Recorder.Eventf(run, nil, "Warning", retentionv1.EventRetried, "Retry", "nothing to send again: no pending target")
		}
		return "", time.Time{}, failedOutcome(run)
	}
	run.Status.FollowUpJobs++
	run.Status.Phase = retentionv1.RunSending
	if err := r.launch(ctx, st, run); err != nil {
		return "", time.Time{}, err
	}
	if r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Normal", retentionv1.EventRetried, "Retry",
			"sending %d unsent targets again: Job %d", d.Pending+d.InFlight, run.Status.FollowUpJobs)
	}
	return "", now.Add(sendingRefresh), sendingOutcome(run)
}
