package controllers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/store"
)

// observationEnd is the end of the synthetic purchase history.
var observationEnd = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)

// transactionsCSV draws a purchase history of n customers from BG/NBD:
// first purchases spread over the first half of 2025, observed to the end
// of the year. It is deterministic for a seed.
func transactionsCSV(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := btyd.BGNBD{R: 0.25, Alpha: 4, A: 0.8, B: 2.4}
	start := observationEnd.AddDate(-1, 0, 1)
	var b bytes.Buffer
	b.WriteString("customer_id,date,amount\n")
	for i := range n {
		first := start.AddDate(0, 0, rng.IntN(182))
		T := observationEnd.Sub(first).Hours() / 24 / 7
		fmt.Fprintf(&b, "c%05d,%s,%.2f\n", i, first.Format("2006-01-02"), 10+rng.Float64()*40)
		for _, t := range btyd.SimulateBGNBD(rng, m, T) {
			day := first.Add(time.Duration(t * 7 * 24 * float64(time.Hour)))
			fmt.Fprintf(&b, "c%05d,%s,%.2f\n", i, day.Format("2006-01-02"), 10+rng.Float64()*40)
		}
	}
	return b.Bytes()
}

// createCSVSource creates a ConfigMap of transactionsCSV(customers, seed)
// and a source reading it, both with labels.
func createCSVSource(t *testing.T, ns, name, configMap string, customers int, seed uint64, labels map[string]string) (*corev1.ConfigMap, *retentionv1.CustomerSource) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: configMap, Labels: labels},
		Data: map[string]string{"transactions.csv": string(transactionsCSV(customers, seed))}}
	if err := k8sClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	cs := newCSVSource(ns, name, configMap, labels)
	if err := k8sClient.Create(ctx, cs); err != nil {
		t.Fatal(err)
	}
	return cm, cs
}

func newCSVSource(ns, name, configMap string, labels map[string]string) *retentionv1.CustomerSource {
	return &retentionv1.CustomerSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: retentionv1.CustomerSourceSpec{
			CSV: &retentionv1.CSVSource{Transactions: retentionv1.CSVLocation{
				ConfigMapKeyRef: &retentionv1.KeySelector{Name: configMap, Key: "transactions.csv"},
			}},
			Mapping: retentionv1.ColumnMapping{CustomerID: "customer_id", Timestamp: "date", Amount: "amount", TimestampLayout: "Date"},
			Scoring: retentionv1.ScoringSpec{
				Model:          retentionv1.ModelBGNBD,
				ObservationEnd: &metav1.Time{Time: observationEnd},
			},
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
		},
	}
}

// TestCustomerSourceScoring: the suite's manager (SQLite store) scores a
// source from a ConfigMap; a spec change scores again; too many bad rows
// leave the previous snapshot current with a reason; a custom score that
// does not compile stalls the source; a Segment sees the new snapshot.
func TestCustomerSourceScoring(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const customers = 400
	cm, cs := createCSVSource(t, ns, "shop", "shop-data", customers, 7, nil)
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "all"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "true"}}
	if err := k8sClient.Create(ctx, seg); err != nil {
		t.Fatal(err)
	}
	conds := func() []metav1.Condition { return cs.Status.Conditions }
	eventually(t, 2*waitFor, readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, fmt.Sprintf("scored %d customers with BGNBD", customers)))

	st := cs.Status
	if st.Customers != customers || st.Transactions <= customers || st.SnapshotID == 0 {
		t.Fatalf("status customers=%d transactions=%d snapshot=%d", st.Customers, st.Transactions, st.SnapshotID)
	}
	if st.Model == nil || st.Model.Selected != "BGNBD" || len(st.Model.Models) == 0 || st.Model.Models[0].Parameters["r"] == "" || st.Model.Models[0].LogLikelihood == "" {
		t.Fatalf("model status incomplete: %+v", st.Model)
	}
	if st.Population == nil || st.Population.Active+st.Population.AtRisk == 0 || st.Population.TotalExpectedValue == "" {
		t.Fatalf("population summary incomplete: %+v", st.Population)
	}
	if st.LastScoredTime == nil || st.NextScoredTime == nil || st.NextScoredTime.Sub(st.LastScoredTime.Time) != time.Hour {
		t.Fatalf("last/next scored %v / %v, want one refresh interval apart", st.LastScoredTime, st.NextScoredTime)
	}
	assertSnapshot(t, suiteStores, ns+"/shop", st.SnapshotID, customers)
	eventually(t, waitFor, readyIs(seg, func() []metav1.Condition { return seg.Status.Conditions },
		metav1.ConditionTrue, retentionv1.ReasonSucceeded, fmt.Sprintf("%d members (100.0%% of the source)", customers)))

	// A spec change scores again into a new snapshot.
	first := st.SnapshotID
	patch := client.MergeFrom(cs.DeepCopy())
	cs.Spec.Scoring.CustomScores = []retentionv1.CustomScore{{Name: "valueAtRisk", Expression: "customer.expectedValue * (1.0 - customer.pAlive)"}}
	if err := k8sClient.Patch(ctx, cs, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*waitFor, func() error {
		if err := readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored")(); err != nil {
			return err
		}
		if cs.Status.SnapshotID == first {
			return fmt.Errorf("still on snapshot %d", first)
		}
		return nil
	})
	second := cs.Status.SnapshotID

	// Bad rows beyond the allowed share: the previous snapshot stays current.
	bad := strings.Replace(string(transactionsCSV(customers, 7)), ",2025-", ",2025/", 200)
	// New data in the ConfigMap is scored at once (the watch and the input
	// revision), not at the next refresh an hour later.
	cm.Data["transactions.csv"] = bad
	if err := k8sClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*waitFor, readyIs(cs, conds, metav1.ConditionFalse, retentionv1.ReasonTooManyRejectedRows, "previous snapshot stays current"))
	if !strings.Contains(cs.Status.InputRevision, "ConfigMap/shop-data@") {
		t.Fatalf("input revision %q does not name the ConfigMap", cs.Status.InputRevision)
	}
	if cs.Status.SnapshotID != second {
		t.Fatalf("snapshot moved to %d on a failed read, want %d", cs.Status.SnapshotID, second)
	}
	if len(cs.Status.RejectedSamples) == 0 || cs.Status.RejectedSamples[0].Column != "date" {
		t.Fatalf("rejected samples %+v, want the date column named", cs.Status.RejectedSamples)
	}
	for _, s := range cs.Status.RejectedSamples {
		if strings.Contains(s.Reason, "2025/") || strings.Contains(s.Reason, "c00") {
			t.Fatalf("rejection reason leaks row data: %q", s.Reason)
		}
	}
	assertSnapshot(t, suiteStores, ns+"/shop", second, customers)
	eventually(t, waitFor, eventRecorded(ns, "shop", retentionv1.ReasonTooManyRejectedRows))

	// A custom score that does not compile stalls the source.
	patch = client.MergeFrom(cs.DeepCopy())
	cs.Spec.Scoring.CustomScores = []retentionv1.CustomScore{{Name: "broken", Expression: "customer.noSuchField * 2"}}
	if err := k8sClient.Patch(ctx, cs, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(cs, conds, metav1.ConditionFalse, retentionv1.ReasonInvalidRule, `custom score "broken"`))
	if !meta.IsStatusConditionTrue(cs.Status.Conditions, retentionv1.ConditionStalled) {
		t.Fatalf("an invalid custom score must set Stalled=True: %+v", cs.Status.Conditions)
	}
}

// assertSnapshot checks that the store's current snapshot of a source is id
// and holds n customers with finite scores.
func assertSnapshot(t *testing.T, stores *StoreProvider, source string, id int64, n int) {
	t.Helper()
	ctx := context.Background()
	st, err := stores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := st.SnapshotGetCurrent(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	if cur.ID != id {
		t.Fatalf("current snapshot of %s is %d, want %d", source, cur.ID, id)
	}
	count := 0
	err = st.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: id}, func(c *customer.Scored) error {
		count++
		if p := c.Scores.PAlive; !(p >= 0 && p <= 1) {
			return fmt.Errorf("customer has P(alive) %v", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("snapshot %d holds %d customers, want %d", id, count, n)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// TestCustomerSourceRefreshInterval drives the reconciler by hand with a
// fake clock and a PostgreSQL store: it scores once, is not due again
// before the refresh interval, scores again after it, and stops while
// suspended.
func TestCustomerSourceRefreshInterval(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	hidden := map[string]string{manualLabel: "true"}
	_, cs := createCSVSource(t, ns, "warehouse", "data", 150, 3, hidden)
	stores := NewStoreProvider(pgtest.Start(t), store.Options{})
	t.Cleanup(func() { _ = stores.Close() })
	clock := &fakeClock{now: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	r := &CustomerSourceReconciler{Client: k8sClient, APIReader: k8sClient, Clock: clock, Stores: stores}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cs)}
	reconcileOnce := func() ctrl.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if err := k8sClient.Get(ctx, req.NamespacedName, cs); err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := reconcileOnce()
	if !isReady(cs.Status.Conditions) || cs.Status.Customers != 150 {
		t.Fatalf("first reconcile: customers=%d conditions=%+v", cs.Status.Customers, cs.Status.Conditions)
	}
	if res.RequeueAfter != time.Hour {
		t.Fatalf("requeue after %v, want the refresh interval", res.RequeueAfter)
	}
	first := cs.Status.SnapshotID
	assertSnapshot(t, stores, ns+"/warehouse", first, 150)

	clock.now = clock.now.Add(20 * time.Minute)
	if res := reconcileOnce(); res.RequeueAfter != 40*time.Minute || cs.Status.SnapshotID != first {
		t.Fatalf("before the interval: requeue %v snapshot %d, want 40m and %d", res.RequeueAfter, cs.Status.SnapshotID, first)
	}

	clock.now = clock.now.Add(41 * time.Minute)
	reconcileOnce()
	if cs.Status.SnapshotID == first || !cs.Status.LastScoredTime.Time.Equal(clock.now) {
		t.Fatalf("after the interval: snapshot %d (first %d), last scored %v", cs.Status.SnapshotID, first, cs.Status.LastScoredTime)
	}
	assertSnapshot(t, stores, ns+"/warehouse", cs.Status.SnapshotID, 150)

	patch := client.MergeFrom(cs.DeepCopy())
	cs.Spec.Suspend = true
	if err := k8sClient.Patch(ctx, cs, patch); err != nil {
		t.Fatal(err)
	}
	second := cs.Status.SnapshotID
	clock.now = clock.now.Add(3 * time.Hour)
	if res := reconcileOnce(); res.RequeueAfter != 0 || cs.Status.SnapshotID != second || cs.Status.NextScoredTime != nil {
		t.Fatalf("suspended: requeue %v snapshot %d next %v", res.RequeueAfter, cs.Status.SnapshotID, cs.Status.NextScoredTime)
	}

	// Deleting the source removes its snapshots from the store.
	if err := k8sClient.Delete(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	st, _ := stores.Get(ctx)
	if _, err := st.SnapshotGetCurrent(ctx, ns+"/warehouse"); err == nil {
		t.Fatal("snapshots of a deleted source are still in the store")
	}
}

// annotateSource sets annotations on a source with a merge patch (no spec
// change, so no new generation) and reads it back.
func annotateSource(t *testing.T, cs *retentionv1.CustomerSource, kv ...string) {
	t.Helper()
	patch := client.MergeFrom(cs.DeepCopy())
	if cs.Annotations == nil {
		cs.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		cs.Annotations[kv[i]] = kv[i+1]
	}
	if err := k8sClient.Patch(context.Background(), cs, patch); err != nil {
		t.Fatal(err)
	}
}

// TestCustomerSourceReconcileRequest: the suite's manager scores a source
// (refreshInterval 1h) once; a new retention.dev/requestedAt value — no
// spec change — gets through the watch and scores it exactly once more,
// recorded in status.lastHandledReconcileAt; the same value again, beside
// another annotation, does not.
func TestCustomerSourceReconcileRequest(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const customers = 200
	_, cs := createCSVSource(t, ns, "shop", "shop-data", customers, 11, nil)
	conds := func() []metav1.Condition { return cs.Status.Conditions }
	eventually(t, 2*waitFor, readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, fmt.Sprintf("scored %d customers", customers)))
	scorings := func() float64 {
		return testutil.ToFloat64(suiteMetrics.SourceScoringsTotal.WithLabelValues(ns, "shop", "success"))
	}
	if got := scorings(); got != 1 {
		t.Fatalf("%v scorings after creation, want 1", got)
	}
	first, generation := cs.Status.SnapshotID, cs.Generation
	if cs.Status.LastHandledReconcileAt != "" {
		t.Fatalf("lastHandledReconcileAt %q before any request", cs.Status.LastHandledReconcileAt)
	}

	requested := time.Now().UTC().Format(time.RFC3339)
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, requested)
	eventually(t, 2*waitFor, func() error {
		if err := readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored")(); err != nil {
			return err
		}
		if cs.Status.LastHandledReconcileAt != requested || cs.Status.SnapshotID == first {
			return fmt.Errorf("lastHandledReconcileAt %q snapshot %d, want %q and a snapshot after %d",
				cs.Status.LastHandledReconcileAt, cs.Status.SnapshotID, requested, first)
		}
		return nil
	})
	if cs.Generation != generation {
		t.Fatalf("generation %d, want %d: the request must not be a spec change", cs.Generation, generation)
	}
	if got := scorings(); got != 2 {
		t.Fatalf("%v scorings after one request, want 2", got)
	}
	second := cs.Status.SnapshotID
	assertSnapshot(t, suiteStores, ns+"/shop", second, customers)

	// The same value again, with another annotation changed: handled
	// already, nothing is scored.
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, requested, "example.com/note", "touched")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cs), cs); err != nil {
			t.Fatal(err)
		}
		if got := scorings(); got != 2 || cs.Status.SnapshotID != second {
			t.Fatalf("scored again on a handled request: %v scorings, snapshot %d (want 2, %d)", got, cs.Status.SnapshotID, second)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCustomerSourceReconcileRequestDue drives the reconciler by hand with a
// fake clock on a source read from a URL: a request is due at once within
// the refresh interval and during a failure backoff, and reads the URL
// again; it is handled once (the handled value again, or another
// annotation, reads nothing); it is not scored while suspended.
func TestCustomerSourceReconcileRequestDue(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const customers = 150
	good := string(transactionsCSV(customers, 5))
	var data atomic.Value
	data.Store(good)
	var reads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reads.Add(1)
		_, _ = io.WriteString(w, data.Load().(string))
	}))
	t.Cleanup(srv.Close)
	cs := newCSVSource(ns, "warehouse", "", map[string]string{manualLabel: "true"})
	cs.Spec.CSV.Transactions = retentionv1.CSVLocation{URL: srv.URL + "/transactions.csv"}
	if err := k8sClient.Create(ctx, cs); err != nil {
		t.Fatal(err)
	}
	stores := NewStoreProvider("sqlite://"+filepath.Join(t.TempDir(), "store.db"), store.Options{})
	t.Cleanup(func() { _ = stores.Close() })
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	r := &CustomerSourceReconciler{Client: k8sClient, APIReader: k8sClient, Clock: clock, Stores: stores, Metrics: m}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cs)}
	count := func(result string) float64 {
		return testutil.ToFloat64(m.SourceScoringsTotal.WithLabelValues(ns, "warehouse", result))
	}
	// reconcileOnce reconciles and checks the requeue, the scorings
	// (successful, failed) counted so far, and whether the URL was read.
	reconcileOnce := func(step string, requeue time.Duration, successes, failures float64, read bool) {
		t.Helper()
		before := reads.Load()
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatalf("%s: reconcile: %v", step, err)
		}
		if err := k8sClient.Get(ctx, req.NamespacedName, cs); err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter != requeue || count("success") != successes || count("failure") != failures || (reads.Load() > before) != read {
			t.Fatalf("%s: requeue %v, %v successes, %v failures, URL read %v; want %v, %v, %v, %v", step,
				res.RequeueAfter, count("success"), count("failure"), reads.Load() > before, requeue, successes, failures, read)
		}
	}

	reconcileOnce("first scoring", time.Hour, 1, 0, true)
	first, generation := cs.Status.SnapshotID, cs.Generation
	clock.now = clock.now.Add(10 * time.Minute)
	reconcileOnce("within the interval", 50*time.Minute, 1, 0, false)

	// A request within the interval: read and scored at once, and once.
	clock.now = clock.now.Add(time.Minute)
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, "2026-01-05T09:11:00Z")
	reconcileOnce("requested", time.Hour, 2, 0, true)
	if cs.Status.SnapshotID == first || cs.Status.LastHandledReconcileAt != "2026-01-05T09:11:00Z" || !cs.Status.LastScoredTime.Time.Equal(clock.now) {
		t.Fatalf("requested: snapshot %d (first %d), lastHandledReconcileAt %q, last scored %v",
			cs.Status.SnapshotID, first, cs.Status.LastHandledReconcileAt, cs.Status.LastScoredTime)
	}
	if cs.Generation != generation {
		t.Fatalf("generation %d, want %d", cs.Generation, generation)
	}
	second := cs.Status.SnapshotID
	assertSnapshot(t, stores, ns+"/warehouse", second, customers)
	clock.now = clock.now.Add(time.Minute)
	reconcileOnce("request handled", 59*time.Minute, 2, 0, false)
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, "2026-01-05T09:11:00Z", "example.com/note", "touched")
	reconcileOnce("same value, another annotation", 59*time.Minute, 2, 0, false)
	if cs.Status.SnapshotID != second {
		t.Fatalf("snapshot moved to %d without a new request, want %d", cs.Status.SnapshotID, second)
	}

	// The URL serves bad rows: the refresh fails and backs off 30s; a
	// request during the backoff is tried at once, and recorded although
	// it failed too.
	data.Store(strings.Replace(good, ",2025-", ",2025/", 60))
	clock.now = clock.now.Add(time.Hour)
	reconcileOnce("bad data", 30*time.Second, 2, 1, true)
	if err := readyIs(cs, func() []metav1.Condition { return cs.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonTooManyRejectedRows, "")(); err != nil {
		t.Fatal(err)
	}
	clock.now = clock.now.Add(10 * time.Second)
	reconcileOnce("backing off", 20*time.Second, 2, 1, false)
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, "2026-01-05T10:13:10Z")
	reconcileOnce("requested while backing off", 30*time.Second, 2, 2, true)
	if cs.Status.LastHandledReconcileAt != "2026-01-05T10:13:10Z" || cs.Status.SnapshotID != second {
		t.Fatalf("failed request: lastHandledReconcileAt %q snapshot %d, want 2026-01-05T10:13:10Z and %d",
			cs.Status.LastHandledReconcileAt, cs.Status.SnapshotID, second)
	}
	reconcileOnce("failed request handled", 30*time.Second, 2, 2, false)

	// Suspended: a request is neither read nor scored, and stays unhandled.
	patch := client.MergeFrom(cs.DeepCopy())
	cs.Spec.Suspend = true
	if err := k8sClient.Patch(ctx, cs, patch); err != nil {
		t.Fatal(err)
	}
	annotateSource(t, cs, retentionv1.ReconcileRequestedAnnotation, "2026-01-05T10:14:00Z")
	clock.now = clock.now.Add(time.Minute)
	reconcileOnce("suspended", 0, 2, 2, false)
	if cs.Status.LastHandledReconcileAt != "2026-01-05T10:13:10Z" {
		t.Fatalf("suspended: lastHandledReconcileAt %q, want the last handled value", cs.Status.LastHandledReconcileAt)
	}
}
