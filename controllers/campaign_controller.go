package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/store"
)

// cancelAnnotation asks a CampaignRun's reconciler to cancel the run
// (concurrencyPolicy Replace); its value names the run that replaced it.
// The Campaign reconciler never writes a run's status: the run's own
// reconciler does, so one writer owns each status.
const cancelAnnotation = retentionv1.CancelRequestedAnnotation

// CampaignReconciler starts CampaignRuns on a Campaign's schedule or
// OnEnter trigger, as the CronJob controller starts Jobs: one run per slot
// with a deterministic name, concurrency policy, missed-slot deadline,
// history limits, and a requeue at the next slot instead of polling.
type CampaignReconciler struct {
	client.Client
	Recorder EventRecorder
	Clock    Clock
	// RetryAfter bounds the wait before looking again for a missing
	// dependency that no watch reports. If zero, 5m.
	RetryAfter time.Duration
	// Stores opens the store that keeps the campaign's cumulative tally
	// and the segment membership OnEnter reads.
	Stores *StoreProvider
	// Metrics, when set, has a deleted campaign's series dropped.
	Metrics *metrics.Metrics
}

// +kubebuilder:rbac:groups=retention.dev,resources=campaigns,verbs=list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=campaigns/status,verbs=patch
// campaigns/finalizers: a run's controller reference to its Campaign blocks
// the Campaign's deletion, which the OwnerReferencesPermissionEnforcement
// admission plugin allows only with update on the Campaign's finalizers.
// +kubebuilder:rbac:groups=retention.dev,resources=campaigns/finalizers,verbs=update
// +kubebuilder:rbac:groups=retention.dev,resources=campaignruns,verbs=list;watch;create;patch;delete
// +kubebuilder:rbac:groups=retention.dev,resources=segments;channels,verbs=list;watch

// Reconcile resolves the Campaign's references, keeps its runs' history,
// and starts the run that is due.
func (r *CampaignReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c retentionv1.Campaign
	if err := r.Get(ctx, req.NamespacedName, &c); err != nil {
		if apierrors.IsNotFound(err) && r.Metrics != nil {
			r.Metrics.ForgetCampaign(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &c)
	now := r.Clock.Now()
	msg, next, err := r.reconcile(ctx, &c, now)
	q := requeue{Retry: r.RetryAfter}
	if !next.IsZero() {
		q.Next = next.Sub(now)
	}
	return patcher.finish(ctx, r.Recorder, &c, err, msg, q)
}

// reconcile runs the steps in order, stopping at the first error. It
// returns the Ready message and when the next run is due.
func (r *CampaignReconciler) reconcile(ctx context.Context, c *retentionv1.Campaign, now time.Time) (string, time.Time, error) {
	refs, err := r.reconcileReferences(ctx, c)
	if err != nil {
		return "", time.Time{}, err
	}
	sched, err := validateCampaign(c, refs.channel)
	if err != nil {
		return "", time.Time{}, err
	}
	runs, err := r.reconcileHistory(ctx, c)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := r.reconcileTotals(ctx, c, runs); err != nil {
		return "", time.Time{}, err
	}
	if c.Spec.Suspend {
		c.Status.NextScheduleTime = nil
		return "suspended: no new run starts", time.Time{}, nil
	}
	if c.Spec.Trigger == retentionv1.TriggerOnEnter {
		msg, err := r.reconcileOnEnter(ctx, c, refs.segment, runs, now)
		return msg, time.Time{}, err
	}
	return r.reconcileSchedule(ctx, c, sched, runs, now)
}

type campaignRefs struct {
	segment *retentionv1.Segment
	channel *retentionv1.Channel
}

// reconcileReferences checks the segment, the suppression segments and the channel.
func (r *CampaignReconciler) reconcileReferences(ctx context.Context, c *retentionv1.Campaign) (*campaignRefs, error) {
	var refs campaignRefs
	for i, name := range campaignSegmentNames(c) {
		var seg retentionv1.Segment
		key := types.NamespacedName{Namespace: c.Namespace, Name: name}
		if err := getReference(ctx, r.Client, key, &seg, "segment", retentionv1.ReasonSegmentNotFound); err != nil {
			return nil, err
		}
		if seg.IsPreview() {
			return nil, stalled(retentionv1.ReasonInvalidSpec, "segment %s is a preview (kubectl retention preview segment): campaigns cannot use it", name)
		}
		if i == 0 {
			refs.segment = &seg
		}
	}
	var ch retentionv1.Channel
	key := types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.ChannelRef.Name}
	if err := getReference(ctx, r.Client, key, &ch, "channel", retentionv1.ReasonChannelNotFound); err != nil {
		return nil, err
	}
	if !isReady(ch.Status.Conditions) {
		return nil, waiting(retentionv1.ReasonChannelNotReady, "channel %s is not ready", key)
	}
	refs.channel = &ch
	return &refs, nil
}

// validateCampaign checks what the schema cannot: the schedule and time
// zone parse, the templates compile, an email channel has a subject. Each
// failure stalls the campaign until its spec changes.
func validateCampaign(c *retentionv1.Campaign, ch *retentionv1.Channel) (*campaign.Schedule, error) {
	if _, err := compileMessage(c); err != nil {
		return nil, err
	}
	if ch.Spec.SMTP != nil && !hasSubject(c) {
		return nil, stalled(retentionv1.ReasonInvalidTemplate, "channel %s sends email: message.subject (or every variant's subject) is required", ch.Name)
	}
	if c.Spec.Schedule == "" {
		return nil, nil
	}
	sched, err := campaign.ParseSchedule(c.Spec.Schedule, deref(c.Spec.TimeZone, ""))
	if err != nil {
		return nil, stalled(retentionv1.ReasonInvalidSchedule, "%v", err)
	}
	return sched, nil
}

// compileMessage compiles the Campaign's templates; a template that does
// not parse stalls the campaign (and its runs).
func compileMessage(c *retentionv1.Campaign) (*campaign.Compiled, error) {
	compiled, err := campaign.CompileMessage(campaignMessage(c))
	if err != nil {
		return nil, stalled(retentionv1.ReasonInvalidTemplate, "%v", err)
	}
	return compiled, nil
}

// campaignMessage is the Campaign's message as the domain package takes it.
func campaignMessage(c *retentionv1.Campaign) campaign.Message {
	m := campaign.Message{Subject: c.Spec.Message.Subject, Body: c.Spec.Message.Body, HTML: c.Spec.Message.HTML}
	for _, v := range c.Spec.Message.Variants {
		m.Variants = append(m.Variants, campaign.VariantMessage{Name: v.Name, Weight: deref(v.Weight, 1), Subject: v.Subject, Body: v.Body, HTML: v.HTML})
	}
	return m
}

func hasSubject(c *retentionv1.Campaign) bool {
	if c.Spec.Message.Subject != "" {
		return true
	}
	if len(c.Spec.Message.Variants) == 0 {
		return false
	}
	for _, v := range c.Spec.Message.Variants {
		if v.Subject == "" {
			return false
		}
	}
	return true
}

// campaignRuns are a campaign's runs, sorted by scheduled time.
type campaignRuns struct {
	active, succeeded, failed []*retentionv1.CampaignRun
	// names of every run, deleted or not: a slot whose run exists is done.
	names map[string]bool
	// byPhase counts the runs not being deleted by phase; latest is the
	// most recently scheduled one with an experiment design.
	byPhase map[retentionv1.RunPhase]int64
	latest  *retentionv1.CampaignRun
}

// reconcileHistory lists the campaign's runs, records which are active and
// when one last succeeded, and deletes the oldest finished runs beyond the
// history limits. A deleted run's finalizer folds its counts into the
// campaign's tally in the store, so the totals never change.
func (r *CampaignReconciler) reconcileHistory(ctx context.Context, c *retentionv1.Campaign) (*campaignRuns, error) {
	var list retentionv1.CampaignRunList
	if err := r.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels{labelCampaign: c.Name}); err != nil {
		return nil, fmt.Errorf("listing runs: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].Spec.ScheduledTime.Before(&list.Items[j].Spec.ScheduledTime)
	})
	runs := &campaignRuns{names: map[string]bool{}, byPhase: map[retentionv1.RunPhase]int64{}}
	c.Status.Active = nil
	for i := range list.Items {
		run := &list.Items[i]
		runs.names[run.Name] = true
		if !run.DeletionTimestamp.IsZero() {
			continue
		}
		runs.byPhase[run.Status.Phase]++
		if run.Status.Experiment != nil {
			runs.latest = run
		}
		switch phase := run.Status.Phase; {
		case phase.Active():
			runs.active = append(runs.active, run)
			c.Status.Active = append(c.Status.Active, retentionv1.LocalObjectReference{Name: run.Name})
		case phase == retentionv1.RunFailed:
			runs.failed = append(runs.failed, run)
		case phase.Finished():
			runs.succeeded = append(runs.succeeded, run)
		}
		if run.Status.Phase == retentionv1.RunSucceeded && run.Status.CompletionTime != nil &&
			(c.Status.LastSuccessfulTime == nil || c.Status.LastSuccessfulTime.Before(run.Status.CompletionTime)) {
			c.Status.LastSuccessfulTime = run.Status.CompletionTime.DeepCopy()
		}
	}
	if err := r.prune(ctx, c, runs.succeeded, deref(c.Spec.SuccessfulRunsHistoryLimit, 3)); err != nil {
		return nil, err
	}
	if err := r.prune(ctx, c, runs.failed, deref(c.Spec.FailedRunsHistoryLimit, 1)); err != nil {
		return nil, err
	}
	return runs, nil
}

// prune deletes the oldest runs beyond limit.
func (r *CampaignReconciler) prune(ctx context.Context, c *retentionv1.Campaign, runs []*retentionv1.CampaignRun, limit int32) error {
	for i := 0; i < len(runs)-int(limit); i++ {
		if err := r.Delete(ctx, runs[i], client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting run %s: %w", runs[i].Name, err)
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(c, runs[i], "Normal", retentionv1.EventRunDeleted, "Prune", "deleted finished run %s (history limit)", runs[i].Name)
		}
	}
	return nil
}

// reconcileSchedule starts the run of the most recent due slot, as the
// CronJob controller does, and returns when the next slot is due.
func (r *CampaignReconciler) reconcileSchedule(ctx context.Context, c *retentionv1.Campaign, sched *campaign.Schedule, runs *campaignRuns, now time.Time) (string, time.Time, error) {
	earliest := c.CreationTimestamp.Time
	if c.Status.LastScheduleTime != nil {
		earliest = c.Status.LastScheduleTime.Time
	}
	var deadline *time.Duration
	if s := c.Spec.StartingDeadlineSeconds; s != nil {
		d := time.Duration(*s) * time.Second
		deadline = &d
	}
	due := sched.Due(earliest, now, deadline)
	c.Status.NextScheduleTime = &metav1.Time{Time: due.Next}
	ready := fmt.Sprintf("next run at %s", due.Next.UTC().Format(time.RFC3339))
	if due.Expired > 0 {
		// Slots missed by more than the starting deadline: skipped and
		// counted once (the cursor moves past the last of them).
		c.Status.MissedRuns += due.Expired
		c.Status.LastScheduleTime = &metav1.Time{Time: sched.Due(earliest, now.Add(-*deadline), nil).Slot}
		r.event(c, "Warning", retentionv1.EventRunMissed, "%d slots missed their starting deadline of %s and are skipped", due.Expired, deadline)
	}
	if due.Slot.IsZero() {
		return ready, due.Next, nil
	}
	// The slot is consumed whatever happens next: a restart never reconsiders it.
	c.Status.LastScheduleTime = &metav1.Time{Time: due.Slot}
	c.Status.MissedRuns += due.Missed
	if due.TooMany {
		r.event(c, "Warning", retentionv1.EventTooManyMissed, "more than 100 slots were missed (%d); only the latest, %s, runs", due.Missed+1, due.Slot.UTC().Format(time.RFC3339))
	} else if due.Missed > 0 {
		r.event(c, "Warning", retentionv1.EventRunMissed, "%d slots were missed and are skipped; only the latest runs", due.Missed)
	}
	if due.Late {
		c.Status.MissedRuns++
		r.event(c, "Warning", retentionv1.EventRunMissed, "slot %s missed its starting deadline; skipped", due.Slot.UTC().Format(time.RFC3339))
		return ready, due.Next, nil
	}
	name := scheduledRunName(c.Name, due.Slot)
	if err := r.startRun(ctx, c, runs, name, due.Slot, nil); err != nil {
		return "", time.Time{}, err
	}
	return ready, due.Next, nil
}

// reconcileOnEnter starts a run for the customers who entered the segment
// since the last snapshot the campaign processed (the cursor in status).
// A new campaign starts its cursor at the segment's current snapshot: it
// greets those who enter from now on, not every existing member.
func (r *CampaignReconciler) reconcileOnEnter(ctx context.Context, c *retentionv1.Campaign, seg *retentionv1.Segment, runs *campaignRuns, now time.Time) (string, error) {
	latest := seg.Status.SnapshotID
	if latest == 0 {
		return "", waiting(retentionv1.ReasonSegmentNotReady, "segment %s has not been evaluated yet", seg.Name)
	}
	cursor := c.Status.LastEnteredSnapshotID
	if cursor == 0 {
		c.Status.LastEnteredSnapshotID = latest
		return fmt.Sprintf("waiting for customers to enter segment %s after snapshot %d", seg.Name, latest), nil
	}
	if latest <= cursor {
		return fmt.Sprintf("entrants up to snapshot %d processed", cursor), nil
	}
	entrants, err := r.hasEntrants(ctx, seg, cursor)
	if err != nil {
		return "", err
	}
	if !entrants {
		c.Status.LastEnteredSnapshotID = latest
		return fmt.Sprintf("entrants up to snapshot %d processed", latest), nil
	}
	if c.Spec.ConcurrencyPolicy == retentionv1.ConcurrencyForbid && len(runs.active) > 0 {
		// The cursor stays: the entrants wait for the run after the active one.
		return fmt.Sprintf("entrants after snapshot %d wait for run %s to finish sending", cursor, runs.active[0].Name), nil
	}
	after := cursor
	if err := r.startRun(ctx, c, runs, onEnterRunName(c.Name, latest), now, &after); err != nil {
		return "", err
	}
	c.Status.LastEnteredSnapshotID = latest
	return fmt.Sprintf("entrants up to snapshot %d processed", latest), nil
}

// hasEntrants reports whether some current member entered after the snapshot.
func (r *CampaignReconciler) hasEntrants(ctx context.Context, seg *retentionv1.Segment, after int64) (bool, error) {
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return false, err
	}
	errFound := errors.New("found")
	err = st.MembershipScan(ctx, &store.MembershipScanParams{Segment: seg.Namespace + "/" + seg.Name, EnteredSince: after + 1},
		func(*store.Member) error { return errFound })
	switch {
	case errors.Is(err, errFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading segment entrants: %w", err)
	}
	return false, nil
}

// startRun applies the concurrency policy and creates the run. Forbid
// skips the run while another is active; Replace asks the active runs to
// cancel; Allow runs beside them. A run that exists already (an operator
// restarted between creating it and recording the slot) is not made twice.
func (r *CampaignReconciler) startRun(ctx context.Context, c *retentionv1.Campaign, runs *campaignRuns, name string, scheduled time.Time, enteredAfter *int64) error {
	if runs.names[name] {
		return nil // made before a restart: the slot is done
	}
	if len(runs.active) > 0 {
		switch c.Spec.ConcurrencyPolicy {
		case retentionv1.ConcurrencyAllow:
		case retentionv1.ConcurrencyReplace:
			for _, old := range runs.active {
				if old.Name == name {
					continue
				}
				if err := r.requestCancel(ctx, old, name); err != nil {
					return err
				}
				r.event(c, "Normal", retentionv1.EventRunReplaced, "run %s is cancelled and replaced by %s", old.Name, name)
			}
		default: // Forbid
			c.Status.SkippedRuns++
			r.event(c, "Normal", retentionv1.EventRunSkipped, "run for %s skipped: run %s is still active (concurrencyPolicy Forbid)",
				scheduled.UTC().Format(time.RFC3339), runs.active[0].Name)
			return nil
		}
	}
	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	labels[labelCampaign] = c.Name
	run := &retentionv1.CampaignRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels},
		Spec: retentionv1.CampaignRunSpec{
			CampaignRef:            retentionv1.LocalObjectReference{Name: c.Name},
			ScheduledTime:          metav1.Time{Time: scheduled},
			EnteredAfterSnapshotID: enteredAfter,
		},
	}
	if err := controllerutil.SetControllerReference(c, run, r.Scheme()); err != nil {
		return fmt.Errorf("owning run %s: %w", name, err)
	}
	switch err := r.Create(ctx, run); {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("creating run %s: %w", name, err)
	}
	if c.Status.Totals == nil {
		c.Status.Totals = &retentionv1.CampaignTotals{}
	}
	c.Status.Totals.Runs++
	c.Status.Active = append(c.Status.Active, retentionv1.LocalObjectReference{Name: name})
	r.event(c, "Normal", retentionv1.EventRunCreated, "created run %s for %s", name, scheduled.UTC().Format(time.RFC3339))
	return nil
}

// requestCancel marks an active run for cancellation by its reconciler.
func (r *CampaignReconciler) requestCancel(ctx context.Context, run *retentionv1.CampaignRun, by string) error {
	if run.Annotations[cancelAnnotation] != "" {
		return nil
	}
	patch := client.MergeFrom(run.DeepCopy())
	if run.Annotations == nil {
		run.Annotations = map[string]string{}
	}
	run.Annotations[cancelAnnotation] = by
	if err := r.Patch(ctx, run, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("cancelling run %s: %w", run.Name, err)
	}
	return nil
}

func (r *CampaignReconciler) event(c *retentionv1.Campaign, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(c, nil, typ, reason, "Schedule", format, args...)
	}
}

// campaignOfRun maps a run (made by the campaign or by hand) to its campaign.
func campaignOfRun(_ context.Context, o client.Object) []reconcile.Request {
	run, ok := o.(*retentionv1.CampaignRun)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: run.Namespace, Name: run.Spec.CampaignRef.Name}}}
}

// labelCampaign labels a run with its campaign's name: the campaign lists
// its runs by it, and `kubectl get crun -l retention.dev/campaign=NAME`
// selects them. A run made by hand gets it from its reconciler. Runs also
// carry their campaign's own labels.
const labelCampaign = "retention.dev/campaign"

// scheduledRunName is the deterministic name of a scheduled slot's run:
// the campaign's name and the slot in Unix minutes, as the CronJob
// controller names Jobs, so a restarted operator finds the run it made.
func scheduledRunName(campaignName string, slot time.Time) string {
	return campaignName + "-" + strconv.FormatInt(slot.Unix()/60, 10)
}

// onEnterRunName names an OnEnter run after the segment snapshot whose
// entrants it reaches.
func onEnterRunName(campaignName string, snapshotID int64) string {
	return campaignName + "-s" + strconv.FormatInt(snapshotID, 10)
}

// campaignSegmentNames lists the target segment and the suppression segments.
func campaignSegmentNames(c *retentionv1.Campaign) []string {
	names := []string{c.Spec.SegmentRef.Name}
	if c.Spec.Suppress != nil {
		for _, s := range c.Spec.Suppress.Segments {
			names = append(names, s.Name)
		}
	}
	return names
}

// deref returns *p, or def when p is nil.
func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// SetupWithManager registers the reconciler; changes of the referenced
// Segments and Channel, and of the Campaign's own runs, re-reconcile it.
func (r *CampaignReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	if r.Stores == nil {
		return errors.New("campaign reconciler needs a store")
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &retentionv1.Campaign{}, indexSegmentRefs,
		func(o client.Object) []string { return campaignSegmentNames(o.(*retentionv1.Campaign)) }); err != nil {
		return err
	}
	if err := idx.IndexField(context.Background(), &retentionv1.Campaign{}, indexChannelRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.Campaign).Spec.ChannelRef.Name} }); err != nil {
		return err
	}
	newList := func() client.ObjectList { return &retentionv1.CampaignList{} }
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.Campaign{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&retentionv1.CampaignRun{}, handler.EnqueueRequestsFromMapFunc(campaignOfRun)).
		Watches(&retentionv1.Segment{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexSegmentRefs))).
		Watches(&retentionv1.Channel{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexChannelRef))).
		Named("campaign").
		Complete(r)
}
