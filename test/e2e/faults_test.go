package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// killedRuns is how many runs the operator is killed across, at most
// maxKills times.
const (
	killedRuns = 20
	maxKills   = 15
)

// TestOperatorKilled: the operator is SIGKILLed at random moments, 2 to 6 s
// apart (maxKills times at most) and restarted at once, while 20 runs of a campaign
// materialize, launch their Jobs, send and tally. Nothing may be lost or
// sent twice (every treatment customer of every run got exactly one
// message, by idempotency key, and nobody else any), every run must finish
// sending with its status agreeing with the receiver, its Job completed
// through the Job controller, and no Job or per-run Secret be left that
// belongs to no run or to a superseded attempt.
func TestOperatorKilled(t *testing.T) {
	w := startWorld(t)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	w.generateShop(t, today)
	w.loadCRM(t, today)
	w.apply(t, "testdata/platform.yaml")
	w.waitSourceScored(t, "shop", shopCustomers, 0)
	w.apply(t, "testdata/faults.yaml")
	w.run(t, nil, "wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "segment/recent")

	var runs strings.Builder
	for i := 1; i <= killedRuns; i++ {
		fmt.Fprintf(&runs, "---\napiVersion: retention.dev/v1alpha1\nkind: CampaignRun\nmetadata: {name: blast-%02d, namespace: %s}\nspec:\n  campaignRef: {name: blast}\n  scheduledTime: %q\n",
			i, namespace, time.Now().UTC().Format(time.RFC3339))
	}
	w.run(t, strings.NewReader(runs.String()), "apply", "-f", "-")

	// Chaos: up to maxKills kills 2 to 6 s apart while runs are still
	// sending, then the runs finish (or the test fails after 6 minutes).
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	deadline := time.Now().Add(6 * time.Minute)
	for !w.allSent(t, "blast", killedRuns) {
		if time.Now().After(deadline) {
			t.Fatalf("after %d kills, not every run finished sending: %s", kills, w.phases(t, "blast"))
		}
		time.Sleep(time.Duration(2000+rng.IntN(4000)) * time.Millisecond)
		if kills < maxKills && !w.allSent(t, "blast", killedRuns) {
			t.Logf("kill %d: runs %s", kills+1, w.phases(t, "blast"))
			w.stopOperator(syscall.SIGKILL)
			kills++
			w.startOperator(t)
		}
	}
	t.Logf("the operator was killed %d times", kills)
	if kills < 3 {
		t.Errorf("only %d kills: the runs finished before the chaos could reach them", kills)
	}

	list := w.waitRuns(t, "blast", killedRuns)
	uids := map[string]retentionv1.CampaignRun{}
	for _, run := range list {
		w.checkDelivery(t, run, webhookDelivery(w))
		uids[string(run.UID)] = run
	}
	w.checkNoOrphans(t, uids)
	if log := readFile(t, w.operatorLog); strings.Contains(log, "panic") {
		t.Errorf("the operator's log mentions a panic")
	}
}

// allSent reports whether the campaign has n runs past sending.
func (w *world) allSent(t *testing.T, campaign string, n int) bool {
	runs := w.runsOf(t, campaign)
	if len(runs) < n {
		return false
	}
	for _, r := range runs {
		if r.Status.Phase != retentionv1.RunMeasuring && r.Status.Phase != retentionv1.RunSucceeded {
			return false
		}
	}
	return true
}

func (w *world) phases(t *testing.T, campaign string) string {
	count := map[retentionv1.RunPhase]int{}
	for _, r := range w.runsOf(t, campaign) {
		count[r.Status.Phase]++
	}
	return fmt.Sprint(count)
}

// checkNoOrphans: every Job and Secret in the jobs namespace belongs to one
// of the runs, each run has its first Job and its follow-ups only, and at
// most one credentials Secret.
func (w *world) checkNoOrphans(t *testing.T, runs map[string]retentionv1.CampaignRun) {
	t.Helper()
	ctx := context.Background()
	var jobs batchv1.JobList
	var secrets corev1.SecretList
	if err := w.k8s.List(ctx, &jobs, client.InNamespace(jobsNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := w.k8s.List(ctx, &secrets, client.InNamespace(jobsNamespace)); err != nil {
		t.Fatal(err)
	}
	jobsOf, secretsOf := map[string]int{}, map[string]int{}
	for _, j := range jobs.Items {
		uid := j.Labels["retention.dev/run-uid"]
		if _, ok := runs[uid]; !ok {
			t.Errorf("Job %s belongs to no run", j.Name)
		}
		jobsOf[uid]++
	}
	for _, s := range secrets.Items {
		uid, ok := s.Labels["retention.dev/run-uid"]
		if !ok {
			continue // not the operator's
		}
		if _, ok := runs[uid]; !ok {
			t.Errorf("Secret %s belongs to no run", s.Name)
		}
		secretsOf[uid]++
	}
	for uid, run := range runs {
		if want := 1 + int(run.Status.FollowUpJobs); jobsOf[uid] != want {
			t.Errorf("run %s has %d Jobs, want %d (1 + %d follow-ups)", run.Name, jobsOf[uid], want, run.Status.FollowUpJobs)
		}
		if secretsOf[uid] > 1 {
			t.Errorf("run %s has %d credentials Secrets", run.Name, secretsOf[uid])
		}
	}
}
