package controllers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/clock"
)

// recorder keeps the reasons of the Events a hand-driven reconciler records.
type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func (r *recorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.reasons {
		if x == reason {
			n++
		}
	}
	return n
}

// manualCampaign creates, invisible to the suite's manager, a segment, a
// Ready webhook channel and a campaign with the spec, and returns the
// campaign as stored.
func manualCampaign(t *testing.T, ns string, spec retentionv1.CampaignSpec) *retentionv1.Campaign {
	t.Helper()
	ctx := context.Background()
	manual := map[string]string{manualLabel: "true"}
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lapsed", Labels: manual},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.pAlive < 0.5"}}
	ch := &retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook", Labels: manual},
		Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{URL: "http://127.0.0.1:9/hook"}}}
	for _, o := range []client.Object{seg, ch} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ch.Status.Conditions = []metav1.Condition{{Type: retentionv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded", Message: "ok", LastTransitionTime: metav1.Now()}}
	if err := k8sClient.Status().Update(ctx, ch); err != nil {
		t.Fatal(err)
	}
	spec.SegmentRef = retentionv1.LocalObjectReference{Name: "lapsed"}
	spec.ChannelRef = retentionv1.LocalObjectReference{Name: "hook"}
	if spec.Message.Body == "" {
		spec.Message = retentionv1.Message{Subject: "We miss you", Body: "Hello {{.ID}}"}
	}
	c := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "win-back", Labels: manual}, Spec: spec}
	if err := k8sClient.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// campaignDriver reconciles one campaign by hand with a fake clock.
type campaignDriver struct {
	t     *testing.T
	c     *retentionv1.Campaign
	clock *clock.Fake
	rec   *recorder
}

func (d *campaignDriver) reconcile() ctrl.Result {
	d.t.Helper()
	r := &CampaignReconciler{Client: k8sClient, Recorder: d.rec, Clock: d.clock, Stores: suiteStores, RetryAfter: time.Second}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(d.c)})
	if err != nil {
		d.t.Fatalf("Reconcile: %v", err)
	}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(d.c), d.c); err != nil {
		d.t.Fatal(err)
	}
	return res
}

func (d *campaignDriver) runs() []retentionv1.CampaignRun {
	d.t.Helper()
	var list retentionv1.CampaignRunList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace(d.c.Namespace)); err != nil {
		d.t.Fatal(err)
	}
	return list.Items
}

func (d *campaignDriver) patch(mutate func(*retentionv1.Campaign)) {
	d.t.Helper()
	p := client.MergeFrom(d.c.DeepCopy())
	mutate(d.c)
	if err := k8sClient.Patch(context.Background(), d.c, p); err != nil {
		d.t.Fatal(err)
	}
}

func (d *campaignDriver) setRunPhase(name string, phase retentionv1.RunPhase) {
	d.t.Helper()
	var run retentionv1.CampaignRun
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: d.c.Namespace, Name: name}, &run); err != nil {
		d.t.Fatal(err)
	}
	run.Status.Phase = phase
	if phase.Finished() {
		run.Status.CompletionTime = &metav1.Time{Time: d.clock.Now()}
	}
	if err := k8sClient.Status().Update(context.Background(), &run); err != nil {
		d.t.Fatal(err)
	}
}

// TestCampaignSchedule drives a daily campaign through time with a fake
// clock, as the CronJob controller's tests do: slots make runs with
// deterministic names, a restart makes no second run, Forbid / Replace /
// Allow, the starting deadline, suspend, history limits, and a requeue at
// the next slot instead of polling.
func TestCampaignSchedule(t *testing.T) {
	ns := newNamespace(t)
	c := manualCampaign(t, ns, retentionv1.CampaignSpec{
		Schedule: "0 9 * * *", TimeZone: ptr.To("Europe/Berlin"),
		SuccessfulRunsHistoryLimit: ptr.To(int32(1)),
	})
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	created := c.CreationTimestamp.Time
	d := &campaignDriver{t: t, c: c, clock: clock.NewFake(created.Add(time.Minute)), rec: &recorder{}}

	// Nothing due yet: the next slot is the next 09:00 in Berlin, and the
	// reconcile comes back exactly then.
	res := d.reconcile()
	next := d.c.Status.NextScheduleTime.Time
	if h, m := next.In(berlin).Hour(), next.In(berlin).Minute(); h != 9 || m != 0 || !next.After(created) || next.Sub(created) > 25*time.Hour {
		t.Fatalf("nextScheduleTime = %v, want the next 09:00 Europe/Berlin after %v", next, created)
	}
	if want := next.Sub(d.clock.Now()); res.RequeueAfter != want {
		t.Fatalf("RequeueAfter = %v, want %v (the next slot)", res.RequeueAfter, want)
	}
	if n := len(d.runs()); n != 0 {
		t.Fatalf("%d runs before the first slot", n)
	}
	if !isReady(d.c.Status.Conditions) {
		t.Fatalf("campaign not Ready: %+v", d.c.Status.Conditions)
	}

	// The slot passes: one run, named from the slot, owned by the campaign.
	slot1 := next
	d.clock.Set(slot1.Add(30 * time.Second))
	d.reconcile()
	runs := d.runs()
	if len(runs) != 1 || runs[0].Name != scheduledRunName("win-back", slot1) {
		t.Fatalf("runs after the first slot: %v, want one named %s", runNames(runs), scheduledRunName("win-back", slot1))
	}
	run1 := runs[0]
	if !run1.Spec.ScheduledTime.Time.Equal(slot1) || run1.Labels[labelCampaign] != "win-back" || run1.Labels[manualLabel] != "true" ||
		len(run1.OwnerReferences) != 1 || run1.OwnerReferences[0].UID != d.c.UID {
		t.Fatalf("run %s: scheduled %v labels %v owners %+v", run1.Name, run1.Spec.ScheduledTime, run1.Labels, run1.OwnerReferences)
	}
	if !d.c.Status.LastScheduleTime.Time.Equal(slot1) || d.c.Status.Totals == nil || d.c.Status.Totals.Runs != 1 || len(d.c.Status.Active) != 1 {
		t.Fatalf("status after the first run: %+v", d.c.Status)
	}

	// An operator restarted mid-slot, with the status not yet written:
	// the same run name, no second run.
	d.c.Status.LastScheduleTime = nil
	if err := k8sClient.Status().Update(context.Background(), d.c); err != nil {
		t.Fatal(err)
	}
	d.reconcile()
	if runs := d.runs(); len(runs) != 1 {
		t.Fatalf("a restart made a second run: %v", runNames(runs))
	}

	// Forbid (the default): the first run is still active, the next slot is skipped and counted.
	slot2 := slot1.AddDate(0, 0, 1)
	d.clock.Set(slot2.Add(time.Minute))
	d.reconcile()
	if runs := d.runs(); len(runs) != 1 || d.c.Status.SkippedRuns != 1 || d.rec.count(retentionv1.EventRunSkipped) != 1 {
		t.Fatalf("Forbid: runs %v, skippedRuns %d, events %v", runNames(runs), d.c.Status.SkippedRuns, d.rec.reasons)
	}

	// Replace: the active run is asked to cancel and the new one starts.
	d.patch(func(c *retentionv1.Campaign) { c.Spec.ConcurrencyPolicy = retentionv1.ConcurrencyReplace })
	slot3 := slot2.AddDate(0, 0, 1)
	d.clock.Set(slot3.Add(time.Minute))
	d.reconcile()
	runs = d.runs()
	if len(runs) != 2 {
		t.Fatalf("Replace: runs %v", runNames(runs))
	}
	var old retentionv1.CampaignRun
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(&run1), &old); err != nil {
		t.Fatal(err)
	}
	if by := old.Annotations[cancelAnnotation]; by != scheduledRunName("win-back", slot3) {
		t.Fatalf("Replace: the old run's cancel annotation is %q", by)
	}
	d.setRunPhase(run1.Name, retentionv1.RunCancelled)

	// Allow: a new run beside the active one.
	d.patch(func(c *retentionv1.Campaign) { c.Spec.ConcurrencyPolicy = retentionv1.ConcurrencyAllow })
	slot4 := slot3.AddDate(0, 0, 1)
	d.clock.Set(slot4.Add(time.Minute))
	d.reconcile()
	if runs := d.runs(); len(runs) != 3 || len(d.c.Status.Active) != 2 {
		t.Fatalf("Allow: runs %v, active %v", runNames(runs), d.c.Status.Active)
	}

	// Missed slots with a starting deadline: the operator was away for
	// three days and comes back two hours after the 09:00 slot; with a
	// one-hour deadline, every slot since the last run is skipped and counted.
	d.patch(func(c *retentionv1.Campaign) { c.Spec.StartingDeadlineSeconds = ptr.To(int64(3600)) })
	before := d.c.Status.MissedRuns
	slot7 := slot4.AddDate(0, 0, 3)
	d.clock.Set(slot7.Add(2 * time.Hour))
	d.reconcile()
	if runs := d.runs(); len(runs) != 3 {
		t.Fatalf("late slots made a run: %v", runNames(runs))
	}
	if got := d.c.Status.MissedRuns - before; got != 3 {
		t.Fatalf("missedRuns grew by %d, want 3 (the slots of days 5, 6 and 7)", got)
	}
	d.reconcile() // counted once
	if got := d.c.Status.MissedRuns - before; got != 3 {
		t.Fatalf("missedRuns counted twice: grew by %d", got)
	}

	// History: finished runs beyond successfulRunsHistoryLimit (1) are
	// deleted, the oldest first; the campaign's count of runs stays.
	for _, r := range d.runs() {
		d.setRunPhase(r.Name, retentionv1.RunSucceeded)
	}
	d.reconcile()
	eventually(t, waitFor, func() error {
		if runs := d.runs(); len(runs) != 1 || runs[0].Name != scheduledRunName("win-back", slot4) {
			return fmt.Errorf("after pruning: %v, want only %s", runNames(runs), scheduledRunName("win-back", slot4))
		}
		return nil
	})
	if d.c.Status.Totals.Runs != 3 || d.c.Status.LastSuccessfulTime == nil {
		t.Fatalf("after pruning: totals %+v lastSuccessfulTime %v", d.c.Status.Totals, d.c.Status.LastSuccessfulTime)
	}

	// Suspended: no run at the next slot, no next schedule time.
	d.patch(func(c *retentionv1.Campaign) { c.Spec.Suspend = true })
	d.clock.Set(slot7.AddDate(0, 0, 1).Add(time.Minute))
	res = d.reconcile()
	if runs := d.runs(); len(runs) != 1 || d.c.Status.NextScheduleTime != nil || res.RequeueAfter != 0 {
		t.Fatalf("suspended: runs %v next %v requeue %v", runNames(runs), d.c.Status.NextScheduleTime, res.RequeueAfter)
	}

	// An unknown time zone stalls the campaign.
	d.patch(func(c *retentionv1.Campaign) {
		c.Spec.Suspend = false
		c.Spec.TimeZone = ptr.To("Mars/Olympus_Mons")
	})
	d.reconcile()
	if err := readyIs(d.c, func() []metav1.Condition { return d.c.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonInvalidSchedule, "Mars/Olympus_Mons")(); err != nil {
		t.Fatal(err)
	}
}

func runNames(runs []retentionv1.CampaignRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.Name
	}
	return out
}

// TestCampaignSteadyStateWritesNothing: when no run is due, reconciling a
// campaign again and again writes nothing to the API server: no status
// patch (the resource version stays), no run, no Event.
func TestCampaignSteadyStateWritesNothing(t *testing.T) {
	ns := newNamespace(t)
	c := manualCampaign(t, ns, retentionv1.CampaignSpec{Schedule: "0 9 * * *", TimeZone: ptr.To("Europe/Berlin")})
	d := &campaignDriver{t: t, c: c, clock: clock.NewFake(c.CreationTimestamp.Time.Add(time.Minute)), rec: &recorder{}}
	d.reconcile()
	rv, events := d.c.ResourceVersion, len(d.rec.reasons)
	next := d.c.Status.NextScheduleTime.Time
	for i := range 5 {
		// Time passes, but not up to the next slot.
		d.clock.Set(d.c.CreationTimestamp.Time.Add(time.Duration(i+2) * time.Minute))
		if !d.clock.Now().Before(next) {
			t.Fatal("test clock reached the slot")
		}
		d.reconcile()
	}
	if d.c.ResourceVersion != rv {
		t.Errorf("resource version %s → %s: a reconcile with nothing due wrote the campaign", rv, d.c.ResourceVersion)
	}
	if n := len(d.runs()); n != 0 {
		t.Errorf("%d runs made with nothing due", n)
	}
	if n := len(d.rec.reasons); n != events {
		t.Errorf("%d Events recorded with nothing due: %v", n-events, d.rec.reasons[events:])
	}
}
