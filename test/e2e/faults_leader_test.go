package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

const (
	// The leader election's timings in TestLeaderKilled, shortened from
	// controller-runtime's 15 s, 10 s and 2 s so that a takeover takes
	// seconds.
	electionLease = 6 * time.Second
	electionRenew = 4 * time.Second
	electionRetry = time.Second
	// electionID is the operator's Lease (main.go's LeaderElectionID), in
	// the jobs namespace here (--leader-election-namespace).
	electionID = "retention-operator.retention.dev"
	// leaderBlastRuns is how many runs of the blast campaign are created
	// just before the leader is killed: the new leader takes them over
	// wherever the old one left them (pending, materializing, launching).
	leaderBlastRuns = 6
)

// TestLeaderKilled: two operator replicas with leader election (lease
// 6 s, renew deadline 4 s, retry 1 s). Only the leader acts: while 4 runs
// send through a crawling channel, the follower has made no API write at
// all and reconciled nothing, and its health and readiness probes answer.
// With 6 more runs created and half of them taken up, the leader is
// SIGKILLed; the follower takes the Lease over once it has expired (not
// before: at least the lease duration less three retries after the kill;
// at most the lease duration, two jittered retries and a margin) and
// finishes every run. The killed replica, started again, stays a follower
// while the new leader renews. As in the other fault tests, nothing is
// lost or sent twice (beyond what the idempotency key lets the receiver
// drop), every run finishes sending with its Job completed, and no Job or
// per-run Secret is orphaned.
func TestLeaderKilled(t *testing.T) {
	start := time.Now()
	w := startFaultsWorld(t)

	// The world's operator, which set the scene, is replaced by two
	// replicas with leader election: a first (it becomes the leader),
	// then b.
	w.stopOperator(syscall.SIGTERM)
	a := &replica{world: w, name: "a", probeAddr: freeAddr(t)}
	w.operatorArgs = electionArgs(a.probeAddr)
	w.startOperator(t)
	eventually(t, time.Minute, "replica a leads", func() error { return a.expectLeading(t, true) })
	holderA, transitions := w.lease(t)
	b := w.replica(t, "b")
	eventually(t, time.Minute, "replica b follows", func() error { return b.expectLeading(t, false) })
	aWrites := a.writeRequests(t)
	t.Logf("replica a leads (Lease holder %s, %d transitions), replica b follows", holderA, transitions)

	// Only the leader acts.
	w.createRuns(t, "crawl", crawlRuns)
	w.waitSending(t, "crawl", crawlRuns)
	w.createRuns(t, "blast", leaderBlastRuns)
	// The leader takes runs one at a time: the kill comes when it has
	// taken up half of them, so that the new leader meets runs it never
	// saw, runs mid-way and runs whose Jobs are at work.
	eventually(t, 2*time.Minute, "the leader takes half the blast runs up", func() error {
		n := 0
		for _, r := range w.runsOf(t, "blast") {
			if r.Status.Phase != "" {
				n++
			}
		}
		if n < leaderBlastRuns/2 {
			return fmt.Errorf("%d blast runs have a phase", n)
		}
		return nil
	})
	b.checkFollower(t)
	for _, r := range []*replica{a, b} {
		if err := r.probes(); err != nil {
			t.Errorf("probes: %v", err)
		}
	}
	if holder, _ := w.lease(t); holder != holderA {
		t.Fatalf("the Lease moved from %s to %s while replica a was up", holderA, holder)
	}
	if n := a.writeRequests(t); n <= aWrites {
		t.Fatalf("the leader made no API write while 4 runs sent (%v before, %v after): it did not act, or the metric is not what the test reads", aWrites, n)
	}
	midSend := w.stillSending(t, "crawl")
	if midSend == 0 {
		t.Errorf("no crawl run was sending when the leader was killed: the test proves less than it should")
	}
	phases := fmt.Sprintf("crawl %s, blast %s", w.phases(t, "crawl"), w.phases(t, "blast"))

	// The leader dies; the follower takes over once the lease expires.
	killed := time.Now()
	w.stopOperator(syscall.SIGKILL)
	var holderB string
	for {
		if holderB, _ = w.lease(t); holderB != holderA && holderB != "" {
			break
		}
		if time.Since(killed) > time.Minute {
			t.Fatalf("no replica took the Lease over within a minute of the leader's death (holder %q)", holderB)
		}
		time.Sleep(100 * time.Millisecond)
	}
	takeover := time.Since(killed)
	eventually(t, 30*time.Second, "replica b leads", func() error { return b.expectLeading(t, true) })
	eventually(t, time.Minute, "replica b reconciles", func() error {
		if n := b.reconciles(t); n == 0 {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
	acting := time.Since(killed)
	_, transitionsB := w.lease(t)
	t.Logf("leader killed at %s with %d of %d crawl runs mid-send (%s); replica b took the Lease over in %s (transitions %d → %d) and reconciled %s after the kill",
		killed.Sub(start).Round(time.Second), midSend, crawlRuns, phases, takeover.Round(100*time.Millisecond), transitions, transitionsB, acting.Round(100*time.Millisecond))
	// The follower takes the Lease once it has expired: a lease duration
	// after it last saw the record change. It looks every retry (jittered
	// up to 1.2 times) and the leader renewed every retry until the kill,
	// so it last saw a change between about a retry before the kill (the
	// lower bound leaves two more retries for a late renewal) and a
	// jittered retry after it; it takes the Lease at its first look after
	// the expiry: at most a lease and two jittered retries after the kill
	// (8.4 s), plus a margin for a busy machine.
	if minTakeover := electionLease - 3*electionRetry; takeover < minTakeover {
		t.Errorf("replica b took the Lease %s after the leader's death, before it could have expired (%s at the earliest)", takeover, minTakeover)
	}
	if maxTakeover := electionLease + 3*electionRetry + 3*time.Second; takeover > maxTakeover {
		t.Errorf("replica b took the Lease %s after the leader's death, want at most %s (lease %s, retry %s)", takeover, maxTakeover, electionLease, electionRetry)
	}

	// The killed replica comes back and follows, while the runs finish.
	restarted := time.Now()
	w.startOperator(t)
	for ; ; time.Sleep(time.Second) {
		if holder, _ := w.lease(t); holder != holderB {
			t.Fatalf("the Lease moved from %s to %s while replica b was up", holderB, holder)
		}
		if err := a.expectLeading(t, false); err != nil {
			t.Fatalf("the restarted replica a: %v", err)
		}
		if time.Since(restarted) > 2*electionLease && w.allSent(t, "crawl", crawlRuns) && w.allSent(t, "blast", leaderBlastRuns) {
			break
		}
		if time.Since(restarted) > 5*time.Minute {
			t.Fatalf("runs not finished 5 minutes after the takeover: crawl %s, blast %s", w.phases(t, "crawl"), w.phases(t, "blast"))
		}
	}
	a.checkFollower(t)
	t.Logf("every run finished sending %s after the leader's death; replica b made %v API writes as the leader, the restarted replica a none",
		time.Since(killed).Round(time.Second), b.writeRequests(t))
	for _, r := range []*replica{a, b} {
		select {
		case <-r.op.exited:
			t.Errorf("replica %s exited:\n%s", r.name, tailFile(r.operatorLog, 30))
		default:
		}
	}

	uids := map[string]retentionv1.CampaignRun{}
	runs := 0
	for _, campaign := range []struct {
		name string
		n    int
	}{{"crawl", crawlRuns}, {"blast", leaderBlastRuns}} {
		for _, run := range w.waitRuns(t, campaign.name, campaign.n) {
			w.checkDelivery(t, run, webhookDelivery(w))
			uids[string(run.UID)] = run
			runs++
		}
	}
	w.checkNoOrphans(t, uids)
	w.checkNoPanic(t)
	if m := goPanic.FindString(readFile(t, b.operatorLog)); m != "" {
		t.Errorf("%s reports a panic (%q)", b.operatorLog, m)
	}
	st := w.webhook.Stats()
	t.Logf("%d runs; receiver: %d requests, %d unique: %d resent with the same idempotency key; test took %s",
		runs, st.Received, st.Unique, st.Received-st.Unique, time.Since(start).Round(time.Second))
}

// electionArgs are an operator replica's flags for leader election, with
// its health probes on probeAddr.
func electionArgs(probeAddr string) []string {
	return []string{
		"--leader-elect",
		"--leader-election-namespace", jobsNamespace,
		"--leader-election-lease-duration", electionLease.String(),
		"--leader-election-renew-deadline", electionRenew.String(),
		"--leader-election-retry-period", electionRetry.String(),
		"--health-probe-bind-address", probeAddr,
	}
}

// replica is one of the operator's processes when several run: a world
// that shares everything with the test's but its operator process, its
// addresses and its log.
type replica struct {
	*world
	name      string
	probeAddr string
}

// replica starts another operator process with the world's operator's
// flags (operatorArgs included) but its own metrics, probe and unsubscribe
// addresses and log file (operator-NAME.log), and stops it when the test
// ends.
func (w *world) replica(t *testing.T, name string) *replica {
	t.Helper()
	cp := *w
	r := &replica{world: &cp, name: name, probeAddr: freeAddr(t)}
	r.metricsAddr, r.unsubscribeAddr = freeAddr(t), freeAddr(t)
	r.operatorLog = filepath.Join(w.dir, "operator-"+name+".log")
	// The same flags, the health probes on its own address (the last of
	// a flag given twice wins).
	r.operatorArgs = append(slices.Clone(w.operatorArgs), "--health-probe-bind-address", r.probeAddr)
	r.op = nil
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica %s's log (last lines):\n%s", name, tailFile(r.operatorLog, 40))
		}
	})
	t.Cleanup(func() { r.stopOperator(syscall.SIGTERM) })
	r.startOperator(t)
	return r
}

// lease reads the operator's Lease: its holder and how often it changed
// hands.
func (w *world) lease(t *testing.T) (holder string, transitions int32) {
	t.Helper()
	l, err := w.clientset.CoordinationV1().Leases(jobsNamespace).Get(context.Background(), electionID, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the Lease %s/%s: %v", jobsNamespace, electionID, err)
	}
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseTransitions != nil {
		transitions = *l.Spec.LeaseTransitions
	}
	return holder, transitions
}

// expectLeading says how the replica's leader_election_master_status
// differs from leading (1) or following (0); a replica that has not made
// its leader elector yet exports none.
func (r *replica) expectLeading(t *testing.T, leading bool) error {
	t.Helper()
	v, ok := r.metric(t, "leader_election_master_status", `name="`+electionID+`"`)
	switch want := map[bool]float64{true: 1, false: 0}[leading]; {
	case !ok:
		return fmt.Errorf("replica %s exports no leader_election_master_status", r.name)
	case v != want:
		return fmt.Errorf("replica %s: leader_election_master_status %v, want %v", r.name, v, want)
	}
	return nil
}

// checkFollower: the replica has made no API write since it started (its
// leader elector only reads the Lease while another holds it) and
// reconciled nothing (its controllers never started), and it follows.
func (r *replica) checkFollower(t *testing.T) {
	t.Helper()
	if err := r.expectLeading(t, false); err != nil {
		t.Error(err)
	}
	if n := r.writeRequests(t); n != 0 {
		t.Errorf("the follower, replica %s, made %v API writes", r.name, n)
	}
	if n := r.reconciles(t); n != 0 {
		t.Errorf("the follower, replica %s, reconciled %v times", r.name, n)
	}
}

// reconciles sums the replica's controller_runtime_reconcile_total (none
// on a follower: the counters are made when a controller starts).
func (r *replica) reconciles(t *testing.T) float64 {
	t.Helper()
	v, _ := r.metric(t, "controller_runtime_reconcile_total")
	return v
}

// metric sums the samples of a metric on the replica's /metrics whose
// labels contain every one of match; ok says whether there was any.
func (r *replica) metric(t *testing.T, name string, match ...string) (sum float64, ok bool) {
	t.Helper()
	for _, l := range strings.Split(httpGet(t, "http://"+r.metricsAddr+"/metrics"), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		matched := true
		for _, m := range match {
			matched = matched && strings.Contains(l, m)
		}
		if !matched {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		sum, ok = sum+v, true
	}
	return sum, ok
}

// probes: the replica's liveness and readiness probes answer 200.
func (r *replica) probes() error {
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + r.probeAddr + path)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("replica %s: %s answered %s", r.name, path, resp.Status)
		}
	}
	return nil
}
