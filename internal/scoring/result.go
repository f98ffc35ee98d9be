package scoring

import (
	"errors"
	"time"

	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// Period names the data a model was fitted on.
type Period string

const (
	// Calibration is the period up to Options.CalibrationEnd.
	Calibration Period = "calibration"
	// Observation is the whole observed period, up to Options.ObservationEnd.
	Observation Period = "observation"
)

// FittedModel is one fit of a transaction model.
type FittedModel struct {
	Name   btyd.ModelName
	Period Period
	// Params are the parameters by name ("r", "alpha", "a", "b" or "s",
	// "beta"); nil when the fit failed.
	Params        map[string]float64
	LogLikelihood float64
	Converged     bool
	Iterations    int
	Evaluations   int
	// Customers in the fit's data.
	Customers float64
	// Holdout compares the model's forecast with the holdout period
	// (calibration fits only).
	Holdout *btyd.HoldoutReport
	// Err says why the fit failed ("" on success).
	Err string
}

// SpendModel reports the Gamma-Gamma fit behind expected spend.
type SpendModel struct {
	// Fitted is true when Gamma-Gamma was fitted and used.
	Fitted bool
	// Params are "p", "q", "v" (nil when not fitted).
	Params        map[string]float64
	LogLikelihood float64
	Converged     bool
	Iterations    int
	// Customers is the number of repeat buyers the fit used; Excluded the
	// repeat buyers left out because their mean repeat value was not positive.
	Customers, Excluded int64
	// Fallback says why Gamma-Gamma was not used. Expected spend is then
	// the customer's own mean repeat value (repeat buyers) or MeanSpend.
	Fallback string
	// MeanSpend is the population mean value of a purchase: p·v/(q−1)
	// with Gamma-Gamma, else the mean of the repeat buyers' mean repeat
	// values (or of first purchases when there are no repeat buyers).
	MeanSpend float64
}

// Population summarises the scored customers.
type Population struct {
	// Active customers have P(alive) >= the at-risk threshold.
	Active int64
	// AtRisk customers are repeat buyers with P(alive) below it.
	AtRisk int64
	// RepeatBuyers have at least one repeat purchase day.
	RepeatBuyers int64
	// RetentionBase customers bought in the retention period before last;
	// Retained of them bought again in the last one. RetentionRate is
	// Retained/RetentionBase (0 when the base is empty).
	RetentionBase, Retained int64
	RetentionRate           float64
	// TotalExpectedValue is the sum of every customer's expected value.
	TotalExpectedValue float64
}

// Durations are the wall times of the stages of Score.
type Durations struct {
	// Read streams the source and aggregates per customer (and re-reads
	// it when some customers' rows were out of order, see Result.Rereads).
	Read time.Duration
	// Summarize turns per-customer records into (x, t_x, T) triples.
	Summarize time.Duration
	// Fit is the maximum-likelihood fits and holdout reports.
	Fit time.Duration
	// Score computes the model scores once per triple and per customer.
	Score time.Duration
	// Rank computes RFM quintiles, percentiles and the population summary.
	Rank time.Duration
	// Custom evaluates the custom CEL scores.
	Custom time.Duration
	// Emit is the time spent building records and in the emit callback.
	Emit  time.Duration
	Total time.Duration
}

// CustomScoreIssues counts the customers for whom a custom score could not
// be computed; their score is 0.
type CustomScoreIssues struct {
	// Errors are evaluation errors (cost limit, overflow, division by zero);
	// NonNumeric results that were not numbers; NonFinite NaN or ±Inf.
	Errors, NonNumeric, NonFinite int64
	// First describes the first problem.
	First string
}

// Result describes one scoring run. It never holds NaN or ±Inf.
type Result struct {
	// Customers is the number of customers scored (emitted).
	Customers int64
	// Unscored counts customers known only from customer records (attributes
	// or contact, no transaction in the observed period): not scored.
	Unscored int64
	// Transactions is the number of transactions aggregated; Late those after
	// the observation end, ignored.
	Transactions, Late int64
	// Rejected is the number of rows the reader rejected.
	Rejected int64
	// Source is the reader's report of the (first) read.
	Source *source.Report
	// Rereads is 1 when some customers' transactions came out of date order
	// in a way the streaming counter could not resolve, and the source was
	// read a second time for those customers only (OutOfOrder of them).
	Rereads    int
	OutOfOrder int64

	// ObservationEnd is the observed period's last day; CalibrationEnd the
	// calibration period's last day (zero without a holdout).
	ObservationEnd, CalibrationEnd time.Time
	// TimeUnit is the model time unit in days.
	TimeUnit float64
	// Triples is the number of distinct (x, t_x, T) summaries scored.
	Triples int

	// Selected is the model whose scores were published: a btyd model name,
	// or RFMOnly.
	Selected btyd.ModelName
	// Selection says how the model was chosen (e.g. by holdout MAE).
	Selection string
	// Models are all fits in the order they were made: calibration fits
	// (with a holdout) then fits on the observation period.
	Models []FittedModel
	// Fallback says why Selected is not the model asked for ("" if it is).
	Fallback string
	// Spend reports the Gamma-Gamma spend model.
	Spend SpendModel

	Population Population
	// CustomScores lists problems per custom score (absent when none).
	CustomScores map[string]CustomScoreIssues
	Durations    Durations
}

// Model returns the fit of name on period, or nil.
func (r *Result) Model(name btyd.ModelName, period Period) *FittedModel {
	for i := range r.Models {
		if r.Models[i].Name == name && r.Models[i].Period == period {
			return &r.Models[i]
		}
	}
	return nil
}

// Published returns the fit whose scores were published (nil for RFMOnly).
func (r *Result) Published() *FittedModel {
	if r.Selected == RFMOnly {
		return nil
	}
	return r.Model(r.Selected, Observation)
}

// ErrNoCustomers means no customer had a transaction (or summary) in the
// observed period: there is nothing to score.
var ErrNoCustomers = errors.New("scoring: no customer with a purchase in the observed period")
