package controllers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/stats"
	"github.com/retention-dev/retention-operator/internal/store"
)

// measureGrace is how long a run whose conversion window has closed waits
// for a snapshot of its source taken after the window's end (the one that
// sees the window's last day) before it finishes with the figures it has.
const measureGrace = 24 * time.Hour

// Experiment design constants: the power and level the minimum detectable
// effect is computed at, and the p-value below which a split is a
// sample-ratio mismatch (the threshold the experimentation literature
// uses, strict because it is checked on every run).
const (
	mdePower           = 0.8
	mdeAlpha           = 0.05
	sampleRatioPCutoff = 0.001
	confidence         = 0.95
)

// measure measures the run against its source's current snapshot while
// the conversion window is open (every new snapshot wakes the run), and
// finishes it when a snapshot taken after the window's end has been
// measured, or measureGrace after the end without one.
func (r *CampaignRunReconciler) measure(ctx context.Context, st store.Store, run *retentionv1.CampaignRun, now time.Time) (string, time.Time, error) {
	stored, err := st.RunGet(ctx, string(run.UID))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading the run: %w", err)
	}
	var cur *store.Snapshot
	if stored.Source != "" { // "" for a run materialized before the store recorded sources: nothing to measure
		cur, err = st.SnapshotGetCurrent(ctx, stored.Source)
		switch {
		case errors.Is(err, store.ErrNotFound):
			cur = nil // the source was deleted: finish with what was measured
		case err != nil:
			return "", time.Time{}, fmt.Errorf("reading the source's snapshot: %w", err)
		}
	}
	if cur != nil && cur.ID > stored.MeasuredSnapshot {
		if _, err := st.RunMeasure(ctx, &store.RunMeasureParams{RunID: stored.ID, SnapshotID: cur.ID, Measure: campaign.Measure}); err != nil {
			return "", time.Time{}, fmt.Errorf("measuring snapshot %d: %w", cur.ID, err)
		}
		stored.MeasuredSnapshot = cur.ID
	}
	tally, err := st.RunTally(ctx, stored.ID)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("counting the run's targets: %w", err)
	}
	setCounts(run, tally)
	end := stored.WindowEnd()
	final, seenEnd := windowDone(now, end, cur, stored.MeasuredSnapshot)
	m := runMeasurement(tally, final, r.untrusted(run))
	if stored.MeasuredSnapshot > 0 {
		m.SnapshotID = stored.MeasuredSnapshot
		// The time of the snapshot's measurement: kept while it is the same.
		if prev := run.Status.Measurement; prev != nil && prev.SnapshotID == m.SnapshotID && prev.MeasuredTime != nil {
			m.MeasuredTime = prev.MeasuredTime
		} else {
			m.MeasuredTime = &metav1.Time{Time: now}
		}
	}
	run.Status.Measurement = m
	run.Status.VariantConversions = variantConversions(tally)
	if !final {
		next := end
		if !now.Before(end) {
			next = end.Add(measureGrace)
		}
		return "", next, progressing(retentionv1.ReasonMeasuring, "provisional until %s: %s",
			next.UTC().Format(time.RFC3339), m.Verdict)
	}
	if _, err := st.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: stored.ID, To: store.PhaseSucceeded}); err != nil {
		return "", time.Time{}, fmt.Errorf("recording the run's phase: %w", err)
	}
	run.Status.Phase = retentionv1.RunSucceeded
	if r.Recorder != nil {
		how := fmt.Sprintf("snapshot %d, taken after the window closed", stored.MeasuredSnapshot)
		if !seenEnd {
			how = fmt.Sprintf("no snapshot taken after the window closed arrived within %s; last measured snapshot %d", measureGrace, stored.MeasuredSnapshot)
		}
		r.Recorder.Eventf(run, nil, "Normal", retentionv1.EventMeasured, "Measure", "final figures (%s): %s", how, m.Verdict)
	}
	return succeededMessage(run), time.Time{}, nil
}

// windowDone says whether a run's figures are final at now: the window
// has closed and either the source's current snapshot, taken at or after
// its end, has been measured (seenEnd), or measureGrace has passed since.
func windowDone(now, end time.Time, cur *store.Snapshot, measured int64) (final, seenEnd bool) {
	seenEnd = cur != nil && !cur.CreatedAt.Before(end) && measured >= cur.ID
	final = !now.Before(end) && (seenEnd || !now.Before(end.Add(measureGrace)))
	return final, seenEnd
}

// untrusted says why the run's uplift is not to be trusted ("" if it is).
func (r *CampaignRunReconciler) untrusted(run *retentionv1.CampaignRun) string {
	if meta.IsStatusConditionTrue(run.Status.Conditions, retentionv1.ConditionSampleRatioMismatch) {
		return "sample-ratio mismatch"
	}
	return ""
}

// setCounts writes a tally's audience, delivery and variant counts into
// status.
func setCounts(run *retentionv1.CampaignRun, tally *store.RunTally) {
	a, d := audienceCounts(tally), deliveryCounts(tally)
	run.Status.Audience, run.Status.Delivery = &a, &d
	run.Status.Variants = variantCounts(tally)
}

// groupConversion reads one group of a tally.
func groupConversion(g *store.GroupTally) retentionv1.GroupConversion {
	if g == nil {
		return retentionv1.GroupConversion{}
	}
	return conversionOf(g.Total, g.Converted, g.Revenue)
}

func conversionOf(n, converted int64, revenue float64) retentionv1.GroupConversion {
	out := retentionv1.GroupConversion{Customers: n, Converted: converted}
	if n > 0 {
		out.RatePercent = decimal(100*float64(converted)/float64(n), 2)
		out.RevenuePerCustomer = decimal(revenue/float64(n), 2)
	}
	return out
}

// runMeasurement compares a run's two groups (Newcombe's hybrid score
// interval, the pooled z-test).
func runMeasurement(t *store.RunTally, final bool, untrusted string) *retentionv1.Measurement {
	tr, ho := groupConversion(t.Groups[store.GroupTreatment]), groupConversion(t.Groups[store.GroupHoldout])
	m := &retentionv1.Measurement{Final: final, Treatment: tr, Holdout: ho}
	m.Uplift, m.Verdict = compare(tr, ho, untrusted)
	return m
}

// compare computes the uplift of two groups, or says why it cannot.
func compare(tr, ho retentionv1.GroupConversion, untrusted string) (*retentionv1.Uplift, string) {
	if stats.TooFewToSay(tr.Customers, ho.Customers) {
		return nil, fmt.Sprintf("too few to say: %d in the treatment and %d in the holdout (at least %d in each are needed for an interval to mean anything)",
			tr.Customers, ho.Customers, stats.MinGroupSize)
	}
	d, err := stats.CompareProportions(tr.Converted, tr.Customers, ho.Converted, ho.Customers, confidence)
	if err != nil {
		return nil, fmt.Sprintf("cannot compare the groups: %v", err)
	}
	u := newcombeUplift(d)
	return u, verdict(u, d.CI, d.PValue, untrusted)
}

// newcombeUplift is the status form of one two-group comparison.
func newcombeUplift(d stats.Difference) *retentionv1.Uplift {
	u := upliftOf(d.Diff, d.CI, d.PValue, retentionv1.UpliftNewcombe)
	if d.HasRelative {
		u.RelativePercent = decimal(100*d.RelativeUplift, 1)
	}
	return u
}

func upliftOf(diff float64, ci stats.Interval, p float64, method retentionv1.UpliftMethod) *retentionv1.Uplift {
	return &retentionv1.Uplift{
		PercentagePoints: decimal(100*diff, 2), Lower: decimal(100*ci.Lower, 2), Upper: decimal(100*ci.Upper, 2),
		PValue: pValue(p), Method: method,
	}
}

// verdict says in one sentence what an uplift shows: its interval ci
// (the raw bounds, not their rounded text) above, below or across zero.
// A difference is claimed only when the test agrees (p below 1 −
// confidence): an interval and a test built differently can disagree near
// the edge, and small or zero counts make a Wald-type interval too narrow.
func verdict(u *retentionv1.Uplift, ci stats.Interval, p float64, untrusted string) string {
	shows := "no significant difference"
	significant := p < 1-confidence
	switch {
	case ci.Lower > 0 && significant:
		shows = "the treatment converts better"
	case ci.Upper < 0 && significant:
		shows = "the treatment converts worse"
	}
	s := fmt.Sprintf("%s: %s pp (95%% CI %s to %s pp), p = %s", shows, u.PercentagePoints, u.Lower, u.Upper, u.PValue)
	if untrusted != "" {
		s = "untrustworthy (" + untrusted + "): " + s
	}
	return s
}

// pValue formats a p-value: 3 significant digits, "<1e-6" below that.
func pValue(p float64) string {
	if p < 1e-6 {
		return "<1e-6"
	}
	return strconv.FormatFloat(p, 'g', 3, 64)
}

// variantConversions measures each named variant: its treatment against
// the holdout members given the same variant.
func variantConversions(t *store.RunTally) []retentionv1.VariantConversion {
	var out []retentionv1.VariantConversion
	names := map[string]bool{}
	for _, g := range []store.TargetGroup{store.GroupTreatment, store.GroupHoldout} {
		for name := range t.Variants[g] {
			if name != "" {
				names[name] = true
			}
		}
	}
	for name := range names {
		out = append(out, retentionv1.VariantConversion{Name: name,
			Treatment: groupConversion(t.Variants[store.GroupTreatment][name]),
			Holdout:   groupConversion(t.Variants[store.GroupHoldout][name])})
	}
	slices.SortFunc(out, func(a, b retentionv1.VariantConversion) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// experimentDesign says what the run's groups can show: the minimum
// detectable effect at the base rate the purchase model forecasts, and
// the sample-ratio check of the split against the planned holdout share.
func experimentDesign(a retentionv1.AudienceCounts, holdoutPercent int32, baseRate float64, haveBase bool) *retentionv1.ExperimentDesign {
	e := sampleRatioDesign(a, holdoutPercent)
	var notes []string
	switch {
	case !haveBase:
		notes = append(notes, "no fitted purchase model: no base rate to compute the minimum detectable effect from")
	case a.Treatment == 0 || a.Holdout == 0:
		e.BaseRatePercent = decimal(100*baseRate, 2)
		notes = append(notes, "an empty group detects nothing")
	default:
		e.BaseRatePercent = decimal(100*baseRate, 2)
		mde, err := stats.MinimumDetectableEffect(baseRate, a.Treatment, a.Holdout, mdeAlpha, mdePower)
		if err != nil {
			notes = append(notes, fmt.Sprintf("minimum detectable effect: %v", err))
			break
		}
		e.MinimumDetectableEffect = decimal(100*mde, 2)
		e.MinimumDetectableLiftPercent = decimal(100*mde/baseRate, 1)
	}
	e.Note = strings.Join(notes, "; ")
	return e
}

// sampleRatioDesign is the split's check alone: the planned holdout share
// and the χ² p-value of the assigned groups against it.
func sampleRatioDesign(a retentionv1.AudienceCounts, holdoutPercent int32) *retentionv1.ExperimentDesign {
	e := &retentionv1.ExperimentDesign{PlannedHoldoutPercent: holdoutPercent}
	h := float64(holdoutPercent) / 100
	if h > 0 && h < 1 && a.Treatment+a.Holdout > 0 {
		if _, p, err := stats.SampleRatioMismatch([]int64{a.Treatment, a.Holdout}, []float64{1 - h, h}); err == nil {
			e.SampleRatioPValue = pValue(p)
		}
	}
	return e
}

// sampleRatioP returns the design's sample-ratio p-value (ok false when
// it has none).
func sampleRatioP(e *retentionv1.ExperimentDesign) (float64, bool) {
	if e == nil || e.SampleRatioPValue == "" {
		return 0, false
	}
	if e.SampleRatioPValue == "<1e-6" {
		return 0, true
	}
	p, err := strconv.ParseFloat(e.SampleRatioPValue, 64)
	return p, err == nil
}

// checkSampleRatio sets the SampleRatioMismatch condition from the
// design, with an Event when it turns True.
func (r *CampaignRunReconciler) checkSampleRatio(run *retentionv1.CampaignRun) {
	p, ok := sampleRatioP(run.Status.Experiment)
	if !ok || p >= sampleRatioPCutoff {
		meta.RemoveStatusCondition(&run.Status.Conditions, retentionv1.ConditionSampleRatioMismatch)
		return
	}
	a := run.Status.Audience
	msg := fmt.Sprintf("assigned %d treatment and %d holdout against a planned %d%% holdout: χ² p = %s; the uplift is not to be trusted",
		a.Treatment, a.Holdout, run.Status.Experiment.PlannedHoldoutPercent, run.Status.Experiment.SampleRatioPValue)
	if !meta.IsStatusConditionTrue(run.Status.Conditions, retentionv1.ConditionSampleRatioMismatch) && r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Warning", retentionv1.EventSampleRatioMismatch, "Materialize", "%s", msg)
	}
	meta.SetStatusCondition(&run.Status.Conditions, metav1.Condition{Type: retentionv1.ConditionSampleRatioMismatch,
		Status: metav1.ConditionTrue, Reason: retentionv1.EventSampleRatioMismatch, Message: msg, ObservedGeneration: run.Generation})
}

// forecast returns the conversion forecast of the campaign's audience:
// the segment's source's fitted purchase model over the campaign's window
// (nil when the source has no fitted model).
func (r *CampaignRunReconciler) forecast(ctx context.Context, seg *retentionv1.Segment, window time.Duration) func(*customer.Scored) float64 {
	var cs retentionv1.CustomerSource
	if err := r.Get(ctx, types.NamespacedName{Namespace: seg.Namespace, Name: seg.Spec.SourceRef.Name}, &cs); err != nil {
		return nil
	}
	ms := cs.Status.Model
	if ms == nil || ms.Selected == "" {
		return nil
	}
	for _, fm := range ms.Models {
		if fm.Name != ms.Selected || fm.Error != "" {
			continue
		}
		params := map[string]float64{}
		for k, v := range fm.Parameters {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) {
				return nil
			}
			params[k] = f
		}
		unitDays := 7.0
		if cs.Spec.Scoring.TimeUnit == retentionv1.TimeUnitDay {
			unitDays = 1
		}
		f, err := campaign.Forecast(fm.Name, params, unitDays, window)
		if err != nil {
			return nil
		}
		return f
	}
	return nil
}
