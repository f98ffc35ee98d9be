package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// selectIDs applies a predicate, written in Go, to a stored snapshot: the
// membership the segment's CEL rule must produce.
func selectIDs(t *testing.T, snapshotID int64, keep func(*customer.Scored) bool) map[string]bool {
	t.Helper()
	st, err := suiteStores.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	err = st.SnapshotScan(context.Background(), &store.SnapshotScanParams{SnapshotID: snapshotID}, func(c *customer.Scored) error {
		if keep(c) {
			ids[c.ID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// members reads a segment's membership from the store.
func members(t *testing.T, key string) map[string]bool {
	t.Helper()
	st, err := suiteStores.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	if err := st.MembershipScan(context.Background(), &store.MembershipScanParams{Segment: key}, func(m *store.Member) error {
		ids[m.CustomerID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

func diff(a, b map[string]bool) int64 {
	var n int64
	for id := range a {
		if !b[id] {
			n++
		}
	}
	return n
}

func sameSet(t *testing.T, got, want map[string]bool) {
	t.Helper()
	if diff(got, want) != 0 || diff(want, got) != 0 {
		g, w := keys(got), keys(want)
		t.Fatalf("membership differs: %d members, want %d (first got %v, want %v)", len(g), len(w), head(g), head(w))
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// TestSegmentMembership: source scored → segment populated → data changes →
// entries and exits exact → rule edited → membership follows → invalid
// rule → condition and Event, membership untouched.
func TestSegmentMembership(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cm, cs := createCSVSource(t, ns, "shop", "data", 300, 11, nil)
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loyal"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 2"}}
	if err := k8sClient.Create(ctx, seg); err != nil {
		t.Fatal(err)
	}
	key := ns + "/loyal"
	segConds := func() []metav1.Condition { return seg.Status.Conditions }
	srcConds := func() []metav1.Condition { return cs.Status.Conditions }

	// Evaluated on the first snapshot.
	eventually(t, waitFor, readyIs(cs, srcConds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored"))
	snap1 := cs.Status.SnapshotID
	want1 := selectIDs(t, snap1, func(c *customer.Scored) bool { return c.Features.Frequency >= 2 })
	eventually(t, waitFor, func() error {
		if err := readyIs(seg, segConds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "members")(); err != nil {
			return err
		}
		if seg.Status.SnapshotID != snap1 {
			return fmt.Errorf("segment on snapshot %d, want %d", seg.Status.SnapshotID, snap1)
		}
		return nil
	})
	if seg.Status.Size != int64(len(want1)) || seg.Status.Entered != int64(len(want1)) || seg.Status.Exited != 0 || len(want1) == 0 {
		t.Fatalf("first evaluation: size %d entered %d exited %d, want %d/%d/0", seg.Status.Size, seg.Status.Entered, seg.Status.Exited, len(want1), len(want1))
	}
	sameSet(t, members(t, key), want1)

	// The data changes: a new snapshot; entries and exits are exact.
	snap2 := rescoreWith(t, cm, cs, transactionsCSV(300, 12))
	want2 := selectIDs(t, snap2, func(c *customer.Scored) bool { return c.Features.Frequency >= 2 })
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(seg), seg); err != nil {
			return err
		}
		if seg.Status.SnapshotID != snap2 {
			return fmt.Errorf("segment on snapshot %d, want %d", seg.Status.SnapshotID, snap2)
		}
		return nil
	})
	entered, exited := diff(want2, want1), diff(want1, want2)
	if entered+exited == 0 {
		t.Fatal("test data did not change the membership")
	}
	if seg.Status.Size != int64(len(want2)) || seg.Status.Entered != entered || seg.Status.Exited != exited {
		t.Fatalf("after the data changed: size %d entered %d exited %d, want %d/%d/%d", seg.Status.Size, seg.Status.Entered, seg.Status.Exited, len(want2), entered, exited)
	}
	sameSet(t, members(t, key), want2)

	// The rule is edited: the membership follows on the same snapshot.
	patch := client.MergeFrom(seg.DeepCopy())
	seg.Spec.Rule = "customer.frequency >= 3 && customer.pAlive > 0.1"
	if err := k8sClient.Patch(ctx, seg, patch); err != nil {
		t.Fatal(err)
	}
	want3 := selectIDs(t, snap2, func(c *customer.Scored) bool { return c.Features.Frequency >= 3 && c.Scores.PAlive > 0.1 })
	eventually(t, waitFor, readyIs(seg, segConds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, fmt.Sprintf("%d members", len(want3))))
	if seg.Status.Entered != diff(want3, want2) || seg.Status.Exited != diff(want2, want3) {
		t.Fatalf("after the rule changed: entered %d exited %d, want %d/%d", seg.Status.Entered, seg.Status.Exited, diff(want3, want2), diff(want2, want3))
	}
	sameSet(t, members(t, key), want3)

	// An invalid rule: condition and Event naming the field; membership untouched.
	patch = client.MergeFrom(seg.DeepCopy())
	seg.Spec.Rule = "customer.lifetimeSpend > 100.0"
	if err := k8sClient.Patch(ctx, seg, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(seg, segConds, metav1.ConditionFalse, retentionv1.ReasonInvalidRule, "lifetimeSpend"))
	if !meta.IsStatusConditionTrue(seg.Status.Conditions, retentionv1.ConditionStalled) {
		t.Fatalf("an invalid rule must set Stalled=True: %+v", seg.Status.Conditions)
	}
	eventually(t, waitFor, eventRecorded(ns, "loyal", retentionv1.ReasonInvalidRule))
	sameSet(t, members(t, key), want3)
	if c := meta.FindStatusCondition(seg.Status.Conditions, retentionv1.ConditionReady); strings.Contains(c.Message, "c00") {
		t.Fatalf("condition leaks customer data: %q", c.Message)
	}

	// Deleting the segment removes its membership.
	if err := k8sClient.Delete(ctx, seg); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if n := len(members(t, key)); n != 0 {
			return fmt.Errorf("%d members left after the segment was deleted", n)
		}
		return nil
	})
}

// TestSegmentEmptyShowsZero: a Segment evaluated with no members has
// status.size 0 — present in the stored object, so `kubectl get` shows
// SIZE 0 — and entered and exited 0; its source's zero counts
// (rejectedRows here) are present too.
func TestSegmentEmptyShowsZero(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	_, cs := createCSVSource(t, ns, "shop", "data", 200, 3, nil)
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nobody"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency < 0"}}
	if err := k8sClient.Create(ctx, seg); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(cs, func() []metav1.Condition { return cs.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored"))
	eventually(t, waitFor, func() error {
		if err := readyIs(seg, func() []metav1.Condition { return seg.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "0 members")(); err != nil {
			return err
		}
		if seg.Status.SnapshotID != cs.Status.SnapshotID {
			return fmt.Errorf("segment on snapshot %d, want %d", seg.Status.SnapshotID, cs.Status.SnapshotID)
		}
		return nil
	})

	// Read the stored objects as JSON, not into the Go types, whose zero
	// values would hide a missing field.
	stored := func(obj client.Object, kind string) map[string]any {
		t.Helper()
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(retentionv1.GroupVersion.WithKind(kind))
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), u); err != nil {
			t.Fatal(err)
		}
		return u.Object
	}
	segObj := stored(seg, "Segment")
	for _, f := range []string{"size", "entered", "exited"} {
		v, found, err := unstructured.NestedFieldNoCopy(segObj, "status", f)
		if err != nil || !found || v != int64(0) {
			t.Errorf("segment status.%s = %v (%T, present %v, %v), want 0 present", f, v, v, found, err)
		}
	}
	csObj := stored(cs, "CustomerSource")
	for f, want := range map[string]int64{"rejectedRows": 0, "customers": 200} {
		v, found, err := unstructured.NestedFieldNoCopy(csObj, "status", f)
		if err != nil || !found || v != want {
			t.Errorf("customersource status.%s = %v (%T, present %v, %v), want %d present", f, v, v, found, err, want)
		}
	}
}

// rescoreWith replaces the source's transactions in its ConfigMap and
// waits for the new snapshot, whose id it returns.
func rescoreWith(t *testing.T, cm *corev1.ConfigMap, cs *retentionv1.CustomerSource, transactions []byte) int64 {
	t.Helper()
	ctx := context.Background()
	before := cs.Status.SnapshotID
	cm.Data["transactions.csv"] = string(transactions)
	if err := k8sClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cs), cs); err != nil {
			return err
		}
		if cs.Status.SnapshotID == before {
			return fmt.Errorf("not rescored yet")
		}
		return nil
	})
	return cs.Status.SnapshotID
}

// scanCounts counts the suite store's snapshot scans, by snapshot: only
// segment evaluation scans snapshots, so it is the number of batches. It
// also counts the incremental membership applies the store took, by
// segment and snapshot.
type scanCounts struct {
	mu          sync.Mutex
	n           map[int64]int
	incremental map[string]int
}

func (c *scanCounts) addIncremental(segment string, snapshot int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.incremental == nil {
		c.incremental = map[string]int{}
	}
	c.incremental[fmt.Sprintf("%s@%d", segment, snapshot)]++
}

func (c *scanCounts) getIncremental(segment string, snapshot int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.incremental[fmt.Sprintf("%s@%d", segment, snapshot)]
}

func (c *scanCounts) add(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int64]int{}
	}
	c.n[id]++
}

func (c *scanCounts) get(id int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

var suiteScans scanCounts

// scanCountingStore is the suite's store, counting SnapshotScan calls.
type scanCountingStore struct {
	store.Store
	scans *scanCounts
}

func (s *scanCountingStore) SnapshotScan(ctx context.Context, p *store.SnapshotScanParams, fn func(*customer.Scored) error) error {
	s.scans.add(p.SnapshotID)
	return s.Store.SnapshotScan(ctx, p, fn)
}

func (s *scanCountingStore) MembershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	diff, err := s.Store.MembershipApply(ctx, p)
	if err == nil && p.Changes != nil {
		s.scans.addIncremental(p.Segment, p.SnapshotID)
	}
	return diff, err
}

// TestSegmentsOneScan: the Segments of a source are evaluated together on
// a new snapshot, in one scan, each with its own exact membership, entries
// and exits, applied as changes to the membership the operator applied
// before (an incremental apply).
func TestSegmentsOneScan(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cm, cs := createCSVSource(t, ns, "shop", "data", 300, 21, nil)
	rules := []struct {
		name, rule string
		keep       func(*customer.Scored) bool
	}{
		{"loyal", "customer.frequency >= 2", func(c *customer.Scored) bool { return c.Features.Frequency >= 2 }},
		{"at-risk", "customer.pAlive < 0.6", func(c *customer.Scored) bool { return c.Scores.PAlive < 0.6 }},
		{"valuable", "customer.expectedValue > 20.0", func(c *customer.Scored) bool { return c.Scores.ExpectedValue > 20 }},
		{"recent", "customer.recencyDays < 120", func(c *customer.Scored) bool { return c.Features.RecencyDays < 120 }},
		{"failing", "10 / (customer.frequency - 1) > 2", func(c *customer.Scored) bool {
			return c.Features.Frequency != 1 && 10/(c.Features.Frequency-1) > 2
		}},
	}
	segs := make([]*retentionv1.Segment, len(rules))
	for i, r := range rules {
		segs[i] = &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: r.name},
			Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: r.rule}}
		if err := k8sClient.Create(ctx, segs[i]); err != nil {
			t.Fatal(err)
		}
	}
	onSnapshot := func(id int64) {
		t.Helper()
		for _, seg := range segs {
			eventually(t, waitFor, func() error {
				if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(seg), seg); err != nil {
					return err
				}
				if seg.Status.SnapshotID != id || !isReady(seg.Status.Conditions) {
					return fmt.Errorf("segment %s on snapshot %d (ready %v), want %d", seg.Name, seg.Status.SnapshotID, isReady(seg.Status.Conditions), id)
				}
				return nil
			})
		}
	}
	eventually(t, waitFor, readyIs(cs, func() []metav1.Condition { return cs.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored"))
	snap1 := cs.Status.SnapshotID
	onSnapshot(snap1)
	before := make([]map[string]bool, len(rules))
	for i, r := range rules {
		before[i] = selectIDs(t, snap1, r.keep)
	}

	snap2 := rescoreWith(t, cm, cs, transactionsCSV(300, 22))
	onSnapshot(snap2)
	if n := suiteScans.get(snap2); n != 1 {
		t.Errorf("%d scans of snapshot %d for %d segments, want 1", n, snap2, len(segs))
	}
	changed := false
	for i, r := range rules {
		want := selectIDs(t, snap2, r.keep)
		sameSet(t, members(t, ns+"/"+r.name), want)
		st := segs[i].Status
		if st.Size != int64(len(want)) || st.Entered != diff(want, before[i]) || st.Exited != diff(before[i], want) {
			t.Errorf("%s: size %d entered %d exited %d, want %d/%d/%d", r.name, st.Size, st.Entered, st.Exited,
				len(want), diff(want, before[i]), diff(before[i], want))
		}
		changed = changed || st.Entered+st.Exited > 0
		if n := suiteScans.getIncremental(ns+"/"+r.name, snap2); n != 1 {
			t.Errorf("%s: %d incremental applies on snapshot %d, want 1", r.name, n, snap2)
		}
	}
	if !changed {
		t.Fatal("degenerate test: the new data changed no membership")
	}
}
