package controllers

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// TestCampaignRunRetry: a run whose Jobs leave every target unsent fails
// once the follow-up Jobs run out; a retry request sends it once more (one
// more Job, Sending again), which delivers and moves to Measuring; the
// request is handled once and announced by an Event.
func TestCampaignRunRetry(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "retried")
	waitPhase(t, run, retentionv1.RunSending)
	job := func(followUp int32) *batchv1.Job {
		t.Helper()
		var j batchv1.Job
		eventually(t, waitFor, func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: suiteJobsNamespace, Name: jobName(run, followUp)}, &j)
		})
		return &j
	}
	for i := int32(0); i <= maxFollowUpJobs; i++ {
		completeJob(t, job(i)) // nothing sent
	}
	waitPhase(t, run, retentionv1.RunFailed)
	eventually(t, waitFor, readyIs(run, func() []metav1.Condition { return run.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonJobFailed, "unsent"))

	patch := client.MergeFrom(run.DeepCopy())
	if run.Annotations == nil {
		run.Annotations = map[string]string{}
	}
	run.Annotations[retentionv1.RetryRequestedAnnotation] = "2026-12-06T21:00:00Z"
	if err := k8sClient.Patch(ctx, run, patch); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, run, retentionv1.RunSending)
	if run.Status.LastHandledRetryAt != "2026-12-06T21:00:00Z" || run.Status.FollowUpJobs != maxFollowUpJobs+1 {
		t.Fatalf("after the retry: handled %q, %d follow-up Jobs", run.Status.LastHandledRetryAt, run.Status.FollowUpJobs)
	}
	eventually(t, waitFor, eventRecorded(w.ns, run.Name, retentionv1.EventRetried))
	sent := sendAll(t, string(run.UID), 2)
	completeJob(t, job(maxFollowUpJobs+1))
	waitPhase(t, run, retentionv1.RunMeasuring)
	if d := run.Status.Delivery; sent == 0 || d == nil || d.Sent != sent || d.Pending != 0 {
		t.Fatalf("after the retried Job: %d sent by the test, delivery %+v", sent, d)
	}
}
