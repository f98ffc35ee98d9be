package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/store"
)

// buy appends purchases to the world's transactions and moves the
// source's observation end past them, so the source scores them into a
// new snapshot.
func (w *campaignWorld) buy(t *testing.T, day time.Time, customers ...string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "data"}, cm); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(cm.Data["transactions.csv"])
	for _, id := range customers {
		fmt.Fprintf(&b, "%s,%s,25.00\n", id, day.Format("2006-01-02"))
	}
	cm.Data["transactions.csv"] = b.String()
	if err := k8sClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	cs := &retentionv1.CustomerSource{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "shop"}, cs); err != nil {
		t.Fatal(err)
	}
	p := client.MergeFrom(cs.DeepCopy())
	if end := day.AddDate(0, 0, 1); cs.Spec.Scoring.ObservationEnd.Before(&metav1.Time{Time: end}) {
		cs.Spec.Scoring.ObservationEnd = &metav1.Time{Time: end}
	} else {
		cs.Spec.Scoring.ObservationEnd = &metav1.Time{Time: cs.Spec.Scoring.ObservationEnd.Add(24 * time.Hour)}
	}
	if err := k8sClient.Patch(ctx, cs, p); err != nil {
		t.Fatal(err)
	}
}

// groupsOf returns a run's treatment and holdout customers.
func groupsOf(t *testing.T, runID string) (treatment, holdout []string) {
	t.Helper()
	st, err := suiteStores.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.TargetScan(context.Background(), &store.TargetScanParams{RunID: runID}, func(tg *store.Target) error {
		switch tg.Group {
		case store.GroupTreatment:
			treatment = append(treatment, tg.CustomerID)
		case store.GroupHoldout:
			holdout = append(holdout, tg.CustomerID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return treatment, holdout
}

// TestCampaignRunMeasurement: the experiment design is known before
// sending; after sending, a new snapshot with purchases converts the
// customers who bought on or after the reference day (the day itself
// included, in day-granular data) in both groups alike; the figures are
// provisional until the window closes, then final; the campaign pools
// them, and the pooled figures survive the run's deletion.
func TestCampaignRunMeasurement(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	c := w.campaign(t, "win-back", nil)
	run := adHocRun(t, w.ns, "win-back", "measured")
	waitPhase(t, run, retentionv1.RunSending)

	e := run.Status.Experiment
	if e == nil || e.BaseRatePercent == "" || e.MinimumDetectableEffect == "" || e.MinimumDetectableLiftPercent == "" ||
		e.SampleRatioPValue == "" || e.PlannedHoldoutPercent != 20 {
		t.Fatalf("experiment design before sending: %+v", e)
	}
	if meta.IsStatusConditionTrue(run.Status.Conditions, retentionv1.ConditionSampleRatioMismatch) {
		t.Fatalf("a hash split flagged as a mismatch: %+v", e)
	}

	sendAll(t, string(run.UID), 2)
	var job = jobOf(t, run)
	completeJob(t, job)
	waitPhase(t, run, retentionv1.RunMeasuring)
	if m := run.Status.Measurement; m == nil || m.Final || m.Treatment.Converted != 0 || m.Holdout.Converted != 0 {
		t.Fatalf("measurement before any purchase: %+v", m)
	}

	// 12 treatment and 4 holdout customers buy on the reference day; one
	// more treatment customer bought the day before (not a conversion).
	treatment, holdout := groupsOf(t, string(run.UID))
	refDay := run.Status.ReferenceTime.UTC().Truncate(24 * time.Hour)
	w.buy(t, refDay.AddDate(0, 0, -1), treatment[12])
	w.buy(t, refDay, append(append([]string{}, treatment[:12]...), holdout[:4]...)...)
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(run), run); err != nil {
			return err
		}
		m := run.Status.Measurement
		if m == nil || m.Treatment.Converted != 12 || m.Holdout.Converted != 4 {
			return fmt.Errorf("measurement %+v", m)
		}
		return nil
	})
	m := run.Status.Measurement
	if m.Final || run.Status.Phase != retentionv1.RunMeasuring || m.Treatment.Customers != run.Status.Audience.Treatment ||
		m.Holdout.Customers != run.Status.Audience.Holdout || m.SnapshotID == 0 || m.MeasuredTime == nil {
		t.Fatalf("provisional measurement: %+v (phase %s)", m, run.Status.Phase)
	}
	if m.Uplift == nil || m.Uplift.Method != retentionv1.UpliftNewcombe || m.Treatment.RevenuePerCustomer == "" || m.Verdict == "" {
		t.Fatalf("uplift of %d vs %d customers: %+v, verdict %q", m.Treatment.Customers, m.Holdout.Customers, m.Uplift, m.Verdict)
	}

	// The window closes; with no snapshot taken after it, the run is final
	// measureGrace later.
	suiteClock.Advance(2*time.Hour + measureGrace)
	poke(t, run)
	waitPhase(t, run, retentionv1.RunSucceeded)
	if m := run.Status.Measurement; !m.Final || m.Treatment.Converted != 12 || m.Holdout.Converted != 4 {
		t.Fatalf("final measurement: %+v", m)
	}

	// The campaign pools its runs; the pooled figures outlive the run.
	pooled := func() *retentionv1.Measurement {
		t.Helper()
		var got *retentionv1.Measurement
		eventually(t, waitFor, func() error {
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
				return err
			}
			got = c.Status.Measurement
			if got == nil || got.Runs != 1 || !got.Final || got.Treatment.Converted != 12 || got.Holdout.Converted != 4 || got.Uplift == nil {
				return fmt.Errorf("campaign measurement %+v", got)
			}
			return nil
		})
		return got
	}
	before := pooled()
	// One run pooled says what the run says: the same analysis, to the digit.
	if *before.Uplift != *run.Status.Measurement.Uplift || before.Uplift.Method != retentionv1.UpliftNewcombe {
		t.Fatalf("one run pooled: %+v, the run's %+v", before.Uplift, run.Status.Measurement.Uplift)
	}
	counts := suiteMetrics.CampaignTotals.Get(w.ns, "win-back")
	if counts.Conversions[metrics.GroupTreatment] != 12 || counts.Conversions[metrics.GroupHoldout] != 4 || counts.Messages["sent"] != run.Status.Delivery.Sent {
		t.Fatalf("exported totals %+v", counts)
	}
	if err := k8sClient.Delete(ctx, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(run), run)
		if err == nil {
			return fmt.Errorf("run still there")
		}
		return client.IgnoreNotFound(err)
	})
	poke(t, c)
	after := pooled()
	if *after.Uplift != *before.Uplift || after.Treatment != before.Treatment || after.Holdout != before.Holdout {
		t.Fatalf("pooled figures changed when the run was deleted: %+v → %+v", before, after)
	}
}

// TestCampaignRunSampleRatioMismatch forces an imbalance the way it
// happens in practice: a campaign's holdout is raised from 20% to 50%
// between runs, but recorded groups never change, so the second run's
// split is far from the plan. The run says so: a SampleRatioMismatch
// condition, an Event, and the p-value in status.experiment.
func TestCampaignRunSampleRatioMismatch(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	c := w.campaign(t, "win-back", func(s *retentionv1.CampaignSpec) { s.FrequencyCap = nil })
	first := adHocRun(t, w.ns, "win-back", "first")
	waitPhase(t, first, retentionv1.RunSending)
	if meta.IsStatusConditionTrue(first.Status.Conditions, retentionv1.ConditionSampleRatioMismatch) {
		t.Fatalf("first run flagged: %+v", first.Status.Experiment)
	}
	p := client.MergeFrom(c.DeepCopy())
	c.Spec.HoldoutPercent = ptrInt32(50)
	if err := k8sClient.Patch(ctx, c, p); err != nil {
		t.Fatal(err)
	}
	second := adHocRun(t, w.ns, "win-back", "second")
	waitPhase(t, second, retentionv1.RunSending)
	e := second.Status.Experiment
	if e == nil || e.PlannedHoldoutPercent != 50 || e.SampleRatioPValue == "" {
		t.Fatalf("experiment %+v", e)
	}
	if pv, ok := sampleRatioP(e); !ok || pv >= sampleRatioPCutoff {
		t.Fatalf("a %d/%d split against a planned 50%% holdout: p = %s", second.Status.Audience.Treatment, second.Status.Audience.Holdout, e.SampleRatioPValue)
	}
	cond := meta.FindStatusCondition(second.Status.Conditions, retentionv1.ConditionSampleRatioMismatch)
	if cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, "not to be trusted") {
		t.Fatalf("condition %+v", cond)
	}
	eventually(t, waitFor, eventRecorded(w.ns, "second", retentionv1.EventSampleRatioMismatch))
}

func ptrInt32(v int32) *int32 { return &v }
