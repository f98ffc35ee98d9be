package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/store"
)

// campaignWorld is a scored source, an audience segment, a suppression
// segment and a webhook channel with a signing Secret, driven by the
// suite's manager.
type campaignWorld struct {
	ns             string
	all, vip       map[string]bool
	signingKey     string
	source, snapID int64
}

func newCampaignWorld(t *testing.T) *campaignWorld {
	t.Helper()
	ctx := context.Background()
	w := &campaignWorld{ns: newNamespace(t), signingKey: "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "data"},
			Data: map[string]string{"transactions.csv": string(transactionsCSV(300, 21))}},
		newCSVSource(w.ns, "shop", "data", nil),
		&retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "everyone"},
			Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 0"}},
		&retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "vip"},
			Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 4"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "hook-key"}, Data: map[string][]byte{"key": []byte(w.signingKey)}},
		&retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "hook"},
			Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{URL: "http://127.0.0.1:9/hook",
				SigningSecretRef: &retentionv1.KeySelector{Name: "hook-key", Key: "key"}}}},
	}
	for _, o := range objs {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"everyone", "vip"} {
		seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name}}
		eventually(t, waitFor, readyIs(seg, func() []metav1.Condition { return seg.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "members"))
	}
	w.all, w.vip = members(t, w.ns+"/everyone"), members(t, w.ns+"/vip")
	if len(w.all) < 100 || len(w.vip) == 0 || len(w.vip) == len(w.all) {
		t.Fatalf("test data: %d members, %d vip", len(w.all), len(w.vip))
	}
	ch := &retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "hook"}}
	eventually(t, waitFor, readyIs(ch, func() []metav1.Condition { return ch.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, ""))
	return w
}

func (w *campaignWorld) campaign(t *testing.T, name string, mutate func(*retentionv1.CampaignSpec)) *retentionv1.Campaign {
	t.Helper()
	c := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: retentionv1.CampaignSpec{
			SegmentRef: retentionv1.LocalObjectReference{Name: "everyone"},
			ChannelRef: retentionv1.LocalObjectReference{Name: "hook"},
			Message:    retentionv1.Message{Subject: "We miss you", Body: "Hello {{.ID}}, {{printf \"%.0f\" .ExpectedValue}}"},
			Schedule:   "@weekly",
			// Ad-hoc runs only: the suite clock is shared and starts at the
			// real time, so an unsuspended schedule fires whenever a test's
			// Advance crosses a slot (a Saturday-night CI run crossed Sunday).
			Suspend:          true,
			HoldoutPercent:   ptr.To(int32(20)),
			FrequencyCap:     &retentionv1.FrequencyCap{MaxContacts: 1, Window: metav1.Duration{Duration: 168 * time.Hour}},
			Suppress:         &retentionv1.Suppression{Segments: []retentionv1.LocalObjectReference{{Name: "vip"}}},
			Parallelism:      ptr.To(int32(2)),
			ConversionWindow: &metav1.Duration{Duration: time.Hour},
		}}
	if mutate != nil {
		mutate(&c.Spec)
	}
	if err := k8sClient.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(c, func() []metav1.Condition { return c.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, ""))
	return c
}

// adHocRun creates a CampaignRun by hand, as a person would.
func adHocRun(t *testing.T, ns, campaignName, name string) *retentionv1.CampaignRun {
	t.Helper()
	run := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: retentionv1.CampaignRunSpec{CampaignRef: retentionv1.LocalObjectReference{Name: campaignName}, ScheduledTime: metav1.Now()}}
	if err := k8sClient.Create(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	return run
}

func waitPhase(t *testing.T, run *retentionv1.CampaignRun, phase retentionv1.RunPhase) {
	t.Helper()
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(run), run); err != nil {
			return err
		}
		if run.Status.Phase != phase {
			return fmt.Errorf("phase %q, want %q (conditions %+v)", run.Status.Phase, phase, run.Status.Conditions)
		}
		return nil
	})
}

// sendAll does what the outreach runner does, straight in the store:
// claim every shard's targets and record them sent.
func sendAll(t *testing.T, runID string, shards int32) int64 {
	t.Helper()
	ctx := context.Background()
	st, err := suiteStores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	for shard := range shards {
		for {
			ts, err := st.TargetClaim(ctx, &store.TargetClaimParams{RunID: runID, Shard: shard, Limit: 100, Token: "test-runner"})
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) == 0 {
				break
			}
			ids := make([]string, len(ts))
			for i, tg := range ts {
				ids[i] = tg.CustomerID
				if tg.Group != store.GroupTreatment {
					t.Fatalf("claimed a %s target", tg.Group)
				}
			}
			n, err := st.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: runID, CustomerIDs: ids, Token: "test-runner"})
			if err != nil {
				t.Fatal(err)
			}
			sent += n
		}
	}
	return sent
}

// completeJob marks a Job as the Job controller would when every index succeeded.
func completeJob(t *testing.T, job *batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	job.Status.StartTime = &now
	job.Status.CompletionTime = &now
	job.Status.Succeeded = *job.Spec.Completions
	job.Status.CompletedIndexes = fmt.Sprintf("0-%d", *job.Spec.Completions-1)
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
	}
	if err := k8sClient.Status().Update(context.Background(), job); err != nil {
		t.Fatalf("completing Job: %v", err)
	}
}

// TestCampaignRunLifecycle: an ad-hoc run is materialized with every
// guardrail, launches an Indexed Job with a restricted pod spec and the
// channel's credentials in a per-run Secret, tallies delivery from the
// store, moves to Measuring when the Job completes and to Succeeded when
// the conversion window closes; a second run respects the frequency cap
// and the recorded holdout; deleting a run keeps the ledger, the holdout
// assignments and the campaign's totals.
func TestCampaignRunLifecycle(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	c := w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "adhoc-1")
	waitPhase(t, run, retentionv1.RunSending)

	// The audience: suppression before the split; the split near 80/20.
	a := run.Status.Audience
	eligible := int64(len(w.all) - len(w.vip))
	if a.Members != int64(len(w.all)) || a.Suppressed != int64(len(w.vip)) || a.Treatment+a.Holdout != eligible || a.Capped != 0 {
		t.Fatalf("audience %+v, want %d members, %d suppressed, %d eligible", *a, len(w.all), len(w.vip), eligible)
	}
	if share := float64(a.Holdout) / float64(eligible); share < 0.1 || share > 0.3 {
		t.Fatalf("holdout share %.2f, want about 0.20", share)
	}
	if run.Status.ReferenceTime == nil || run.Status.WindowEndTime == nil || run.Status.WindowEndTime.Sub(run.Status.ReferenceTime.Time) != time.Hour {
		t.Fatalf("reference %v window end %v", run.Status.ReferenceTime, run.Status.WindowEndTime)
	}
	eventually(t, waitFor, func() error {
		got := suiteMetrics.CampaignTotals.Get(w.ns, "win-back").Audience
		for outcome, want := range map[string]int64{metrics.OutcomeTreatment: a.Treatment, metrics.OutcomeHeldOut: a.Holdout, metrics.OutcomeSuppressed: a.Suppressed} {
			if got[outcome] != want {
				return fmt.Errorf("retention_campaign_audience_total{outcome=%q} = %v, want %d", outcome, got[outcome], want)
			}
		}
		return nil
	})
	if !meta.IsStatusConditionTrue(run.Status.Conditions, retentionv1.ConditionReconciling) || isReady(run.Status.Conditions) {
		t.Fatalf("a sending run must be Reconciling and not Ready: %+v", run.Status.Conditions)
	}

	// The Job: deterministic name in the jobs namespace, Indexed, restricted pods.
	if run.Status.JobRef == nil || run.Status.JobRef.Namespace != suiteJobsNamespace || run.Status.JobRef.Name != "outreach-"+string(run.UID) {
		t.Fatalf("jobRef %+v", run.Status.JobRef)
	}
	var job batchv1.Job
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: suiteJobsNamespace, Name: run.Status.JobRef.Name}, &job); err != nil {
		t.Fatal(err)
	}
	assertJobSpec(t, &job, run)
	var sec corev1.Secret
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: suiteJobsNamespace, Name: secretName(run)}, &sec); err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[campaign.EnvSigningKey]) != w.signingKey || len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != job.UID {
		t.Fatalf("credentials Secret: keys %v owners %+v", keysOf(sec.Data), sec.OwnerReferences)
	}

	// The runner sends; the Job completes; the run measures, then succeeds
	// when the window closes.
	if sent := sendAll(t, string(run.UID), 2); sent != a.Treatment {
		t.Fatalf("sent %d, want every treatment target (%d)", sent, a.Treatment)
	}
	completeJob(t, &job)
	waitPhase(t, run, retentionv1.RunMeasuring)
	if d := run.Status.Delivery; d.Sent != a.Treatment || d.Pending != 0 {
		t.Fatalf("delivery %+v, want %d sent", *d, a.Treatment)
	}
	// No snapshot arrives after the window's end: the run finishes with
	// what it measured once measureGrace has passed.
	suiteClock.Advance(2*time.Hour + measureGrace)
	poke(t, run)
	waitPhase(t, run, retentionv1.RunSucceeded)
	eventually(t, waitFor, readyIs(run, func() []metav1.Condition { return run.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "sent"))
	if run.Status.CompletionTime == nil || meta.FindStatusCondition(run.Status.Conditions, retentionv1.ConditionReconciling) != nil {
		t.Fatalf("succeeded run: completion %v conditions %+v", run.Status.CompletionTime, run.Status.Conditions)
	}
	eventually(t, waitFor, func() error {
		if got := suiteMetrics.CampaignTotals.Get(w.ns, "win-back").Messages["sent"]; got != a.Treatment {
			return fmt.Errorf("retention_campaign_messages_total{outcome=sent} = %v, want %d", got, a.Treatment)
		}
		return nil
	})
	if got := testutil.ToFloat64(suiteMetrics.CampaignRunsTotal.WithLabelValues(w.ns, "win-back", "succeeded")); got != 1 {
		t.Fatalf("retention_campaign_runs_total{result=succeeded} = %v, want 1", got)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		if tt := c.Status.Totals; tt == nil || tt.Sent != a.Treatment || tt.Holdout != a.Holdout {
			return fmt.Errorf("campaign totals %+v, want %d sent, %d holdout", tt, a.Treatment, a.Holdout)
		}
		return nil
	})

	// A second run within the cap window: everyone contacted is capped, and
	// so is the holdout (its ghost contacts count for its own campaign);
	// nobody new is treated or held out.
	run2 := adHocRun(t, w.ns, "win-back", "adhoc-2")
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(run2), run2); err != nil {
			return err
		}
		if run2.Status.Audience == nil {
			return fmt.Errorf("run 2 not materialized: %+v", run2.Status.Conditions)
		}
		return nil
	})
	if a2 := run2.Status.Audience; a2.Capped != a.Treatment+a.Holdout || a2.Holdout != 0 || a2.Treatment != 0 {
		t.Fatalf("second run: %+v, want %d capped, 0 holdout, 0 treatment", *a2, a.Treatment+a.Holdout)
	}

	// Deleting the first run (as a history limit would) keeps what outlives it.
	st, err := suiteStores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.CampaignTally(ctx, string(c.UID))
	if err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Delete(ctx, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if _, err := st.RunGet(ctx, string(run.UID)); err == nil {
			return fmt.Errorf("run still in the store")
		}
		var j batchv1.Job
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(&job), &j); err == nil && j.DeletionTimestamp.IsZero() {
			return fmt.Errorf("Job still there")
		}
		return nil
	})
	after, err := st.CampaignTally(ctx, string(c.UID))
	if err != nil {
		t.Fatal(err)
	}
	if audienceCounts(after) != audienceCounts(before) || deliveryCounts(after) != deliveryCounts(before) {
		t.Fatalf("campaign tally changed when a run was deleted: %+v → %+v", audienceCounts(before), audienceCounts(after))
	}
	ids := make([]string, 0, len(w.all))
	for id := range w.all {
		ids = append(ids, id)
	}
	groups, err := st.HoldoutGet(ctx, string(c.UID), ids)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(groups)) != eligible {
		t.Fatalf("%d holdout assignments after the run's deletion, want %d", len(groups), eligible)
	}
	contacted := 0
	if err := st.ContactCounts(ctx, &store.ContactCountsParams{Channel: w.ns + "/hook", Since: time.Now().Add(-24 * time.Hour), CustomerIDs: ids},
		func(string, int64) error { contacted++; return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(contacted) != a.Treatment {
		t.Fatalf("the ledger has %d contacted customers after the run's deletion, want %d", contacted, a.Treatment)
	}
}

// TestCampaignDryRun: a dry run reports every count and creates no Job.
func TestCampaignDryRun(t *testing.T) {
	w := newCampaignWorld(t)
	w.campaign(t, "preview", func(s *retentionv1.CampaignSpec) { s.DryRun = true })
	run := adHocRun(t, w.ns, "preview", "dry-1")
	waitPhase(t, run, retentionv1.RunSucceeded)
	eventually(t, waitFor, readyIs(run, func() []metav1.Condition { return run.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "dry run"))
	a := run.Status.Audience
	if !run.Status.DryRun || a == nil || a.Suppressed != int64(len(w.vip)) || a.Treatment+a.Holdout != int64(len(w.all)-len(w.vip)) {
		t.Fatalf("dry run status: dryRun %v audience %+v", run.Status.DryRun, a)
	}
	if run.Status.JobRef != nil || run.Status.Delivery.Sent != 0 || run.Status.Delivery.Pending != 0 {
		t.Fatalf("a dry run launched or queued something: job %v delivery %+v", run.Status.JobRef, run.Status.Delivery)
	}
	var jobs batchv1.JobList
	if err := k8sClient.List(context.Background(), &jobs, client.InNamespace(suiteJobsNamespace), client.MatchingLabels{labelRunUID: string(run.UID)}); err != nil || len(jobs.Items) != 0 {
		t.Fatalf("a dry run made %d Jobs (%v)", len(jobs.Items), err)
	}
}

// poke touches a run's annotations so its reconciler runs now (the test
// moved the suite's clock past a time the run was waiting for).
func poke(t *testing.T, o client.Object) {
	t.Helper()
	p := client.MergeFrom(o.DeepCopyObject().(client.Object))
	a := o.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a["test/poke"] = time.Now().Format(time.RFC3339Nano)
	o.SetAnnotations(a)
	if err := k8sClient.Patch(context.Background(), o, p); err != nil {
		t.Fatal(err)
	}
}

// jobOf returns the run's outreach Job.
func jobOf(t *testing.T, run *retentionv1.CampaignRun) *batchv1.Job {
	t.Helper()
	if run.Status.JobRef == nil {
		t.Fatalf("run %s has no Job", run.Name)
	}
	var job batchv1.Job
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: run.Status.JobRef.Namespace, Name: run.Status.JobRef.Name}, &job); err != nil {
		t.Fatal(err)
	}
	return &job
}

func keysOf(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// assertJobSpec checks an outreach Job against the restricted Pod Security
// Standard and the run it serves.
func assertJobSpec(t *testing.T, job *batchv1.Job, run *retentionv1.CampaignRun) {
	t.Helper()
	s := job.Spec
	if ptr.Deref(s.CompletionMode, "") != batchv1.IndexedCompletion || ptr.Deref(s.Completions, 0) != 2 || ptr.Deref(s.Parallelism, 0) != 2 ||
		ptr.Deref(s.BackoffLimitPerIndex, 0) < 1 || ptr.Deref(s.ActiveDeadlineSeconds, 0) <= 0 || s.PodFailurePolicy == nil {
		t.Fatalf("Job spec: %+v", s)
	}
	if job.Labels[labelRunNamespace] != run.Namespace || job.Labels[labelRunName] != run.Name || job.Labels[labelRunUID] != string(run.UID) {
		t.Fatalf("Job labels %v", job.Labels)
	}
	pod := s.Template.Spec
	psc := pod.SecurityContext
	if !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		ptr.Deref(pod.AutomountServiceAccountToken, true) || pod.RestartPolicy != corev1.RestartPolicyNever || len(pod.Containers) != 1 {
		t.Fatalf("pod spec: %+v", pod)
	}
	ctr := pod.Containers[0]
	sc := ctr.SecurityContext
	if ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || sc.Capabilities == nil ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("container security context: %+v", sc)
	}
	if ctr.Image != suiteRunner.Image || len(ctr.Command) != 1 || ctr.Command[0] != RunnerCommand ||
		len(ctr.Args) != 2 || ctr.Args[0] != "--run" || ctr.Args[1] != string(run.UID) {
		t.Fatalf("container image %q command %v args %v", ctr.Image, ctr.Command, ctr.Args)
	}
	if len(ctr.Env) != 1 || ctr.Env[0].Name != campaign.EnvStore || ctr.Env[0].Value != suiteStores.URL ||
		len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].SecretRef.Name != secretName(run) {
		t.Fatalf("container env %+v envFrom %+v", ctr.Env, ctr.EnvFrom)
	}
	if ctr.Resources.Limits.Memory().IsZero() || ctr.Resources.Requests.Cpu().IsZero() {
		t.Fatalf("container resources %+v", ctr.Resources)
	}
}

// TestCampaignRunCancel: a run asked to cancel (concurrencyPolicy Replace)
// skips its pending targets with reason cancelled and ends Cancelled;
// targets a runner had claimed are still recorded when it finishes them.
func TestCampaignRunCancel(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "to-cancel")
	waitPhase(t, run, retentionv1.RunSending)
	st, err := suiteStores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := st.TargetClaim(ctx, &store.TargetClaimParams{RunID: string(run.UID), Shard: 0, Limit: 5, Token: "slow-runner"})
	if err != nil || len(claimed) != 5 {
		t.Fatalf("claimed %d (%v)", len(claimed), err)
	}
	p := client.MergeFrom(run.DeepCopy())
	run.Annotations = map[string]string{cancelAnnotation: "its-replacement"}
	if err := k8sClient.Patch(ctx, run, p); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, run, retentionv1.RunCancelled)
	eventually(t, waitFor, readyIs(run, func() []metav1.Condition { return run.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonCancelled, "its-replacement"))
	if meta.FindStatusCondition(run.Status.Conditions, retentionv1.ConditionReconciling) != nil || meta.IsStatusConditionTrue(run.Status.Conditions, retentionv1.ConditionStalled) {
		t.Fatalf("a cancelled run is neither reconciling nor stalled: %+v", run.Status.Conditions)
	}
	treatment := run.Status.Audience.Treatment
	if d := run.Status.Delivery; d.Skipped != treatment-5 || d.InFlight != 5 || d.Pending != 0 {
		t.Fatalf("cancelled run delivery %+v, want %d skipped and 5 in flight", *d, treatment-5)
	}
	ids := make([]string, len(claimed))
	for i, c := range claimed {
		ids[i] = c.CustomerID
	}
	if n, err := st.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: string(run.UID), CustomerIDs: ids, Token: "slow-runner"}); err != nil || n != 5 {
		t.Fatalf("the in-flight sends were not recorded: %d (%v)", n, err)
	}
	tally, err := st.RunTally(ctx, string(run.UID))
	if err != nil {
		t.Fatal(err)
	}
	if g := tally.Groups[store.GroupTreatment]; g.ByState[store.StateSent] != 5 || g.SkippedByReason[store.ReasonCancelled] != treatment-5 {
		t.Fatalf("tally after cancel: %+v", g)
	}
}

// TestCampaignOnEnter: an OnEnter campaign starts at the segment's current
// snapshot; when new customers enter, one run reaches exactly them.
func TestCampaignOnEnter(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	c := w.campaign(t, "welcome-vip", func(s *retentionv1.CampaignSpec) {
		s.SegmentRef.Name, s.Schedule, s.Trigger, s.Suppress, s.DryRun, s.Suspend = "vip", "", retentionv1.TriggerOnEnter, nil, true, false
	})
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "vip"}}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(seg), seg); err != nil {
		t.Fatal(err)
	}
	first := seg.Status.SnapshotID
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		if c.Status.LastEnteredSnapshotID != first {
			return fmt.Errorf("cursor %d, want %d", c.Status.LastEnteredSnapshotID, first)
		}
		return nil
	})
	var runs retentionv1.CampaignRunList
	if err := k8sClient.List(ctx, &runs, client.InNamespace(w.ns)); err != nil || len(runs.Items) != 0 {
		t.Fatalf("a new OnEnter campaign made %d runs for existing members (%v)", len(runs.Items), err)
	}

	// New data: the source rescores, the segment gains entrants.
	cm := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "data"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["transactions.csv"] = string(transactionsCSV(300, 22))
	if err := k8sClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(seg), seg); err != nil {
			return err
		}
		if seg.Status.SnapshotID == first {
			return fmt.Errorf("segment not re-evaluated yet")
		}
		return nil
	})
	if seg.Status.Entered == 0 {
		t.Fatal("test data: nobody entered the segment")
	}
	run := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: onEnterRunName("welcome-vip", seg.Status.SnapshotID)}}
	waitPhase(t, run, retentionv1.RunSucceeded)
	if run.Spec.EnteredAfterSnapshotID == nil || *run.Spec.EnteredAfterSnapshotID != first {
		t.Fatalf("enteredAfterSnapshotID = %v, want %d", run.Spec.EnteredAfterSnapshotID, first)
	}
	if a := run.Status.Audience; a.Members != seg.Status.Entered {
		t.Fatalf("OnEnter audience %d, want the %d entrants", a.Members, seg.Status.Entered)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		if c.Status.LastEnteredSnapshotID != seg.Status.SnapshotID {
			return fmt.Errorf("cursor %d, want %d", c.Status.LastEnteredSnapshotID, seg.Status.SnapshotID)
		}
		return nil
	})
}

// TestCampaignRunRestartMakesNoSecondJob: an operator that stopped after
// creating a run's Job but before recording it in status (the status
// write lost) finds the Job by its deterministic name when it comes back:
// the run records it again and there is still exactly one Job.
func TestCampaignRunRestartMakesNoSecondJob(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "restart-1")
	waitPhase(t, run, retentionv1.RunSending)
	waitJobRef(t, run)
	first := *run.Status.JobRef
	// The lost write: status without the Job. A restarted operator
	// reconciles every object; here a change to the Job (which the run
	// watches) brings the reconcile.
	run.Status.JobRef = nil
	if err := k8sClient.Status().Update(ctx, run); err != nil {
		t.Fatal(err)
	}
	var job batchv1.Job
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: first.Namespace, Name: first.Name}, &job); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(job.DeepCopy())
	job.Annotations = map[string]string{"test/nudge": "1"}
	if err := k8sClient.Patch(ctx, &job, patch); err != nil {
		t.Fatal(err)
	}
	waitJobRef(t, run)
	if *run.Status.JobRef != first {
		t.Errorf("jobRef %+v, want the first Job %+v", *run.Status.JobRef, first)
	}
	var jobs batchv1.JobList
	if err := k8sClient.List(ctx, &jobs, client.InNamespace(suiteJobsNamespace), client.MatchingLabels{labelRunUID: string(run.UID)}); err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 1 {
		t.Errorf("%d Jobs for the run, want 1", len(jobs.Items))
	}
}

// waitJobRef waits until the run's status names its Job, and reads the run.
func waitJobRef(t *testing.T, run *retentionv1.CampaignRun) {
	t.Helper()
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(run), run); err != nil {
			return err
		}
		if run.Status.JobRef == nil {
			return fmt.Errorf("run %s: no jobRef in status", run.Name)
		}
		return nil
	})
}
