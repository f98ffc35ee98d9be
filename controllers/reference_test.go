package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

const waitFor = 30 * time.Second

// readyIs checks the Ready condition of obj: its status, reason, message
// substring and that it describes the current generation.
func readyIs(obj client.Object, conds func() []metav1.Condition, status metav1.ConditionStatus, reason, msg string) func() error {
	return func() error {
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c := meta.FindStatusCondition(conds(), retentionv1.ConditionReady)
		switch {
		case c == nil:
			return fmt.Errorf("no Ready condition yet")
		case c.Status != status || c.Reason != reason:
			return fmt.Errorf("Ready=%s reason=%s message=%q, want Ready=%s reason=%s", c.Status, c.Reason, c.Message, status, reason)
		case !strings.Contains(c.Message, msg):
			return fmt.Errorf("Ready message %q does not contain %q", c.Message, msg)
		case c.ObservedGeneration != obj.GetGeneration():
			return fmt.Errorf("Ready describes generation %d, object is at %d", c.ObservedGeneration, obj.GetGeneration())
		}
		return nil
	}
}

// eventRecorded checks that an Event with the reason was recorded about the object.
func eventRecorded(ns, name, reason string) func() error {
	return func() error {
		var evs eventsv1.EventList
		if err := k8sClient.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no event %s for %s/%s among %d events", reason, ns, name, len(evs.Items))
	}
}

// TestChannelReadyFollowsSecret: a missing Secret makes the Channel
// Ready=False SecretNotFound; creating it makes the Channel Ready=True
// through the Secret watch, without restarting anything; a Secret without
// the key is SecretKeyNotFound.
func TestChannelReadyFollowsSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ch := &retentionv1.Channel{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hooks"},
		Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{
			URL:              "http://127.0.0.1:1/hook",
			SigningSecretRef: &retentionv1.KeySelector{Name: "signing", Key: "key"},
		}},
	}
	if err := k8sClient.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	conds := func() []metav1.Condition { return ch.Status.Conditions }
	eventually(t, waitFor, readyIs(ch, conds, metav1.ConditionFalse, retentionv1.ReasonSecretNotFound, "secret "+ns+"/signing not found"))
	eventually(t, waitFor, eventRecorded(ns, "hooks", retentionv1.ReasonSecretNotFound))

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signing"}, Data: map[string][]byte{"other": []byte("x")}}
	if err := k8sClient.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ch, conds, metav1.ConditionFalse, retentionv1.ReasonSecretKeyNotFound, `has no key "key"`))

	// A key not in Standard Webhooks form is refused, without its value.
	sec.Data = map[string][]byte{"key": []byte("s3cret")}
	if err := k8sClient.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ch, conds, metav1.ConditionFalse, retentionv1.ReasonInvalidSecret, "signing key 1"))
	if c := meta.FindStatusCondition(ch.Status.Conditions, retentionv1.ConditionReady); c != nil && strings.Contains(c.Message, "s3cret") {
		t.Errorf("the condition shows the key: %q", c.Message)
	}

	sec.Data = map[string][]byte{"key": []byte("whsec_czNjcmV0LWtleS1vZi10aGlzLXRlc3Q= whsec_bmV4dC1rZXk=")}
	if err := k8sClient.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ch, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "resolve"))
	eventually(t, waitFor, eventRecorded(ns, "hooks", retentionv1.ReasonSucceeded))

	if err := k8sClient.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(ch, conds, metav1.ConditionFalse, retentionv1.ReasonSecretNotFound, "not found"))
}

// TestCustomerSourceResolvesReferences: a missing DSN Secret or data
// ConfigMap shows as Ready=False with the reason; creating them moves the
// condition on through the watches.
func TestCustomerSourceResolvesReferences(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pg := &retentionv1.CustomerSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warehouse"},
		Spec: retentionv1.CustomerSourceSpec{Postgres: &retentionv1.PostgresSource{
			DSNSecretRef:      retentionv1.KeySelector{Name: "pg-dsn", Key: "dsn"},
			TransactionsQuery: "select 1",
		}},
	}
	csv := &retentionv1.CustomerSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "files"},
		Spec: retentionv1.CustomerSourceSpec{CSV: &retentionv1.CSVSource{
			Transactions: retentionv1.CSVLocation{ConfigMapKeyRef: &retentionv1.KeySelector{Name: "data", Key: "tx.csv"}},
		}},
	}
	for _, o := range []client.Object{pg, csv} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitFor, readyIs(pg, func() []metav1.Condition { return pg.Status.Conditions },
		metav1.ConditionFalse, retentionv1.ReasonSecretNotFound, "secret "+ns+"/pg-dsn not found"))
	eventually(t, waitFor, readyIs(csv, func() []metav1.Condition { return csv.Status.Conditions },
		metav1.ConditionFalse, retentionv1.ReasonConfigMapNotFound, "configmap "+ns+"/data not found"))

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "data"}, Data: map[string]string{"other.csv": "x"}}
	if err := k8sClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(csv, func() []metav1.Condition { return csv.Status.Conditions },
		metav1.ConditionFalse, retentionv1.ReasonConfigMapKeyNotFound, `has no key "tx.csv"`))

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg-dsn"}, Data: map[string][]byte{"dsn": []byte("postgres://u:p@127.0.0.1:1/db")}}
	if err := k8sClient.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pg), pg); err != nil {
			return err
		}
		c := meta.FindStatusCondition(pg.Status.Conditions, retentionv1.ConditionReady)
		if c == nil || c.Reason == retentionv1.ReasonSecretNotFound {
			return fmt.Errorf("still waiting for the secret: %+v", c)
		}
		if c.Status == metav1.ConditionTrue {
			return fmt.Errorf("source claims Ready without having scored anything")
		}
		return nil
	})
}

// TestSegmentAndCampaignFollowReferences: a Segment whose source is missing
// says so and moves on when the source appears; a Campaign names the first
// missing reference.
func TestSegmentAndCampaignFollowReferences(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	seg := &retentionv1.Segment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "at-risk"},
		Spec:       retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.pAlive < 0.5"},
	}
	if err := k8sClient.Create(ctx, seg); err != nil {
		t.Fatal(err)
	}
	segConds := func() []metav1.Condition { return seg.Status.Conditions }
	eventually(t, waitFor, readyIs(seg, segConds, metav1.ConditionFalse, retentionv1.ReasonSourceNotFound, "customersource "+ns+"/shop not found"))

	camp := &retentionv1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "win-back"},
		Spec: retentionv1.CampaignSpec{
			SegmentRef: retentionv1.LocalObjectReference{Name: "at-risk"},
			ChannelRef: retentionv1.LocalObjectReference{Name: "mail"},
			Message:    retentionv1.Message{Body: "hello"},
			Schedule:   "@weekly",
		},
	}
	if err := k8sClient.Create(ctx, camp); err != nil {
		t.Fatal(err)
	}
	campConds := func() []metav1.Condition { return camp.Status.Conditions }
	eventually(t, waitFor, readyIs(camp, campConds, metav1.ConditionFalse, retentionv1.ReasonChannelNotFound, "channel "+ns+"/mail not found"))

	run := &retentionv1.CampaignRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "adhoc"},
		Spec:       retentionv1.CampaignRunSpec{CampaignRef: retentionv1.LocalObjectReference{Name: "nope"}, ScheduledTime: metav1.Now()},
	}
	if err := k8sClient.Create(ctx, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(run, func() []metav1.Condition { return run.Status.Conditions },
		metav1.ConditionFalse, retentionv1.ReasonCampaignNotFound, "campaign "+ns+"/nope not found"))

	src := &retentionv1.CustomerSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"},
		Spec:       retentionv1.CustomerSourceSpec{CSV: &retentionv1.CSVSource{Transactions: retentionv1.CSVLocation{Path: "/nonexistent.csv"}}},
	}
	if err := k8sClient.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(seg, segConds, metav1.ConditionFalse, retentionv1.ReasonSourceNotReady, "no scored snapshot"))

	mail := &retentionv1.Channel{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mail"},
		Spec:       retentionv1.ChannelSpec{SMTP: &retentionv1.SMTPChannel{Host: "127.0.0.1", From: "shop@example.com", RelaySigns: true}},
	}
	if err := k8sClient.Create(ctx, mail); err != nil {
		t.Fatal(err)
	}
	// The channel needs no Secret, so it becomes Ready and the campaign's
	// references all resolve; an email channel needs a subject, which the
	// message lacks: stalled until the spec changes.
	eventually(t, waitFor, readyIs(camp, campConds, metav1.ConditionFalse, retentionv1.ReasonInvalidTemplate, "subject"))
	patch := client.MergeFrom(camp.DeepCopy())
	camp.Spec.Message.Subject = "We miss you"
	if err := k8sClient.Patch(ctx, camp, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, readyIs(camp, campConds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "next run at"))
	if camp.Status.NextScheduleTime == nil || !camp.Status.NextScheduleTime.After(suiteClock.Now()) {
		t.Fatalf("nextScheduleTime = %v, want after %v", camp.Status.NextScheduleTime, suiteClock.Now())
	}
}
