package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
)

// TestSegmentPreview: a preview Segment (kubectl retention preview
// segment) of the vip Segment with a wider rule is evaluated against a
// copy of vip's membership: it reports the customers the rule adds and
// none leaving, vip is untouched, a campaign cannot use the preview, and
// deleting it drops its membership from the store.
func TestSegmentPreview(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	p := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "vip-preview-abcde",
		Labels: map[string]string{retentionv1.PreviewLabel: "true"}, Annotations: map[string]string{retentionv1.PreviewOfAnnotation: "vip"}},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 3"}}
	if err := k8sClient.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(p, func() []metav1.Condition { return p.Status.Conditions }, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "members"))
	wider := members(t, w.ns+"/"+p.Name)
	for id := range w.vip {
		if !wider[id] {
			t.Fatalf("vip member %s is not in the wider rule's preview", id)
		}
	}
	if p.Status.Size != int64(len(wider)) || p.Status.Exited != 0 || p.Status.Entered != int64(len(wider)-len(w.vip)) || p.Status.Entered == 0 {
		t.Fatalf("preview status: size %d, entered %d, exited %d; want %d, %d entering (vip has %d), 0 leaving",
			p.Status.Size, p.Status.Entered, p.Status.Exited, len(wider), len(wider)-len(w.vip), len(w.vip))
	}
	if got := members(t, w.ns+"/vip"); len(got) != len(w.vip) {
		t.Errorf("vip changed: %d members, was %d", len(got), len(w.vip))
	}

	c := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "uses-preview"},
		Spec: retentionv1.CampaignSpec{SegmentRef: retentionv1.LocalObjectReference{Name: p.Name}, ChannelRef: retentionv1.LocalObjectReference{Name: "hook"},
			Message: retentionv1.Message{Subject: "Hi", Body: "Hi"}, Schedule: "@weekly", Suspend: true}}
	if err := k8sClient.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(c, func() []metav1.Condition { return c.Status.Conditions }, metav1.ConditionFalse, retentionv1.ReasonInvalidSpec, "is a preview"))

	if err := k8sClient.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	st, err := suiteStores.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(p), p); err == nil {
			return fmt.Errorf("preview still there")
		}
		if _, err := st.MembershipGet(ctx, w.ns+"/"+p.Name); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("the preview's membership: %v", err)
		}
		return nil
	})
}
