//go:build scale

package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/pgtest"
)

// The scale scenario of issue #19.
const (
	scaleCustomers = 1_000_000
	scaleSegments  = 200
	scaleCampaigns = 100
	// scaleRunning campaigns run at once (a quarter), scaleShards shards
	// each, at most scaleMaxPerRun customers a run.
	scaleRunning   = 25
	scaleShards    = 20
	scaleMaxPerRun = 400
	// scaleBuyers is the share of customers that buy again before the
	// second snapshot.
	scaleBuyers = 0.01
	// scaleSteady is the steady-state window.
	scaleSteady = time.Minute
)

// TestScale measures the operator at the scale of issue #19: one source of
// a million customers, 200 Segments on it, 100 Campaigns of which 25 run at
// once with 20 shards each. It measures, logs (lines starting "FIGURE") and
// writes to a JSON file ($SCALE_FIGURES, else a file in the temporary
// directory):
//
//   - the time from a snapshot (the source's status.snapshotID changing, as
//     polled every 250 ms) until all 200 Segments report it and are Ready,
//     for the first snapshot (Segments created before it: they are applied
//     with the source) and for a rescoring after 1% of the customers bought
//     again;
//   - the operator's CPU seconds and peak RSS (/proc) per phase;
//   - its reconcile latency percentiles per controller (from the buckets of
//     controller_runtime_reconcile_time_seconds) per phase;
//   - its API requests by method per phase (rest_client_requests_total);
//   - in steady state (nothing changing, for a minute): the operator's
//     requests by method, which must include no write, and the API
//     server's own apiserver_request_total by verb (every client: the
//     operator, the cluster's controllers, kwok, the pod runner);
//   - that every run finished sending, each treatment customer received
//     exactly one message by idempotency key and nobody else any.
//
// The phases, in order: the first snapshot (Segments applied with the
// source: a full apply of every membership), a rescoring, a minute of
// steady state, an operator crash and restart, a rescoring after it, the
// 25 runs, a minute of steady state. The segment figures
// come first so that they are recorded even if the runs fail.
//
// It is not part of `make test` or `make test-e2e` (build tag scale); run
// it with hack/scale.sh.
func TestScale(t *testing.T) {
	// 500 runner processes hold a store connection each, and more while
	// they claim: PostgreSQL's test default of 200 is too few.
	prev := pgtest.DefaultSettings["max_connections"]
	pgtest.DefaultSettings["max_connections"] = "1500"
	t.Cleanup(func() { pgtest.DefaultSettings["max_connections"] = prev })

	w := startWorld(t)
	s := &scaleRun{w: w, figures: &scaleFigures{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Load: []string{scaleLoad()},
		Customers: scaleCustomers, Segments: scaleSegments, Campaigns: scaleCampaigns,
		RunsAtOnce: scaleRunning, Shards: scaleShards, MaxPerRun: scaleMaxPerRun,
	}}
	s.pid = w.op.cmd.Process.Pid
	t.Logf("FIGURE load at start: %s", s.figures.Load[0])
	stopSampler := s.sampleRSS()
	defer stopSampler()
	defer s.write(t)

	today := time.Now().UTC().Truncate(24 * time.Hour)
	tx, cust := filepath.Join(w.dir, "transactions.csv.gz"), filepath.Join(w.dir, "customers.csv.gz")
	w.generate(t, scaleCustomers, 19, today.AddDate(0, 0, -1), tx, cust)
	txGz, err := os.ReadFile(tx)
	if err != nil {
		t.Fatal(err)
	}
	custGz, err := os.ReadFile(cust)
	if err != nil {
		t.Fatal(err)
	}
	w.files.Put("transactions.csv.gz", txGz)
	w.files.Put("customers.csv.gz", custGz)

	// Phase 1: the source, its 200 Segments and the 100 Campaigns applied
	// together; the Segments exist before the first snapshot.
	p := s.begin(t, "initial snapshot")
	w.apply(t, "testdata/scale.yaml")
	w.run(t, strings.NewReader(scaleManifests()), "apply", "-f", "-")
	t.Logf("FIGURE phase %q: the 200 segments and 100 campaigns applied %.1f s after the source", p.Name, time.Since(p.start).Seconds())
	snap := s.waitSnapshot(t, 0, 15*time.Minute)
	s.waitSegments(t, p, snap, 40*time.Minute)
	s.end(t, p)
	s.checkSizes(t)

	// Phase 2: 1% of the customers buy today; the source rescores.
	rescore := func(name string, after int64, purchases ...[]byte) int64 {
		p := s.begin(t, name)
		w.files.Put("transactions.csv.gz", slices.Concat(append([][]byte{txGz}, purchases...)...))
		w.run(t, nil, "annotate", "-n", namespace, "--overwrite", "customersource/shop",
			retentionv1.ReconcileRequestedAnnotation+"="+time.Now().UTC().Format(time.RFC3339Nano))
		next := s.waitSnapshot(t, after, 15*time.Minute)
		s.waitSegments(t, p, next, 10*time.Minute)
		s.settle(t, p)
		s.end(t, p)
		return next.id
	}
	snap2 := rescore("rescoring", snap.id, scalePurchases(t, custGz, today))

	// Phase 3: steady state with the segments current and no run yet.
	s.steady(t, "steady state before the runs")

	// Phase 3b: the operator crashes (SIGKILL) and starts again: how long
	// until it is quiet, what it writes; then a rescoring, whose segments
	// start from the memberships read back from the store (the restarted
	// process has none in memory).
	killed := time.Now()
	w.stopOperator(syscall.SIGKILL)
	w.startOperator(t)
	s.mu.Lock()
	s.pid = w.op.cmd.Process.Pid
	s.mu.Unlock()
	t.Logf("FIGURE phase %q: the restarted operator answered %.1f s after the kill", "restart", time.Since(killed).Seconds())
	p = s.begin(t, "restart")
	p.start = killed
	s.settle(t, p)
	s.end(t, p)
	rescore("rescoring after the restart", snap2, scalePurchases(t, custGz, today), scalePurchases(t, custGz, today.AddDate(0, 0, -2)))

	// Phase 4: 25 campaigns run at once, 20 shards each.
	p = s.begin(t, "runs")
	s.runCampaigns(t, p)
	s.settle(t, p)
	s.end(t, p)

	// Phase 5: steady state after the runs (measuring, nothing changing).
	s.steady(t, "steady state after the runs")
	s.figures.Load = append(s.figures.Load, scaleLoad())
	t.Logf("FIGURE load at end: %s", scaleLoad())
}

type scaleFigures struct {
	Date       string   `json:"date"`
	CPUs       int      `json:"cpus"`
	Load       []string `json:"loadAverage"`
	Customers  int      `json:"customers"`
	Segments   int      `json:"segments"`
	Campaigns  int      `json:"campaigns"`
	RunsAtOnce int      `json:"runsAtOnce"`
	Shards     int      `json:"shards"`
	MaxPerRun  int      `json:"maxPerRun"`
	// OperatorPeakRSSMiB is the highest of the phases' peaks.
	OperatorPeakRSSMiB float64          `json:"operatorPeakRSSMiB"`
	OperatorCPUSeconds float64          `json:"operatorCPUSeconds"`
	Phases             []*scalePhase    `json:"phases"`
	Steady             []*scaleSteadyFx `json:"steadyState,omitempty"`
}

type scalePhase struct {
	Name        string  `json:"name"`
	WallSeconds float64 `json:"wallSeconds"`
	// SnapshotToSegmentsSeconds: from the source's new snapshotID seen
	// until every Segment reported it and was Ready; FirstSegmentSeconds
	// and MedianSegmentSeconds the same for the first and the median one.
	SnapshotToSegmentsSeconds float64 `json:"snapshotToSegmentsSeconds,omitempty"`
	FirstSegmentSeconds       float64 `json:"firstSegmentSeconds,omitempty"`
	MedianSegmentSeconds      float64 `json:"medianSegmentSeconds,omitempty"`
	// StartToSnapshotSeconds: from the phase's start (apply, or the
	// rescoring request) until the new snapshotID was seen.
	StartToSnapshotSeconds float64 `json:"startToSnapshotSeconds,omitempty"`
	MembershipEntered      int64   `json:"membershipEntered,omitempty"`
	MembershipExited       int64   `json:"membershipExited,omitempty"`
	MembersTotal           int64   `json:"membersTotal,omitempty"`
	// SettledSeconds: from the phase's start until the operator's last
	// API write (then 15 s without one).
	SettledSeconds float64 `json:"settledSeconds,omitempty"`
	// Runs phase.
	RunsSeconds         float64 `json:"runsSeconds,omitempty"`
	PeakRunnerProcesses int     `json:"peakRunnerProcesses,omitempty"`
	RunnerPods          int     `json:"runnerPods,omitempty"`
	MessagesReceived    int     `json:"messagesReceived,omitempty"`
	MessagesUnique      int     `json:"messagesUnique,omitempty"`

	OperatorCPUSeconds float64 `json:"operatorCPUSeconds"`
	// OperatorPeakRSSMiB is VmHWM after the phase reset it (clear_refs);
	// SampledPeakRSSMiB the highest VmRSS sampled every 250 ms.
	OperatorPeakRSSMiB float64                       `json:"operatorPeakRSSMiB"`
	SampledPeakRSSMiB  float64                       `json:"sampledPeakRSSMiB"`
	Reconciles         scaleCounts                   `json:"reconciles"`
	ReconcileLatency   map[string]map[string]float64 `json:"reconcileLatencySeconds"`
	OperatorRequests   scaleCounts                   `json:"operatorRequestsByMethod"`

	start   time.Time
	cpu     float64
	metrics scaleMetrics
	hwmOK   bool
}

type scaleSteadyFx struct {
	Name          string  `json:"name"`
	WindowSeconds float64 `json:"windowSeconds"`
	SettleSeconds float64 `json:"settleSeconds"`
	// OperatorRequestsPerMinute by method (rest_client_requests_total).
	OperatorRequestsPerMinute scaleCounts `json:"operatorRequestsPerMinute"`
	OperatorWritesPerMinute   float64     `json:"operatorWritesPerMinute"`
	// APIServerRequestsPerMinute by verb (apiserver_request_total, every
	// client); RetentionGroupPerMinute only the retention.dev resources.
	APIServerRequestsPerMinute scaleCounts `json:"apiServerRequestsPerMinute"`
	RetentionGroupPerMinute    scaleCounts `json:"apiServerRetentionDevPerMinute"`
	APIServerTopResources      []string    `json:"apiServerTopResources"`
	OperatorCPUSeconds         float64     `json:"operatorCPUSeconds"`
	OperatorRSSMiB             float64     `json:"operatorRSSMiB"`
	Reconciles                 scaleCounts `json:"reconciles"`
}

type scaleRun struct {
	w       *world
	pid     int
	figures *scaleFigures
	mu      sync.Mutex
	sampled float64 // highest VmRSS sampled since the phase began, MiB
}

// scaleManifests are the 200 Segments and 100 Campaigns. Segment k has
// one of five rule shapes (k % 5) with thresholds spread so that shares
// range from a few customers to most of them; shape 3 picks the top 2% by
// value (a few thousand customers), the audiences of the campaigns that
// run. Campaigns are suspended (run only by the CampaignRuns the test
// creates): camp-000 to camp-024 on the shape-3 segments, the others on
// the rest.
func scaleManifests() string {
	var b strings.Builder
	for k := range scaleSegments {
		fmt.Fprintf(&b, "---\napiVersion: retention.dev/v1alpha1\nkind: Segment\nmetadata: {name: %s, namespace: %s}\nspec:\n  sourceRef: {name: shop}\n  rule: %q\n",
			scaleSegment(k), namespace, scaleRule(k))
	}
	for c := range scaleCampaigns {
		fmt.Fprintf(&b, `---
apiVersion: retention.dev/v1alpha1
kind: Campaign
metadata: {name: %s, namespace: %s}
spec:
  segmentRef: {name: %s}
  channelRef: {name: shop-webhook}
  message:
    subject: "A note for {{ .Attributes.first_name }}"
    body: "Campaign %d."
  schedule: "@yearly"
  suspend: true
  holdoutPercent: 10
  maxPerRun: %d
  parallelism: %d
  concurrencyPolicy: Allow
  conversionWindow: 168h
`, scaleCampaign(c), namespace, scaleSegment(scaleCampaignSegment(c)), c, scaleMaxPerRun, scaleShards)
	}
	return b.String()
}

func scaleSegment(k int) string  { return fmt.Sprintf("seg-%03d", k) }
func scaleCampaign(c int) string { return fmt.Sprintf("camp-%03d", c) }

// scaleCampaignSegment: campaigns 0-24 on shape-3 segments 3, 8, ... 123;
// the others on segments 0, 1, 2, 4, ... (no shape 3) in turn.
func scaleCampaignSegment(c int) int {
	if c < scaleRunning {
		return 5*c + 3
	}
	var others []int
	for k := range scaleSegments {
		if k%5 != 3 {
			others = append(others, k)
		}
	}
	return others[(c-scaleRunning)%len(others)]
}

// scaleRule is segment k's rule (the shapes of internal/segment's
// batchRules, on this source's attributes).
func scaleRule(k int) string {
	f := float64((k*37)%100) / 100
	switch k % 5 {
	case 0:
		return fmt.Sprintf(`customer.pAlive < %.2f`, 0.05+0.9*f)
	case 1:
		return fmt.Sprintf(`customer.frequency >= %d && customer.expectedValue > %.1f`, 1+k%4, 150*f*f)
	case 2:
		return fmt.Sprintf(`has(customer.attributes.discount_share) && customer.attributes.discount_share >= %.2f && customer.pAlive > %.2f`, 0.1+0.5*f, f)
	case 3:
		return fmt.Sprintf(`customer.valuePercentile >= %.2f && customer.frequency >= %d`, 98+1.5*f, k%3)
	default:
		return fmt.Sprintf(`customer.pAlive < %.2f && customer.recencyDays <= %d && customer.frequency >= 1 && customer.expectedValue > %.1f`,
			0.2+0.6*f, 60+(k*7)%600, 100*f)
	}
}

// scalePurchases is a gzip member (appended to the export: gzip readers
// read concatenated members as one stream) with a purchase today for
// scaleBuyers of the customers.
func scalePurchases(t *testing.T, custGz []byte, today time.Time) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(custGz))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Scan() // header
	n := 0
	for sc.Scan() {
		id, _, _ := strings.Cut(sc.Text(), ",")
		if hashShare(id) < scaleBuyers {
			fmt.Fprintf(zw, "%s,%s,%.2f\n", id, today.Format(time.DateOnly), 35.0)
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	_ = zw.Close()
	t.Logf("%d customers buy today", n)
	return buf.Bytes()
}

// begin starts a phase: the operator's peak RSS is reset, its CPU time
// and metrics read.
func (s *scaleRun) begin(t *testing.T, name string) *scalePhase {
	t.Helper()
	p := &scalePhase{Name: name, start: time.Now(), cpu: s.cpuSeconds(t), metrics: s.operatorMetrics(t)}
	// "5" resets the peak RSS (VmHWM) to the current RSS.
	p.hwmOK = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0) == nil
	s.mu.Lock()
	s.sampled = 0
	s.mu.Unlock()
	t.Logf("phase %q begins", name)
	return p
}

// end records a phase's figures.
func (s *scaleRun) end(t *testing.T, p *scalePhase) {
	t.Helper()
	m := s.operatorMetrics(t)
	p.WallSeconds = time.Since(p.start).Seconds()
	p.OperatorCPUSeconds = s.cpuSeconds(t) - p.cpu
	s.mu.Lock()
	p.SampledPeakRSSMiB = s.sampled
	s.mu.Unlock()
	if p.hwmOK {
		p.OperatorPeakRSSMiB = s.procKiB(t, "VmHWM") / 1024
	} else {
		p.OperatorPeakRSSMiB = p.SampledPeakRSSMiB
	}
	p.Reconciles = m.sumBy("controller_runtime_reconcile_total", "controller").minus(p.metrics.sumBy("controller_runtime_reconcile_total", "controller"))
	p.OperatorRequests = m.sumBy("rest_client_requests_total", "method").minus(p.metrics.sumBy("rest_client_requests_total", "method"))
	p.ReconcileLatency = m.quantiles(p.metrics, "controller_runtime_reconcile_time_seconds", "controller")
	s.figures.Phases = append(s.figures.Phases, p)
	s.figures.OperatorPeakRSSMiB = math.Max(s.figures.OperatorPeakRSSMiB, p.OperatorPeakRSSMiB)
	s.figures.OperatorCPUSeconds += p.OperatorCPUSeconds
	t.Logf("FIGURE phase %q: %.1f s wall; operator %.1f CPU s, peak RSS %.0f MiB (sampled %.0f MiB); load %s",
		p.Name, p.WallSeconds, p.OperatorCPUSeconds, p.OperatorPeakRSSMiB, p.SampledPeakRSSMiB, scaleLoad())
	t.Logf("FIGURE phase %q: reconciles %s; operator API requests by method %s", p.Name, p.Reconciles, p.OperatorRequests)
	for _, c := range scaleKeys(p.ReconcileLatency) {
		q := p.ReconcileLatency[c]
		t.Logf("FIGURE phase %q: reconcile latency %-14s p50 %s p90 %s p99 %s, slowest ≤ %s (%v reconciles)", p.Name, c,
			scaleDur(q["p50"]), scaleDur(q["p90"]), scaleDur(q["p99"]), scaleDur(q["maxBucket"]), q["count"])
	}
}

// waitSnapshot waits until the source is Ready on a snapshot after prev
// and returns it; the time it was seen starts the segments' clock.
func (s *scaleRun) waitSnapshot(t *testing.T, prev int64, timeout time.Duration) *scaleSnapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var cs retentionv1.CustomerSource
		if err := s.w.k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: "shop"}, &cs); err != nil {
			t.Fatal(err)
		}
		ready := meta.FindStatusCondition(cs.Status.Conditions, retentionv1.ConditionReady)
		if cs.Status.SnapshotID > prev && ready != nil && ready.Status == metav1.ConditionTrue {
			t.Logf("source at snapshot %d: %d customers, %d transactions", cs.Status.SnapshotID, cs.Status.Customers, cs.Status.Transactions)
			if prev == 0 && cs.Status.Customers != scaleCustomers {
				t.Fatalf("source has %d customers, want %d", cs.Status.Customers, scaleCustomers)
			}
			return &scaleSnapshot{id: cs.Status.SnapshotID, seen: time.Now()}
		}
		if time.Now().After(deadline) {
			t.Fatalf("source not scored after snapshot %d within %s: %+v", prev, timeout, cs.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type scaleSnapshot struct {
	id   int64
	seen time.Time
}

// waitSegments polls the Segments every 250 ms until all are Ready on
// the snapshot, and records how long that took.
func (s *scaleRun) waitSegments(t *testing.T, p *scalePhase, snap *scaleSnapshot, timeout time.Duration) {
	t.Helper()
	p.StartToSnapshotSeconds = snap.seen.Sub(p.start).Seconds()
	current := map[string]time.Duration{}
	deadline := snap.seen.Add(timeout)
	var list retentionv1.SegmentList
	for {
		if err := s.w.k8s.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		now := time.Since(snap.seen)
		for _, sg := range list.Items {
			ready := meta.FindStatusCondition(sg.Status.Conditions, retentionv1.ConditionReady)
			if _, ok := current[sg.Name]; !ok && sg.Status.SnapshotID == snap.id && ready != nil && ready.Status == metav1.ConditionTrue {
				current[sg.Name] = now
			}
		}
		if len(list.Items) == scaleSegments && len(current) == scaleSegments {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d segments on snapshot %d within %s", len(current), len(list.Items), snap.id, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
	times := make([]time.Duration, 0, len(current))
	for _, d := range current {
		times = append(times, d)
	}
	slices.Sort(times)
	p.FirstSegmentSeconds, p.MedianSegmentSeconds = times[0].Seconds(), times[len(times)/2].Seconds()
	p.SnapshotToSegmentsSeconds = times[len(times)-1].Seconds()
	for _, sg := range list.Items {
		p.MembershipEntered += sg.Status.Entered
		p.MembershipExited += sg.Status.Exited
		p.MembersTotal += sg.Status.Size
	}
	t.Logf("FIGURE phase %q: snapshot %d seen %.1f s after the phase began; all %d segments current %.2f s after it (first %.2f s, median %.2f s); %d memberships, %d entered, %d exited",
		p.Name, snap.id, p.StartToSnapshotSeconds, scaleSegments, p.SnapshotToSegmentsSeconds, p.FirstSegmentSeconds, p.MedianSegmentSeconds,
		p.MembersTotal, p.MembershipEntered, p.MembershipExited)
}

// checkSizes compares a few Segments' status sizes with the store.
func (s *scaleRun) checkSizes(t *testing.T) {
	t.Helper()
	for _, k := range []int{0, 3, 9, 14} {
		var sg retentionv1.Segment
		if err := s.w.k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: scaleSegment(k)}, &sg); err != nil {
			t.Fatal(err)
		}
		if n := len(s.w.members(t, sg.Name)); int64(n) != sg.Status.Size {
			t.Errorf("segment %s: status says %d members, the store holds %d", sg.Name, sg.Status.Size, n)
		}
		t.Logf("segment %s (%s): %d members", sg.Name, sg.Spec.Rule, sg.Status.Size)
	}
}

// runCampaigns creates one CampaignRun for each of the first scaleRunning
// campaigns at once, waits until all have finished sending (counting the
// runner processes running at once) and checks their delivery.
func (s *scaleRun) runCampaigns(t *testing.T, p *scalePhase) {
	t.Helper()
	w := s.w
	var runs strings.Builder
	now := time.Now().UTC().Format(time.RFC3339)
	for c := range scaleRunning {
		fmt.Fprintf(&runs, "---\napiVersion: retention.dev/v1alpha1\nkind: CampaignRun\nmetadata: {name: %s-run, namespace: %s}\nspec:\n  campaignRef: {name: %s}\n  scheduledTime: %q\n",
			scaleCampaign(c), namespace, scaleCampaign(c), now)
	}
	w.run(t, strings.NewReader(runs.String()), "apply", "-f", "-")
	deadline := time.Now().Add(25 * time.Minute)
	for {
		p.PeakRunnerProcesses = max(p.PeakRunnerProcesses, len(w.runner.Running()))
		var list retentionv1.CampaignRunList
		if err := w.k8s.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		done := 0
		phases := map[retentionv1.RunPhase]int{}
		for _, r := range list.Items {
			phases[r.Status.Phase]++
			if pastSending(r) {
				done++
			}
		}
		if done == scaleRunning {
			break
		}
		if r := slices.IndexFunc(list.Items, func(r retentionv1.CampaignRun) bool { return r.Status.Phase == retentionv1.RunFailed }); r >= 0 {
			t.Fatalf("run %s failed: %+v", list.Items[r].Name, list.Items[r].Status.Conditions)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every run finished sending within 25 minutes: %v", phases)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.RunsSeconds = time.Since(p.start).Seconds()
	var list retentionv1.CampaignRunList
	if err := w.k8s.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b retentionv1.CampaignRun) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range list.Items {
		w.checkDelivery(t, r, webhookDelivery(w))
	}
	var pods corev1.PodList
	if err := w.k8s.List(context.Background(), &pods, client.InNamespace(jobsNamespace)); err != nil {
		t.Fatal(err)
	}
	p.RunnerPods = len(pods.Items)
	st := w.webhook.Stats()
	p.MessagesReceived, p.MessagesUnique = st.Received, st.Unique
	t.Logf("FIGURE phase %q: %d runs × %d shards finished sending in %.1f s; %d runner pods, at most %d runner processes at once; receiver: %d requests, %d unique idempotency keys, %d bad signatures",
		p.Name, scaleRunning, scaleShards, p.RunsSeconds, p.RunnerPods, p.PeakRunnerProcesses, st.Received, st.Unique, st.BadSignatures)
	if st.BadSignatures != 0 {
		t.Errorf("receiver: %d bad signatures", st.BadSignatures)
	}
}

// settle waits until the operator has made no API write for 15 s (runs
// measured, statuses written), at most 5 minutes.
func (s *scaleRun) settle(t *testing.T, p *scalePhase) {
	t.Helper()
	writes := func() float64 { return s.operatorMetrics(t).writes() }
	before, since, start := writes(), time.Now(), time.Now()
	for time.Since(since) < 15*time.Second {
		if time.Since(start) > 5*time.Minute {
			t.Errorf("the operator kept writing to the API server for 5 minutes after phase %q", p.Name)
			return
		}
		time.Sleep(time.Second)
		if n := writes(); n != before {
			before, since = n, time.Now()
		}
	}
	t.Logf("phase %q: API writes settled %.0f s after the phase began", p.Name, since.Sub(p.start).Seconds())
	p.SettledSeconds = since.Sub(p.start).Seconds()
}

// steady measures a minute with nothing changing.
func (s *scaleRun) steady(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	cpu0, op0, api0 := s.cpuSeconds(t), s.operatorMetrics(t), s.apiServerMetrics(t, ctx)
	start := time.Now()
	time.Sleep(scaleSteady)
	cpu1, op1, api1 := s.cpuSeconds(t), s.operatorMetrics(t), s.apiServerMetrics(t, ctx)
	perMin := 60 / time.Since(start).Seconds()
	f := &scaleSteadyFx{Name: name, WindowSeconds: time.Since(start).Seconds(), OperatorCPUSeconds: cpu1 - cpu0, OperatorRSSMiB: s.procKiB(t, "VmRSS") / 1024}
	f.OperatorRequestsPerMinute = op1.sumBy("rest_client_requests_total", "method").minus(op0.sumBy("rest_client_requests_total", "method")).scale(perMin)
	f.OperatorWritesPerMinute = (op1.writes() - op0.writes()) * perMin
	f.Reconciles = op1.sumBy("controller_runtime_reconcile_total", "controller").minus(op0.sumBy("controller_runtime_reconcile_total", "controller"))
	// The test's own /metrics scrapes of kube-apiserver are not counted:
	// non-resource requests are left out.
	resourceOnly := func(l map[string]string) bool { return l["resource"] != "" }
	f.APIServerRequestsPerMinute = api1.sumByIf("apiserver_request_total", "verb", resourceOnly).minus(api0.sumByIf("apiserver_request_total", "verb", resourceOnly)).scale(perMin)
	retention := func(l map[string]string) bool { return l["group"] == retentionv1.GroupVersion.Group }
	f.RetentionGroupPerMinute = api1.sumByIf("apiserver_request_total", "verb", retention).minus(api0.sumByIf("apiserver_request_total", "verb", retention)).scale(perMin)
	byRes := func(m scaleMetrics) scaleCounts {
		out := scaleCounts{}
		for _, smp := range m {
			if smp.name == "apiserver_request_total" && smp.labels["resource"] != "" {
				out[smp.labels["verb"]+" "+smp.labels["resource"]+"/"+smp.labels["subresource"]] += smp.value
			}
		}
		return out
	}
	res := byRes(api1).minus(byRes(api0))
	keys := scaleKeys(res)
	sort.SliceStable(keys, func(i, j int) bool { return res[keys[i]] > res[keys[j]] })
	for _, k := range keys[:min(len(keys), 12)] {
		if res[k] > 0 {
			f.APIServerTopResources = append(f.APIServerTopResources, fmt.Sprintf("%s: %.1f/min", k, res[k]*perMin))
		}
	}
	s.figures.Steady = append(s.figures.Steady, f)
	t.Logf("FIGURE %s (%.0f s): operator API requests per minute by method %s; writes per minute %.1f", name, f.WindowSeconds, f.OperatorRequestsPerMinute, f.OperatorWritesPerMinute)
	t.Logf("FIGURE %s: kube-apiserver requests per minute by verb (all clients) %s; retention.dev resources only %s", name, f.APIServerRequestsPerMinute, f.RetentionGroupPerMinute)
	t.Logf("FIGURE %s: busiest on kube-apiserver: %s", name, strings.Join(f.APIServerTopResources, "; "))
	t.Logf("FIGURE %s: operator %.2f CPU s in %.0f s, RSS %.0f MiB, reconciles %s", name, f.OperatorCPUSeconds, f.WindowSeconds, f.OperatorRSSMiB, f.Reconciles)
	if f.OperatorWritesPerMinute != 0 {
		t.Errorf("%s: the operator made %.1f API writes per minute, want 0", name, f.OperatorWritesPerMinute)
	}
	if s.figures.OperatorPeakRSSMiB > 1024 {
		t.Errorf("the operator's peak RSS was %.0f MiB, above the 1 GiB target", s.figures.OperatorPeakRSSMiB)
	}
}

// write saves the figures as JSON.
func (s *scaleRun) write(t *testing.T) {
	path := os.Getenv("SCALE_FIGURES")
	if path == "" {
		path = filepath.Join(os.TempDir(), "retention-scale-figures.json")
	}
	b, err := json.MarshalIndent(s.figures, "", "  ")
	if err == nil {
		err = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		t.Errorf("writing the figures: %v", err)
		return
	}
	t.Logf("FIGURE file: %s (operator peak RSS %.0f MiB, %.1f CPU s over the phases)", path, s.figures.OperatorPeakRSSMiB, s.figures.OperatorCPUSeconds)
}

// sampleRSS records the operator's highest VmRSS every 250 ms.
func (s *scaleRun) sampleRSS() (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			pid := s.pid // the restart phase changes it
			s.mu.Unlock()
			if kib, err := scaleProcKiB(pid, "VmRSS"); err == nil {
				s.mu.Lock()
				s.sampled = math.Max(s.sampled, kib/1024)
				s.mu.Unlock()
			}
		}
	}()
	return func() { close(done) }
}

func (s *scaleRun) procKiB(t *testing.T, field string) float64 {
	t.Helper()
	v, err := scaleProcKiB(s.pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scaleProcKiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuSeconds is the operator's user and system CPU time (/proc/pid/stat
// utime and stime, in clock ticks of 1/100 s).
func (s *scaleRun) cpuSeconds(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's closing parenthesis: state is the
	// 3rd field, utime the 14th, stime the 15th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

func scaleLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// scaleMetrics are samples of the Prometheus text format.
type scaleMetrics []scaleSample

type scaleSample struct {
	name   string
	labels map[string]string
	value  float64
}

var scaleLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseScaleMetrics(text string) scaleMetrics {
	var out scaleMetrics
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			continue
		}
		smp := scaleSample{labels: map[string]string{}, value: v}
		if i := strings.IndexByte(l, '{'); i >= 0 && i < sp {
			smp.name = l[:i]
			for _, m := range scaleLabel.FindAllStringSubmatch(l[i:sp], -1) {
				smp.labels[m[1]] = m[2]
			}
		} else {
			smp.name = l[:sp]
		}
		out = append(out, smp)
	}
	return out
}

func (s *scaleRun) operatorMetrics(t *testing.T) scaleMetrics {
	t.Helper()
	resp, err := http.Get("http://" + s.w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return parseScaleMetrics(string(b))
}

func (s *scaleRun) apiServerMetrics(t *testing.T, ctx context.Context) scaleMetrics {
	t.Helper()
	b, err := s.w.clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("kube-apiserver /metrics: %v", err)
	}
	m := parseScaleMetrics(string(b))
	if !slices.ContainsFunc(m, func(s scaleSample) bool { return s.name == "apiserver_request_total" }) {
		t.Fatal("no apiserver_request_total in kube-apiserver's metrics")
	}
	return m
}

// scaleCounts are counter values by a label.
type scaleCounts map[string]float64

func (m scaleMetrics) sumBy(name, label string) scaleCounts {
	return m.sumByIf(name, label, func(map[string]string) bool { return true })
}

func (m scaleMetrics) sumByIf(name, label string, keep func(map[string]string) bool) scaleCounts {
	out := scaleCounts{}
	for _, s := range m {
		if s.name == name && keep(s.labels) {
			out[s.labels[label]] += s.value
		}
	}
	return out
}

// writes are the operator's API write requests.
func (m scaleMetrics) writes() float64 {
	var n float64
	for method, v := range m.sumBy("rest_client_requests_total", "method") {
		switch method {
		case "POST", "PUT", "PATCH", "DELETE":
			n += v
		}
	}
	return n
}

func (c scaleCounts) minus(o scaleCounts) scaleCounts {
	out := scaleCounts{}
	for k, v := range c {
		if d := v - o[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (c scaleCounts) scale(f float64) scaleCounts {
	out := scaleCounts{}
	for k, v := range c {
		out[k] = math.Round(v*f*10) / 10
	}
	return out
}

func (c scaleCounts) String() string {
	var parts []string
	for _, k := range scaleKeys(c) {
		parts = append(parts, fmt.Sprintf("%s %v", k, c[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// quantiles computes, per value of label, the quantiles of the histogram
// name's observations since before (bucket counts subtracted), as
// Prometheus's histogram_quantile does: linear within a bucket, the
// highest finite bound for the +Inf bucket.
func (m scaleMetrics) quantiles(before scaleMetrics, name, label string) map[string]map[string]float64 {
	type bucket struct{ le, n float64 }
	buckets := func(ms scaleMetrics) map[string]map[float64]float64 {
		out := map[string]map[float64]float64{}
		for _, s := range ms {
			if s.name != name+"_bucket" {
				continue
			}
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				continue
			}
			if out[s.labels[label]] == nil {
				out[s.labels[label]] = map[float64]float64{}
			}
			out[s.labels[label]][le] += s.value
		}
		return out
	}
	now, then := buckets(m), buckets(before)
	out := map[string]map[string]float64{}
	for key, bs := range now {
		var list []bucket
		for le, n := range bs {
			list = append(list, bucket{le, n - then[key][le]})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].le < list[j].le })
		total := list[len(list)-1].n
		if total <= 0 {
			continue
		}
		r := map[string]float64{"count": total}
		// max: the upper bound of the highest bucket that got an
		// observation (a source's one batch reconcile hides above p99).
		for i := range list {
			if list[i].n == total {
				r["maxBucket"] = list[i].le
				if math.IsInf(list[i].le, 1) {
					r["maxBucket"] = -1 // above the highest finite bound
				}
				break
			}
		}
		for qn, q := range map[string]float64{"p50": 0.5, "p90": 0.9, "p99": 0.99} {
			rank := q * total
			i := sort.Search(len(list), func(i int) bool { return list[i].n >= rank })
			var v float64
			switch {
			case math.IsInf(list[i].le, 1):
				v = list[max(len(list)-2, 0)].le
			case i == 0:
				v = list[0].le * rank / list[0].n
			default:
				lo, hi := list[i-1], list[i]
				v = lo.le + (hi.le-lo.le)*(rank-lo.n)/(hi.n-lo.n)
			}
			r[qn] = v
		}
		out[key] = r
	}
	return out
}

func scaleDur(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(100 * time.Microsecond).String()
}

func scaleKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
