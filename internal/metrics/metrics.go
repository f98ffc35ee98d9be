// Package metrics defines the operator's Prometheus metrics. Labels are
// object names and fixed enums only — never a customer id or any other
// personal data. The collectors are registered on a registerer the caller
// injects (controller-runtime's registry in the operator, a fresh one in tests).
package metrics

import (
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
	SourceScoringDuration  *prometheus.HistogramVec
	SourceScoringsTotal    *prometheus.CounterVec
	SourceCustomersByRisk  *prometheus.GaugeVec
	SourceRetentionRate    *prometheus.GaugeVec
	SourceExpectedValue    *prometheus.GaugeVec
	SegmentSize            *prometheus.GaugeVec
	SegmentEntriesTotal    *prometheus.CounterVec
	SegmentExitsTotal      *prometheus.CounterVec
	SegmentEvaluationTotal *prometheus.CounterVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	src := []string{"namespace", "source"}
	seg := []string{"namespace", "segment"}
	m := &Metrics{
		SourceCustomers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "customers",
			Help: "Customers in the current scored snapshot of a source."}, src),
		SourceTransactions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "transactions",
			Help: "Transactions read for the current snapshot of a source."}, src),
		SourceRejectedRows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "rejected_rows",
			Help: "Rows rejected as unreadable in the last read of a source."}, src),
		SourceLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last successful scoring of a source."}, src),
		SourceScoringDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "source", Name: "scoring_duration_seconds",
			Help:    "Duration of a scoring of a source, read to commit.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, src),
		SourceScoringsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "source", Name: "scorings_total",
			Help: "Scorings of a source by result (success, failure)."}, append(src, "result")),
		SourceCustomersByRisk: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "customers_by_risk",
			Help: "Customers by churn risk band: low (P(alive) >= 0.7), medium, high (P(alive) < 0.3)."}, append(src, "band")),
		SourceRetentionRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "retention_rate_ratio",
			Help: "Share of the customers who bought in the period before last that bought again in the last period."}, src),
		SourceExpectedValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "source", Name: "expected_value",
			Help: "Total expected customer value over the scoring horizon, in the source's currency."}, src),
		SegmentSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "segment", Name: "size",
			Help: "Members of a segment."}, seg),
		SegmentEntriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "segment", Name: "entries_total",
			Help: "Customers who entered a segment."}, seg),
		SegmentExitsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "segment", Name: "exits_total",
			Help: "Customers who left a segment."}, seg),
		SegmentEvaluationTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "segment", Name: "evaluations_total",
			Help: "Segment evaluations by result (success, failure)."}, append(seg, "result")),
	}
	for _, c := range []prometheus.Collector{
		m.SourceCustomers, m.SourceTransactions, m.SourceRejectedRows, m.SourceLastSuccess, m.SourceScoringDuration,
		m.SourceScoringsTotal, m.SourceCustomersByRisk, m.SourceRetentionRate, m.SourceExpectedValue,
		m.SegmentSize, m.SegmentEntriesTotal, m.SegmentExitsTotal, m.SegmentEvaluationTotal,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ForgetSource removes every series of a deleted source.
func (m *Metrics) ForgetSource(namespace, name string) {
	l := prometheus.Labels{"namespace": namespace, "source": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.SourceCustomers.MetricVec, m.SourceTransactions.MetricVec, m.SourceRejectedRows.MetricVec, m.SourceLastSuccess.MetricVec,
		m.SourceScoringDuration.MetricVec, m.SourceScoringsTotal.MetricVec, m.SourceCustomersByRisk.MetricVec,
		m.SourceRetentionRate.MetricVec, m.SourceExpectedValue.MetricVec,
	} {
		v.DeletePartialMatch(l)
	}
}

// ForgetSegment removes every series of a deleted segment.
func (m *Metrics) ForgetSegment(namespace, name string) {
	l := prometheus.Labels{"namespace": namespace, "segment": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.SegmentSize.MetricVec, m.SegmentEntriesTotal.MetricVec, m.SegmentExitsTotal.MetricVec, m.SegmentEvaluationTotal.MetricVec,
	} {
		v.DeletePartialMatch(l)
	}
}
