// Package metrics defines the operator's Prometheus metrics. Labels are
// object names and fixed enums only — never a customer id or any other
// personal data. The collectors are registered on a registerer the caller
// injects (controller-runtime's registry in the operator, a fresh one in tests).
package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "retention"

// RiskBands are the fixed values of the band label of CustomersByRisk.
var RiskBands = []string{"low", "medium", "high"}

// Metrics holds every collector of the operator.
type Metrics struct {
	SourceCustomers        *prometheus.GaugeVec
	SourceTransactions     *prometheus.GaugeVec
	SourceRejectedRows     *prometheus.GaugeVec
	SourceLastSuccess      *prometheus.GaugeVec
	SourceScoringInterval  *prometheus.GaugeVec
	SourceScoringDuration  *prometheus.HistogramVec
	SourceScoringsTotal    *prometheus.CounterVec
	SourceCustomersByRisk  *prometheus.GaugeVec
	SourceRetentionRate    *prometheus.GaugeVec
	SourceExpectedValue    *prometheus.GaugeVec
	SegmentSize            *prometheus.GaugeVec
	SegmentEntriesTotal    *prometheus.CounterVec
	SegmentExitsTotal      *prometheus.CounterVec
	SegmentEvaluationTotal *prometheus.CounterVec
	// CampaignTotals are the campaigns' cumulative counters, read from
	// the store (see CampaignTotals).
	CampaignTotals          *CampaignTotals
	CampaignMessagesQueued  *prometheus.GaugeVec
	CampaignRuns            *prometheus.GaugeVec
	CampaignRunsTotal       *prometheus.CounterVec
	CampaignConversionRatio *prometheus.GaugeVec
	CampaignUplift          *prometheus.GaugeVec
	CampaignUpliftLower     *prometheus.GaugeVec
	CampaignUpliftUpper     *prometheus.GaugeVec
	CampaignUpliftPValue    *prometheus.GaugeVec
	CampaignRevenuePerCust  *prometheus.GaugeVec
	CampaignMDE             *prometheus.GaugeVec
	CampaignSampleRatioP    *prometheus.GaugeVec
	ChannelOptOutsTotal     *prometheus.CounterVec
	// UnsubscribeRateLimitedTotal counts unsubscribe requests refused
	// with 429, by scope (global, client): not per channel, as the limit
	// is not.
	UnsubscribeRateLimitedTotal *prometheus.CounterVec

	// source, segment and campaign are the collectors of each kind, for Forget*.
	source, segment, campaign, channel []vec
	// all are every collector registered.
	all []vec
}

// Audience outcomes of CampaignAudienceTotal: the two groups and the
// exclusion reasons, fixed enums.
const (
	OutcomeTreatment   = "treatment"
	OutcomeHeldOut     = "held_out"
	OutcomeUnreachable = "unreachable"
	OutcomeOptedOut    = "opted_out"
	OutcomeSuppressed  = "suppressed"
	OutcomeCapped      = "capped"
	OutcomeOverMax     = "over_max"
)

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{}
	src := vecs{subsystem: "source", labels: []string{"namespace", "source"}}
	seg := vecs{subsystem: "segment", labels: []string{"namespace", "segment"}}
	camp := vecs{subsystem: "campaign", labels: []string{"namespace", "campaign"}}

	m.SourceCustomers = src.gauge("customers", "Customers in the current scored snapshot of a source.")
	m.SourceTransactions = src.gauge("transactions", "Transactions read for the current snapshot of a source.")
	m.SourceRejectedRows = src.gauge("rejected_rows", "Rows rejected as unreadable in the last read of a source.")
	m.SourceLastSuccess = src.gauge("last_success_timestamp_seconds", "Unix time of the last successful scoring of a source.")
	m.SourceScoringInterval = src.gauge("scoring_interval_seconds", "The configured interval between scorings of a source (spec.refreshInterval).")
	m.SourceScoringDuration = src.histogram("scoring_duration_seconds", "Duration of a scoring of a source, read to commit.",
		prometheus.ExponentialBuckets(0.05, 2, 14))
	m.SourceScoringsTotal = src.counter("scorings_total", "Scorings of a source by result (success, failure).", "result")
	m.SourceCustomersByRisk = src.gauge("customers_by_risk",
		"Customers by churn risk band: low (P(alive) >= 0.7), medium, high (P(alive) < 0.3).", "band")
	m.SourceRetentionRate = src.gauge("retention_rate_ratio",
		"Share of the customers who bought in the period before last that bought again in the last period.")
	m.SourceExpectedValue = src.gauge("expected_value", "Total expected customer value over the scoring horizon, in the source's currency.")

	m.SegmentSize = seg.gauge("size", "Members of a segment.")
	m.SegmentEntriesTotal = seg.counter("entries_total", "Customers who entered a segment.")
	m.SegmentExitsTotal = seg.counter("exits_total", "Customers who left a segment.")
	m.SegmentEvaluationTotal = seg.counter("evaluations_total", "Segment evaluations by result (success, failure).", "result")

	m.CampaignTotals = newCampaignTotals()
	m.CampaignMessagesQueued = camp.gauge("messages_queued", "Treatment messages of stored runs not yet recorded, by state (pending: waiting to be claimed, deferred ones included; deferred: pending until quiet hours end or a retry's backoff passes; in_flight: claimed by a runner).", "state")
	m.CampaignRuns = camp.gauge("runs", "CampaignRun objects of a campaign by phase (Pending, Materializing, Sending, Measuring, Succeeded, Failed, Cancelled).", "phase")
	m.CampaignRunsTotal = camp.counter("runs_total", "Campaign runs that ended while this operator process watched, by result (succeeded, failed, cancelled). Resets when the operator restarts; rate() and increase() handle that.", "result")
	m.CampaignConversionRatio = camp.gauge("conversion_ratio", "Conversion rate of a campaign's measured runs by group (treatment, holdout), pooled over runs: converted / assigned.", "group")
	m.CampaignUplift = camp.gauge("uplift_ratio", "Absolute uplift of a campaign (treatment minus holdout conversion rate), the Mantel–Haenszel risk difference pooled over its measured runs. Absent while too few customers to say.")
	m.CampaignUpliftLower = camp.gauge("uplift_lower_ratio", "Lower bound of the 95% confidence interval of retention_campaign_uplift_ratio.")
	m.CampaignUpliftUpper = camp.gauge("uplift_upper_ratio", "Upper bound of the 95% confidence interval of retention_campaign_uplift_ratio.")
	m.CampaignUpliftPValue = camp.gauge("uplift_p_value", "Two-sided p-value of the Cochran–Mantel–Haenszel test of no uplift over a campaign's measured runs.")
	m.CampaignRevenuePerCust = camp.gauge("revenue_per_customer", "Revenue since the baseline per assigned customer, by group, pooled over a campaign's measured runs, in the source's currency.", "group")
	m.CampaignMDE = camp.gauge("mde_ratio", "Minimum detectable absolute uplift (80% power, two-sided alpha 0.05) of the latest materialized run, at the base rate the purchase model forecasts.")
	m.CampaignSampleRatioP = camp.gauge("sample_ratio_p_value", "p-value of the chi-square test of the latest materialized run's group sizes against the planned split; below 0.001 is a sample-ratio mismatch.")

	chn := vecs{subsystem: "channel", labels: []string{"namespace", "channel"}}
	m.ChannelOptOutsTotal = chn.counter("optouts_total", "One-click unsubscribes recorded for a channel (repeats included).")

	m.UnsubscribeRateLimitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "unsubscribe",
		Name: "rate_limited_total", Help: "Unsubscribe requests refused with 429 Too Many Requests, by the limit that refused them (global: this replica's verified opt-outs; client: one client address)."},
		[]string{"scope"})

	m.all = slices.Concat(src.all, seg.all, camp.all, chn.all, []vec{m.CampaignTotals, m.UnsubscribeRateLimitedTotal})
	for _, c := range m.all {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.source, m.segment, m.campaign, m.channel = src.all, seg.all, append(camp.all, m.CampaignTotals), chn.all
	return m, nil
}

// vecs makes the collectors of one subsystem, all labelled by namespace
// and object name (plus fixed enums), and remembers them.
type vecs struct {
	subsystem string
	labels    []string
	all       []vec
}

// vec is a collector whose series can be dropped by label.
type vec interface {
	prometheus.Collector
	DeletePartialMatch(prometheus.Labels) int
}

func (v *vecs) gauge(name, help string, extra ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: v.subsystem, Name: name, Help: help},
		append(slices.Clone(v.labels), extra...))
	v.all = append(v.all, g)
	return g
}

func (v *vecs) counter(name, help string, extra ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: v.subsystem, Name: name, Help: help},
		append(slices.Clone(v.labels), extra...))
	v.all = append(v.all, c)
	return c
}

func (v *vecs) histogram(name, help string, buckets []float64) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: v.subsystem, Name: name, Help: help, Buckets: buckets},
		slices.Clone(v.labels))
	v.all = append(v.all, h)
	return h
}

// ForgetSource removes every series of a deleted source.
func (m *Metrics) ForgetSource(namespace, name string) {
	forget(m.source, prometheus.Labels{"namespace": namespace, "source": name})
}

// ForgetSegment removes every series of a deleted segment.
func (m *Metrics) ForgetSegment(namespace, name string) {
	forget(m.segment, prometheus.Labels{"namespace": namespace, "segment": name})
}

// ForgetCampaign removes every series of a deleted campaign.
func (m *Metrics) ForgetCampaign(namespace, name string) {
	forget(m.campaign, prometheus.Labels{"namespace": namespace, "campaign": name})
}

// ForgetChannel removes every series of a deleted channel.
func (m *Metrics) ForgetChannel(namespace, name string) {
	forget(m.channel, prometheus.Labels{"namespace": namespace, "channel": name})
}

func forget(vs []vec, l prometheus.Labels) {
	for _, v := range vs {
		v.DeletePartialMatch(l)
	}
}
