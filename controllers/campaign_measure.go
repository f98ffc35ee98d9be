package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
	c.Status.Measurement = pooledMeasurement(strata)
	r.exportCampaign(c, tally, strata, runs)
	return nil
}

// pooledMeasurement pools a campaign's measured runs, stratified by run:
// the Mantel–Haenszel risk difference, so runs with different base rates
// or holdout shares are not confounded as a naive sum of counts would be.
func pooledMeasurement(strata []store.RunStratum) *retentionv1.Measurement {
	if len(strata) == 0 {
		return nil
	}
	var tr, ho store.StratumGroup
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
	if stats.TooFewToSay(tr.Assigned, ho.Assigned) {
		m.Verdict = fmt.Sprintf("too few to say: %d in the treatment and %d in the holdout over %s (at least %d in each are needed)",
			tr.Assigned, ho.Assigned, plural(len(strata), "run"), stats.MinGroupSize)
		return m
	}
	p, err := stats.MantelHaenszel(in, confidence)
	if err != nil {
		m.Verdict = fmt.Sprintf("cannot pool the runs: %v", err)
		return m
	}
	m.Uplift = upliftOf(p.Diff, p.CI, p.PValue, retentionv1.UpliftMantelHaenszel)
	m.Verdict = verdict(m.Uplift, "") + ", pooled over " + plural(len(strata), "run")
	return m
}

// exportCampaign sets the campaign's metrics from what the store keeps.
func (r *CampaignReconciler) exportCampaign(c *retentionv1.Campaign, tally *store.RunTally, strata []store.RunStratum, runs *campaignRuns) {
	m := r.Metrics
	if m == nil {
		return
	}
	ns, name := c.Namespace, c.Name
	a, d := c.Status.Totals.AudienceCounts, c.Status.Totals.DeliveryCounts
	counts := metrics.CampaignCounts{
		Audience: map[string]int64{metrics.OutcomeTreatment: a.Treatment, metrics.OutcomeHeldOut: a.Holdout, metrics.OutcomeUnreachable: a.Unreachable,
			metrics.OutcomeOptedOut: a.OptedOut, metrics.OutcomeSuppressed: a.Suppressed, metrics.OutcomeCapped: a.Capped, metrics.OutcomeOverMax: a.OverMax},
		Messages:    map[string]int64{"sent": d.Sent, "failed": d.Failed, "skipped": d.Skipped - dryRunTargets(tally)},
		Conversions: map[string]int64{metrics.GroupTreatment: 0, metrics.GroupHoldout: 0},
	}
	for _, s := range strata {
		counts.Conversions[metrics.GroupTreatment] += s.Treatment.Converted
		counts.Conversions[metrics.GroupHoldout] += s.Holdout.Converted
	}
	m.CampaignTotals.Set(ns, name, counts)
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "pending").Set(float64(d.Pending))
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "deferred").Set(float64(d.Deferred))
	m.CampaignMessagesQueued.WithLabelValues(ns, name, "in_flight").Set(float64(d.InFlight))
	for _, p := range runPhases {
		m.CampaignRuns.WithLabelValues(ns, name, string(p)).Set(float64(runs.byPhase[p]))
		if p.Finished() {
			m.CampaignRunsTotal.WithLabelValues(ns, name, strings.ToLower(string(p))) // at 0 until the first, so rate() sees it
		}
	}
	r.exportMeasurement(c)
	r.exportDesign(c, runs.latest)
}

// exportMeasurement sets the pooled conversion and uplift gauges; the
// uplift's are absent while there are too few customers to say.
func (r *CampaignReconciler) exportMeasurement(c *retentionv1.Campaign) {
	m, ns, name := r.Metrics, c.Namespace, c.Name
	meas := c.Status.Measurement
	if meas == nil {
		return
	}
	for group, g := range map[string]retentionv1.GroupConversion{metrics.GroupTreatment: meas.Treatment, metrics.GroupHoldout: meas.Holdout} {
		if g.Customers == 0 {
			continue
		}
		m.CampaignConversionRatio.WithLabelValues(ns, name, group).Set(float64(g.Converted) / float64(g.Customers))
		m.CampaignRevenuePerCust.WithLabelValues(ns, name, group).Set(parseDecimal(g.RevenuePerCustomer))
	}
	gauges := []struct {
		set func(float64)
		del func()
		v   func(*retentionv1.Uplift) float64
	}{
		{func(v float64) { m.CampaignUplift.WithLabelValues(ns, name).Set(v) }, func() { m.CampaignUplift.DeleteLabelValues(ns, name) },
			func(u *retentionv1.Uplift) float64 { return parseDecimal(u.PercentagePoints) / 100 }},
		{func(v float64) { m.CampaignUpliftLower.WithLabelValues(ns, name).Set(v) }, func() { m.CampaignUpliftLower.DeleteLabelValues(ns, name) },
			func(u *retentionv1.Uplift) float64 { return parseDecimal(u.Lower) / 100 }},
		{func(v float64) { m.CampaignUpliftUpper.WithLabelValues(ns, name).Set(v) }, func() { m.CampaignUpliftUpper.DeleteLabelValues(ns, name) },
			func(u *retentionv1.Uplift) float64 { return parseDecimal(u.Upper) / 100 }},
		{func(v float64) { m.CampaignUpliftPValue.WithLabelValues(ns, name).Set(v) }, func() { m.CampaignUpliftPValue.DeleteLabelValues(ns, name) },
			func(u *retentionv1.Uplift) float64 { return parsePValue(u.PValue) }},
	}
	for _, g := range gauges {
		if meas.Uplift == nil {
			g.del()
			continue
		}
		g.set(g.v(meas.Uplift))
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

// parsePValue reads a p-value as pValue formats it.
func parsePValue(s string) float64 {
	if strings.HasPrefix(s, "<") {
		return 0
	}
	return parseDecimal(s)
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
