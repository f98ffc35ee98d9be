package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/stats"
	"github.com/retention-dev/retention-operator/internal/store"
)

// runPhases are the phases the runs gauge reports, every one of them
// (zero included), so a panel or an alert sees a phase empty out.
var runPhases = []retentionv1.RunPhase{retentionv1.RunPending, retentionv1.RunMaterializing, retentionv1.RunSending,
	retentionv1.RunMeasuring, retentionv1.RunSucceeded, retentionv1.RunFailed, retentionv1.RunCancelled}

// reconcileTotals reads the campaign's cumulative tally and its measured
// runs' strata from the store: the totals, the pooled measurement, and the
// campaign's metrics. Both survive run deletion, so history limits never
// change them.
func (r *CampaignReconciler) reconcileTotals(ctx context.Context, c *retentionv1.Campaign, runs *campaignRuns) error {
	st, err := r.Stores.Get(ctx)
	if err != nil {
		return err
	}
	tally, err := st.CampaignTally(ctx, string(c.UID))
	if err != nil {
		return fmt.Errorf("reading the campaign's totals: %w", err)
	}
	strata, err := st.CampaignStrata(ctx, string(c.UID))
	if err != nil {
		return fmt.Errorf("reading the campaign's measured runs: %w", err)
	}
	n := int64(0)
	if c.Status.Totals != nil {
		n = c.Status.Totals.Runs
	}
	c.Status.Totals = &retentionv1.CampaignTotals{Runs: n, AudienceCounts: audienceCounts(tally), DeliveryCounts: deliveryCounts(tally)}
	pooled := poolRuns(strata)
	c.Status.Measurement = pooled.status
	r.exportCampaign(c, tally, pooled, runs)
	return nil
}

// pooledRuns are a campaign's measured runs pooled: the status figures
// and the raw numbers behind them, which the metrics export unrounded.
type pooledRuns struct {
	status             *retentionv1.Measurement // nil without a measured run
	treatment, holdout store.StratumGroup       // summed over the runs
	uplift             *stats.Pooled            // nil while too few to say
}

// poolRuns pools a campaign's measured runs, stratified by run: the
// Mantel–Haenszel risk difference, so runs with different base rates or
// holdout shares are not confounded as a naive sum of counts would be.
func poolRuns(strata []store.RunStratum) pooledRuns {
	var out pooledRuns
	if len(strata) == 0 {
		return out
	}
	tr, ho := &out.treatment, &out.holdout
	in := make([]stats.Stratum, 0, len(strata))
	final := true
	for _, s := range strata {
		tr.Assigned, tr.Converted, tr.Revenue = tr.Assigned+s.Treatment.Assigned, tr.Converted+s.Treatment.Converted, tr.Revenue+s.Treatment.Revenue
		ho.Assigned, ho.Converted, ho.Revenue = ho.Assigned+s.Holdout.Assigned, ho.Converted+s.Holdout.Converted, ho.Revenue+s.Holdout.Revenue
		in = append(in, stats.Stratum{TreatmentConverted: s.Treatment.Converted, Treatment: s.Treatment.Assigned,
			HoldoutConverted: s.Holdout.Converted, Holdout: s.Holdout.Assigned})
		final = final && s.Final
	}
	m := &retentionv1.Measurement{Final: final, Runs: int32(len(strata)),
		Treatment: conversionOf(tr.Assigned, tr.Converted, tr.Revenue), Holdout: conversionOf(ho.Assigned, ho.Converted, ho.Revenue)}
	out.status = m
	if stats.TooFewToSay(tr.Assigned, ho.Assigned) {
		m.Verdict = fmt.Sprintf("too few to say: %d in the treatment and %d in the holdout over %s (at least %d in each are needed)",
			tr.Assigned, ho.Assigned, plural(len(strata), "run"), stats.MinGroupSize)
		return out
	}
	p, err := stats.MantelHaenszel(in, confidence)
	if err != nil {
		m.Verdict = fmt.Sprintf("cannot pool the runs: %v", err)
		return out
	}
	if p.Strata == 1 {
		// One run with both groups: its own analysis (Newcombe's interval,
		// the pooled z-test), so the campaign says what the run says. The
		// Wald-type Mantel–Haenszel interval would collapse where a group
		// has no conversions (0 of 13 held out: CI 3.8 to 13.6 pp beside
		// the CMH test's p = 0.27).
		d, err := stats.CompareProportions(p.TreatmentConverted, p.Treatment, p.HoldoutConverted, p.Holdout, confidence)
		if err != nil {
			m.Verdict = fmt.Sprintf("cannot compare the groups: %v", err)
			return out
		}
		p.Diff, p.CI, p.PValue = d.Diff, d.CI, d.PValue
		out.uplift = &p
		m.Uplift = newcombeUplift(d)
		m.Verdict = verdict(m.Uplift, d.CI, d.PValue, "") + ", from 1 run"
		return out
	}
	out.uplift = &p
	m.Uplift = upliftOf(p.Diff, p.CI, p.PValue, retentionv1.UpliftMantelHaenszel)
	m.Verdict = verdict(m.Uplift, p.CI, p.PValue, "") + ", pooled over " + plural(p.Strata, "run")
	return out
}

// exportCampaign sets the campaign's metrics from what the store keeps.
func (r *CampaignReconciler) exportCampaign(c *retentionv1.Campaign, tally *store.RunTally, pooled pooledRuns, runs *campaignRuns) {
	m := r.Metrics
	if m == nil {
		return
	}
	ns, name := c.Namespace, c.Name
	a, d := c.Status.Totals.AudienceCounts, c.Status.Totals.DeliveryCounts
	m.CampaignTotals.Set(ns, name, metrics.CampaignCounts{
		Audience: map[string]int64{metrics.OutcomeTreatment: a.Treatment, metrics.OutcomeHeldOut: a.Holdout, metrics.OutcomeUnreachable: a.Unreachable,
			metrics.OutcomeOptedOut: a.OptedOut, metrics.OutcomeSuppressed: a.Suppressed, metrics.OutcomeCapped: a.Capped, metrics.OutcomeOverMax: a.OverMax},
		Messages:    map[string]int64{"sent": d.Sent, "failed": d.Failed, "skipped": d.Skipped - dryRunTargets(tally)},
		Conversions: map[string]int64{metrics.GroupTreatment: pooled.treatment.Converted, metrics.GroupHoldout: pooled.holdout.Converted},
	})
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "pending").Set(float64(d.Pending))
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "deferred").Set(float64(d.Deferred))
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "in_flight").Set(float64(d.InFlight))
	for _, p := range runPhases {
		m.CampaignRuns.WithLabelValues(ns, name, string(p)).Set(float64(runs.byPhase[p]))
		if p.Finished() {
			m.CampaignRunsTotal.WithLabelValues(ns, name, strings.ToLower(string(p))) // at 0 until the first, so rate() sees it
		}
	}
	r.exportMeasurement(c, pooled)
	r.exportDesign(c, runs.latest)
}

// exportMeasurement sets the pooled conversion and uplift gauges, from the
// raw figures; the uplift's are absent while there are too few customers
// to say.
func (r *CampaignReconciler) exportMeasurement(c *retentionv1.Campaign, pooled pooledRuns) {
	m, ns, name := r.Metrics, c.Namespace, c.Name
	for group, g := range map[string]store.StratumGroup{metrics.GroupTreatment: pooled.treatment, metrics.GroupHoldout: pooled.holdout} {
		if g.Assigned == 0 {
			continue
		}
		m.CampaignConversionRatio.WithLabelValues(ns, name, group).Set(float64(g.Converted) / float64(g.Assigned))
		m.CampaignRevenuePerCust.WithLabelValues(ns, name, group).Set(g.Revenue / float64(g.Assigned))
	}
	gauges := []*prometheus.GaugeVec{m.CampaignUplift, m.CampaignUpliftLower, m.CampaignUpliftUpper, m.CampaignUpliftPValue}
	if u := pooled.uplift; u != nil {
		for i, v := range []float64{u.Diff, u.CI.Lower, u.CI.Upper, u.PValue} {
			gauges[i].WithLabelValues(ns, name).Set(v)
		}
		return
	}
	for _, g := range gauges {
		g.DeleteLabelValues(ns, name)
	}
}

// exportDesign sets the MDE and sample-ratio gauges from the latest
// materialized run.
func (r *CampaignReconciler) exportDesign(c *retentionv1.Campaign, latest *retentionv1.CampaignRun) {
	if latest == nil {
		return
	}
	m, e := r.Metrics, latest.Status.Experiment
	if e.MinimumDetectableEffect != "" {
		m.CampaignMDE.WithLabelValues(c.Namespace, c.Name).Set(parseDecimal(e.MinimumDetectableEffect) / 100)
	}
	if p, ok := sampleRatioP(e); ok {
		m.CampaignSampleRatioP.WithLabelValues(c.Namespace, c.Name).Set(p)
	}
}

// parseDecimal reads a decimal string of status (0 when it is not one).
func parseDecimal(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return v
}

// plural says "1 run", "2 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// dryRunTargets counts the treatment targets of dry runs: skipped in the
// store, but never messages.
func dryRunTargets(t *store.RunTally) int64 {
	if g := t.Groups[store.GroupTreatment]; g != nil {
		return g.SkippedByReason[store.ReasonDryRun]
	}
	return 0
}
