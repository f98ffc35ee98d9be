package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// TestCustomerErasure: a measured run; a CustomerErasure of one of its
// converted treatment customers (the canary) and of an id the source never
// had. The erasure completes with counts and an Event, clears its Secret;
// the canary is in no snapshot, membership or target and is reported
// erased; a rescoring of the source with new purchases of the canary does
// not bring them back; the run's measured figures do not change; no status
// or Event of the namespace names the canary.
func TestCustomerErasure(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "measured")
	waitPhase(t, run, retentionv1.RunSending)
	sendAll(t, string(run.UID), 2)
	completeJob(t, jobOf(t, run))
	waitPhase(t, run, retentionv1.RunMeasuring)
	treatment, holdout := groupsOf(t, string(run.UID))
	canary := treatment[0]
	refDay := run.Status.ReferenceTime.UTC().Truncate(24 * time.Hour)
	w.buy(t, refDay, treatment[0], treatment[1], treatment[2], holdout[0])
	measured := func(tr, ho int64) *retentionv1.Measurement {
		t.Helper()
		eventually(t, waitFor, func() error {
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(run), run); err != nil {
				return err
			}
			if m := run.Status.Measurement; m == nil || m.Treatment.Converted != tr || m.Holdout.Converted != ho {
				return fmt.Errorf("measurement %+v", m)
			}
			return nil
		})
		return run.Status.Measurement.DeepCopy()
	}
	before := measured(3, 1)
	cs := &retentionv1.CustomerSource{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "shop"}, cs); err != nil {
		t.Fatal(err)
	}
	snapBefore := cs.Status.SnapshotID

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "erase-1",
		// What `kubectl apply` leaves: a copy of the ids.
		Annotations: map[string]string{lastApplied: `{"stringData":{"ids":"` + canary + `"}}`}}, Type: retentionv1.CustomerIDsSecretType,
		Data: map[string][]byte{"ids": []byte(canary + "\n\n  never-a-customer  \n" + canary + "\n")}}
	ce := &retentionv1.CustomerErasure{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "erase-1"},
		Spec: retentionv1.CustomerErasureSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"},
			CustomerIDsSecretRef: retentionv1.CustomerIDsSecretRef{Name: "erase-1"}}}
	for _, o := range []client.Object{sec, ce} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitFor, readyIs(ce, func() []metav1.Condition { return ce.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "erased 2 customers"))
	n := ce.Status.Erased
	if ce.Status.Phase != retentionv1.ErasureCompleted || ce.Status.StartTime == nil || ce.Status.CompletionTime == nil || n == nil ||
		n.Customers != 2 || n.Tombstones != 2 || n.AlreadyErased != 0 || n.SnapshotRows < 1 || n.Memberships < 1 || n.Targets != 1 || n.Segments < 1 {
		t.Fatalf("erasure status: phase %s, %+v", ce.Status.Phase, n)
	}
	if ce.Spec.CustomerIDsSecretRef.Key != "ids" {
		t.Errorf("key defaulted to %q", ce.Spec.CustomerIDsSecretRef.Key)
	}
	eventually(t, waitFor, eventRecorded(w.ns, ce.Name, retentionv1.ReasonSucceeded))
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(sec), sec); err != nil {
		t.Fatal(err)
	}
	if _, applied := sec.Annotations[lastApplied]; len(sec.Data) != 0 || applied || sec.Annotations[retentionv1.ErasedByAnnotation] != string(ce.UID) {
		t.Errorf("secret after the erasure: %d keys, annotations %v", len(sec.Data), sec.Annotations)
	}

	st, err := suiteStores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	absent := func(when string) {
		t.Helper()
		snap, err := st.SnapshotGetCurrent(ctx, w.ns+"/shop")
		if err != nil {
			t.Fatal(err)
		}
		if ids := snapshotIDs(t, st, snap.ID); ids[canary] || len(ids) == 0 {
			t.Errorf("%s: snapshot %d (%d customers) holds the canary", when, snap.ID, len(ids))
		}
		for _, seg := range []string{"everyone", "vip"} {
			if members(t, w.ns+"/"+seg)[canary] {
				t.Errorf("%s: segment %s holds the canary", when, seg)
			}
		}
		tr, ho := groupsOf(t, string(run.UID))
		for _, id := range append(tr, ho...) {
			if id == canary {
				t.Errorf("%s: the run's targets hold the canary", when)
			}
		}
		if got, err := st.ErasedFilter(ctx, w.ns+"/shop", []string{canary, treatment[1]}); err != nil || len(got) != 1 || !got[canary] {
			t.Errorf("%s: ErasedFilter = %v, %v", when, got, err)
		}
	}
	absent("after the erasure")

	// The canary buys again and the source is scored again: the re-import
	// leaves them out, and the run's figures do not move.
	w.buy(t, refDay, canary)
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cs), cs); err != nil {
			return err
		}
		if cs.Status.SnapshotID == snapBefore {
			return fmt.Errorf("source still at snapshot %d", snapBefore)
		}
		return nil
	})
	absent("after a rescoring")
	after := measured(3, 1)
	if after.Treatment != before.Treatment || after.Holdout != before.Holdout || *after.Uplift != *before.Uplift {
		t.Errorf("measured figures changed with the erasure: %+v → %+v", before, after)
	}

	// No status or Event of the namespace names the canary.
	var lists []client.ObjectList
	lists = append(lists, &retentionv1.CustomerSourceList{}, &retentionv1.SegmentList{}, &retentionv1.CampaignList{},
		&retentionv1.CampaignRunList{}, &retentionv1.CustomerErasureList{}, &eventsv1.EventList{})
	for _, l := range lists {
		if err := k8sClient.List(ctx, l, client.InNamespace(w.ns)); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), canary) {
			t.Errorf("%T names the erased customer", l)
		}
	}
}

// TestCustomerErasureWaitsAndFails: a missing Secret keeps the erasure
// Pending with SecretNotFound until it appears; an Opaque Secret or one
// without any id fails it (Stalled), and erases nothing; the spec cannot
// change; a deleted source's customers are erased all the same.
func TestCustomerErasureWaitsAndFails(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createCSVSource(t, ns, "shop", "data", 50, 3, nil)
	ce := &retentionv1.CustomerErasure{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e"},
		Spec: retentionv1.CustomerErasureSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"},
			CustomerIDsSecretRef: retentionv1.CustomerIDsSecretRef{Name: "ids", Key: "list"}}}
	if err := k8sClient.Create(ctx, ce); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ce, func() []metav1.Condition { return ce.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonSecretNotFound, "ids"))
	if ce.Status.Phase != retentionv1.ErasurePending || ce.Status.Erased != nil {
		t.Fatalf("waiting erasure: %+v", ce.Status)
	}
	// An Opaque Secret is never erased nor cleared: an erasure cannot be
	// used to wipe a Secret that was not made for it.
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ids"}, Data: map[string][]byte{"list": []byte("c00001\n")}}
	if err := k8sClient.Create(ctx, opaque); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ce, func() []metav1.Condition { return ce.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonInvalidSecret, "not retention.dev/customer-ids"))
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(opaque), opaque); err != nil || string(opaque.Data["list"]) != "c00001\n" {
		t.Fatalf("the Opaque Secret was touched: %v %v", opaque.Data, err)
	}
	if ce.Status.Phase != retentionv1.ErasureFailed || ce.Status.Erased != nil {
		t.Fatalf("failed erasure: %+v", ce.Status)
	}
	// A Secret of the type without any id fails too, erasing nothing.
	empty := &retentionv1.CustomerErasure{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"},
		Spec: retentionv1.CustomerErasureSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"},
			CustomerIDsSecretRef: retentionv1.CustomerIDsSecretRef{Name: "blank"}}}
	for _, o := range []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "blank"}, Type: retentionv1.CustomerIDsSecretType,
		Data: map[string][]byte{"ids": []byte("\n   \n")}}, empty} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitFor, readyIs(empty, func() []metav1.Condition { return empty.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonInvalidSecret, "no customer id"))
	if empty.Status.Phase != retentionv1.ErasureFailed || empty.Status.Erased != nil {
		t.Fatalf("failed erasure: %+v", empty.Status)
	}
	ce.Spec.SourceRef.Name = "other"
	if err := k8sClient.Update(ctx, ce); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("changing the spec: %v, want it refused as immutable", err)
	}

	// A deleted source's customers are erased all the same (its runs and
	// records outlive it), and the message says the source is gone.
	gone := &retentionv1.CustomerErasure{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"},
		Spec: retentionv1.CustomerErasureSpec{SourceRef: retentionv1.LocalObjectReference{Name: "deleted-shop"},
			CustomerIDsSecretRef: retentionv1.CustomerIDsSecretRef{Name: "gone-ids"}}}
	for _, o := range []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone-ids"}, Type: retentionv1.CustomerIDsSecretType,
		Data: map[string][]byte{"ids": []byte("c00001\n")}}, gone} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitFor, readyIs(gone, func() []metav1.Condition { return gone.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "does not exist"))
	if gone.Status.Phase != retentionv1.ErasureCompleted || gone.Status.Erased == nil || gone.Status.Erased.Tombstones != 1 {
		t.Errorf("erasure of a deleted source's customer: %+v", gone.Status)
	}
}

// snapshotIDs returns the customer ids of a snapshot.
func snapshotIDs(t *testing.T, st store.Store, id int64) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	if err := st.SnapshotScan(context.Background(), &store.SnapshotScanParams{SnapshotID: id}, func(c *customer.Scored) error {
		ids[c.ID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}
