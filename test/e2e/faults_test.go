package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
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
	w := startFaultsWorld(t)

	w.createRuns(t, "blast", killedRuns)
	kills := w.chaos(t, "blast", killedRuns, maxKills, func() bool {
		w.stopOperator(syscall.SIGKILL)
		w.startOperator(t)
		return true
	})
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

// TestRunnerKilled: outreach runner processes are SIGKILLed in the middle
// of their shards (their pods fail with exit code 137), 2 to 6 s apart, while 6 runs
// send through a slow channel; the Job controller starts new pods for the
// indexes, which take the dead runners' claims over (claim TTL 10 s here,
// 5 min by default). Nothing may be lost, nothing sent twice beyond what
// the idempotency key lets the receiver drop, no Job or Secret orphaned.
func TestRunnerKilled(t *testing.T) {
	w := startFaultsWorld(t, "--claim-ttl=10s")
	const runs = 6
	w.createRuns(t, "trickle", runs)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	kills := w.chaos(t, "trickle", runs, 8, func() bool {
		running := w.runner.Running()
		return len(running) > 0 && w.runner.Signal(running[rng.IntN(len(running))], syscall.SIGKILL)
	})
	t.Logf("%d runner pods killed mid-shard", kills)
	if kills < 3 {
		t.Errorf("only %d runner kills: the runs finished before the chaos could reach them", kills)
	}
	uids := map[string]retentionv1.CampaignRun{}
	for _, run := range w.waitRuns(t, "trickle", runs) {
		w.checkDelivery(t, run, webhookDelivery(w))
		uids[string(run.UID)] = run
	}
	w.checkNoOrphans(t, uids)
	st := w.webhook.Stats()
	t.Logf("receiver: %d requests, %d unique: %d resent with the same idempotency key", st.Received, st.Unique, st.Received-st.Unique)
}

// startFaultsWorld starts a world (runnerArgs as startWorld's) with the
// platform's manifests and testdata/faults.yaml applied, the shop scored
// and the faults' segment and channels Ready.
func startFaultsWorld(t *testing.T, runnerArgs ...string) *world {
	t.Helper()
	w := startWorld(t, runnerArgs...)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	w.generateShop(t, today)
	w.loadCRM(t, today)
	w.apply(t, "testdata/platform.yaml")
	w.waitSourceScored(t, "shop", shopCustomers, 0)
	w.apply(t, "testdata/faults.yaml")
	w.run(t, nil, "wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "segment/recent", "channel/slow-webhook", "channel/crawl-webhook")
	return w
}

// createRuns applies n ad-hoc runs of the campaign, campaign-01 onwards.
func (w *world) createRuns(t *testing.T, campaign string, n int) {
	t.Helper()
	var runs strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&runs, "---\napiVersion: retention.dev/v1alpha1\nkind: CampaignRun\nmetadata: {name: %s-%02d, namespace: %s}\nspec:\n  campaignRef: {name: %s}\n  scheduledTime: %q\n",
			campaign, i, namespace, campaign, time.Now().UTC().Format(time.RFC3339))
	}
	w.run(t, strings.NewReader(runs.String()), "apply", "-f", "-")
}

// chaos calls kill (which says whether it found something to kill) 2 to 6
// s apart, at most maxKills times, while the campaign's n runs are still
// sending, and returns once they all have finished (failing the test after
// 6 minutes) with the number of kills.
func (w *world) chaos(t *testing.T, campaign string, n, maxKills int, kill func() bool) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	deadline := time.Now().Add(6 * time.Minute)
	for !w.allSent(t, campaign, n) {
		if time.Now().After(deadline) {
			t.Fatalf("after %d kills, not every run finished sending: %s", kills, w.phases(t, campaign))
		}
		time.Sleep(time.Duration(2000+rng.IntN(4000)) * time.Millisecond)
		if kills < maxKills && !w.allSent(t, campaign, n) {
			phases := w.phases(t, campaign)
			if kill() {
				kills++
				t.Logf("kill %d: runs %s", kills, phases)
			}
		}
	}
	return kills
}

// allSent reports whether the campaign has n runs past sending.
func (w *world) allSent(t *testing.T, campaign string, n int) bool {
	runs := w.runsOf(t, campaign)
	if len(runs) < n {
		return false
	}
	return !slices.ContainsFunc(runs, func(r retentionv1.CampaignRun) bool { return !pastSending(r) })
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
