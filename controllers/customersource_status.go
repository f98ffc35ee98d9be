package controllers

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// scoringOptions turns the scoring spec into options of internal/scoring.
func scoringOptions(cs *retentionv1.CustomerSource, clock Clock) scoring.Options {
	sp := cs.Spec.Scoring
	o := scoring.Options{
		TimeUnit:    7,
		Model:       btyd.ModelName(sp.Model),
		HorizonDays: durationOr(sp.Horizon, 364*24*time.Hour).Hours() / 24,
		Clock:       clock,
	}
	if sp.TimeUnit == retentionv1.TimeUnitDay {
		o.TimeUnit = 1
	}
	if o.Model == "" {
		o.Model = scoring.Auto
	}
	if sp.ObservationEnd != nil {
		o.ObservationEnd = sp.ObservationEnd.Time
	}
	if sp.HoldoutPeriod != nil {
		o.HoldoutPeriod = sp.HoldoutPeriod.Duration
	}
	o.AnnualDiscountPercent = 10
	if sp.AnnualDiscountPercent != nil {
		o.AnnualDiscountPercent = float64(*sp.AnnualDiscountPercent)
	}
	if sp.AtRiskPercent != nil {
		o.AtRiskThreshold = float64(*sp.AtRiskPercent) / 100
	}
	for _, c := range sp.CustomScores {
		o.CustomScores = append(o.CustomScores, scoring.CustomScore{Name: c.Name, Expression: c.Expression})
	}
	return o
}

// decimal formats a float for status (which holds no floats).
func decimal(v float64, digits int) string { return strconv.FormatFloat(v, 'f', digits, 64) }

// significant formats a model parameter with 5 significant digits.
func significant(v float64) string { return strconv.FormatFloat(v, 'g', 5, 64) }

// recordScoring writes a successful scoring into status.
func recordScoring(cs *retentionv1.CustomerSource, res *scoring.Result, snapshotID int64, now time.Time, took time.Duration) {
	st := &cs.Status
	st.Customers = res.Customers
	st.Transactions = res.Transactions
	st.RejectedRows = res.Rejected
	st.RejectedSamples = rejections(res.Source)
	st.SnapshotID = snapshotID
	st.LastScoredTime = &metav1.Time{Time: now}
	st.Duration = &metav1.Duration{Duration: took.Round(time.Millisecond)}
	st.Model = modelStatus(res)
	p := res.Population
	st.Population = &retentionv1.PopulationSummary{
		Active:               p.Active,
		AtRisk:               p.AtRisk,
		RetentionRatePercent: decimal(100*p.RetentionRate, 1),
		TotalExpectedValue:   decimal(p.TotalExpectedValue, 2),
	}
	if res.Fallback != "" {
		setCondition(cs, retentionv1.ConditionModelFallback, metav1.ConditionTrue, retentionv1.ReasonModelNotFitted, res.Fallback)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, retentionv1.ConditionModelFallback)
	}
}

// modelStatus reports one entry per model: the parameters of its fit on
// the whole observed period (or on the calibration period when that is the
// only fit) and its holdout error from the calibration fit.
func modelStatus(res *scoring.Result) *retentionv1.ModelStatus {
	ms := &retentionv1.ModelStatus{Selected: string(res.Selected)}
	byName := map[btyd.ModelName]*retentionv1.FittedModel{}
	var order []btyd.ModelName
	for i := range res.Models {
		f := &res.Models[i]
		m, ok := byName[f.Name]
		if !ok {
			m = &retentionv1.FittedModel{Name: string(f.Name)}
			byName[f.Name] = m
			order = append(order, f.Name)
		}
		if f.Period == scoring.Observation || m.Parameters == nil {
			m.Parameters = params(f.Params)
			m.Period = "Calibration"
			if f.Period == scoring.Observation {
				m.Period = "Observation"
			}
			m.Converged = f.Converged
			m.Iterations = int32(f.Iterations)
			m.LogLikelihood = ""
			if f.Err == "" {
				m.LogLikelihood = decimal(f.LogLikelihood, 2)
			}
			m.Error = f.Err
		}
		if h := f.Holdout; h != nil {
			m.HoldoutMAE = decimal(h.MAE, 4)
			m.HoldoutPredicted = decimal(h.Predicted, 1)
			m.HoldoutActual = decimal(h.Actual, 0)
		}
	}
	for _, n := range order {
		ms.Models = append(ms.Models, *byName[n])
	}
	if res.Spend.Fitted {
		ms.Spend = &retentionv1.FittedModel{
			Name:          "GammaGamma",
			Parameters:    params(res.Spend.Params),
			LogLikelihood: decimal(res.Spend.LogLikelihood, 2),
			Converged:     res.Spend.Converged,
			Iterations:    int32(res.Spend.Iterations),
		}
	} else if res.Spend.Fallback != "" {
		ms.Spend = &retentionv1.FittedModel{Name: "GammaGamma", Error: res.Spend.Fallback}
	}
	return ms
}

func params(p map[string]float64) map[string]string {
	if len(p) == 0 {
		return nil
	}
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = significant(v)
	}
	return out
}

// rejections copies the first rejected rows (row, column, reason — never data).
func rejections(rep *source.Report) []retentionv1.RowRejection {
	if rep == nil {
		return nil
	}
	out := make([]retentionv1.RowRejection, 0, len(rep.Samples))
	for _, s := range rep.Samples {
		col := s.Column
		if s.Input != "" && s.Input != "transactions" {
			col = s.Input + ": " + col
		}
		out = append(out, retentionv1.RowRejection{Row: s.Row, Column: col, Reason: s.Reason})
		if len(out) == 10 {
			break
		}
	}
	return out
}

func firstRejection(rep *source.Report) string {
	if rep == nil || len(rep.Samples) == 0 {
		return "no sample"
	}
	return rep.Samples[0].String()
}

// selectionText says why the published model was used.
func selectionText(res *scoring.Result) string {
	switch {
	case res.Fallback != "":
		return "fallback: " + res.Fallback
	case res.Selection != "":
		return res.Selection
	}
	return "as configured"
}

// observe exports a successful scoring as metrics.
func (r *CustomerSourceReconciler) observe(cs *retentionv1.CustomerSource, res *scoring.Result, bands *riskBands, now time.Time) {
	m := r.Metrics
	if m == nil {
		return
	}
	ns, name := cs.Namespace, cs.Name
	m.SourceCustomers.WithLabelValues(ns, name).Set(float64(res.Customers))
	m.SourceTransactions.WithLabelValues(ns, name).Set(float64(res.Transactions))
	m.SourceRejectedRows.WithLabelValues(ns, name).Set(float64(res.Rejected))
	m.SourceLastSuccess.WithLabelValues(ns, name).Set(float64(now.Unix()))
	m.SourceScoringDuration.WithLabelValues(ns, name).Observe(res.Durations.Total.Seconds())
	m.SourceScoringsTotal.WithLabelValues(ns, name, "success").Inc()
	m.SourceRetentionRate.WithLabelValues(ns, name).Set(res.Population.RetentionRate)
	m.SourceExpectedValue.WithLabelValues(ns, name).Set(res.Population.TotalExpectedValue)
	for i, band := range metrics.RiskBands {
		m.SourceCustomersByRisk.WithLabelValues(ns, name, band).Set(float64(bands[i]))
	}
}

// exportStatus exports what status and spec already say — the refresh
// interval, the last successful scoring, the customers scored — on every
// reconcile, so a restarted operator reports them (and the staleness
// alert can fire) before its first scoring.
func (r *CustomerSourceReconciler) exportStatus(cs *retentionv1.CustomerSource) {
	m := r.Metrics
	if m == nil {
		return
	}
	ns, name := cs.Namespace, cs.Name
	if cs.Spec.Suspend {
		// A suspended source is not expected to score: no interval, so the
		// staleness alert (3 × the interval) stays quiet.
		m.SourceScoringInterval.DeleteLabelValues(ns, name)
	} else {
		m.SourceScoringInterval.WithLabelValues(ns, name).Set(durationOr(cs.Spec.RefreshInterval, time.Hour).Seconds())
	}
	for _, result := range []string{"success", "failure"} {
		m.SourceScoringsTotal.WithLabelValues(ns, name, result) // at 0 until the first, so rate() sees it
	}
	if t := cs.Status.LastScoredTime; t != nil {
		m.SourceLastSuccess.WithLabelValues(ns, name).Set(float64(t.Unix()))
		m.SourceCustomers.WithLabelValues(ns, name).Set(float64(cs.Status.Customers))
	}
}

// riskBands counts customers by churn risk, in the order of metrics.RiskBands:
// low (P(alive) >= 0.7), medium, high (P(alive) < 0.3).
type riskBands [3]int64

func (b *riskBands) add(pAlive float64) {
	switch {
	case pAlive >= 0.7:
		b[0]++
	case pAlive >= 0.3:
		b[1]++
	default:
		b[2]++
	}
}

func (r *CustomerSourceReconciler) countScoring(cs *retentionv1.CustomerSource, result string) {
	if r.Metrics != nil {
		r.Metrics.SourceScoringsTotal.WithLabelValues(cs.Namespace, cs.Name, result).Inc()
	}
}
