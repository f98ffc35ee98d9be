package btyd

import (
	"cmp"
	"fmt"
	"math"
)

// HoldoutBuckets is the number of rows of the calibration-frequency table:
// x = 0, 1, …, 6 and 7+.
const HoldoutBuckets = 8

// HoldoutBucket is one row of the classic validation table: customers with
// X calibration repeat purchases (X = HoldoutBuckets−1 means that many or
// more), their mean actual and mean predicted holdout purchases.
type HoldoutBucket struct {
	X             int32
	Customers     float64
	MeanActual    float64
	MeanPredicted float64
}

// HoldoutReport compares a model's conditional expectations with the
// purchases actually made in a holdout period.
type HoldoutReport struct {
	Horizon   float64 // holdout length t* in the model's time unit
	Customers float64
	Actual    float64 // total actual repeat purchases in the holdout
	Predicted float64 // Σ E[Y(t*) | x, t_x, T]
	MAE, RMSE float64 // per customer
	Buckets   [HoldoutBuckets]HoldoutBucket
}

// Holdout accumulates (calibration summary, holdout purchases) pairs for a
// HoldoutReport. Each distinct (x, t_x, T) costs one model evaluation, so a
// million customers cost about as many as distinct triples. Records in
// canonical order (ascending by (x, T, t_x), equal summaries in a row, as
// Data.Triples and internal/scoring's calibration groups come) need no
// lookup at all: a summary is either the previous one or new. Only when
// the order breaks are predictions memoised in a map. Not safe for
// concurrent use; Merge accumulators of shards.
type Holdout struct {
	model                 Model
	horizon               float64
	last                  tripleKey // summary of the previous record
	lastP                 float64   // its prediction
	any                   bool      // a record was added
	cache                 map[tripleKey]float64
	n, act, pred, abs, sq float64
	bn, bAct, bPred       [HoldoutBuckets]float64
}

// NewHoldout returns an accumulator for model m and holdout length horizon (> 0).
func NewHoldout(m Model, horizon float64) (*Holdout, error) {
	if m == nil || !(horizon > 0) || math.IsInf(horizon, 1) {
		return nil, fmt.Errorf("new holdout: %w: model %v, horizon %v", ErrInvalidInput, m, horizon)
	}
	return &Holdout{model: m, horizon: horizon}, nil
}

// Add records one customer with calibration summary (x, t_x, T) who made
// actual repeat purchases in the holdout.
func (h *Holdout) Add(x int32, tx, T, actual float64) error { return h.AddN(x, tx, T, actual, 1) }

// AddN records n customers sharing the calibration summary and the holdout count.
func (h *Holdout) AddN(x int32, tx, T, actual, n float64) error {
	if err := validSummary(x, tx, T); err != nil {
		return fmt.Errorf("holdout add: %w", err)
	}
	if !(actual >= 0) || math.IsInf(actual, 1) || !(n > 0) || math.IsInf(n, 1) {
		return fmt.Errorf("holdout add: %w: actual %v, count %v", ErrInvalidInput, actual, n)
	}
	p := h.predict(tripleKey{x, tx + 0, T + 0})
	h.n += n
	h.act += n * actual
	h.pred += n * p
	h.abs += n * math.Abs(p-actual)
	h.sq += n * (p - actual) * (p - actual)
	b := min(int(x), HoldoutBuckets-1)
	h.bn[b] += n
	h.bAct[b] += n * actual
	h.bPred[b] += n * p
	return nil
}

// predict returns E[Y(horizon) | k], evaluating the model once per
// distinct summary.
func (h *Holdout) predict(k tripleKey) float64 {
	if h.any && k == h.last {
		return h.lastP
	}
	var p float64
	switch {
	case h.cache == nil && (!h.any || keyLess(h.last, k)):
		// Still in canonical order: k was never seen.
		p = h.model.ExpectedPurchases(h.horizon, k.x, k.tx, k.T)
	default:
		if h.cache == nil {
			// Out of order: memoise from now on. The summaries seen so far
			// are not in the map; meeting one again costs one more
			// evaluation of the same value.
			h.cache = make(map[tripleKey]float64)
		}
		var ok bool
		if p, ok = h.cache[k]; !ok {
			p = h.model.ExpectedPurchases(h.horizon, k.x, k.tx, k.T)
			h.cache[k] = p
		}
	}
	h.last, h.lastP, h.any = k, p, true
	return p
}

// keyLess orders summaries canonically: by x, then T, then t_x.
func keyLess(a, b tripleKey) bool {
	return cmp.Or(cmp.Compare(a.x, b.x), cmp.Compare(a.T, b.T), cmp.Compare(a.tx, b.tx)) < 0
}

// Merge adds the records of o (which must use the same model and horizon).
func (h *Holdout) Merge(o *Holdout) {
	h.n += o.n
	h.act += o.act
	h.pred += o.pred
	h.abs += o.abs
	h.sq += o.sq
	for b := range h.bn {
		h.bn[b] += o.bn[b]
		h.bAct[b] += o.bAct[b]
		h.bPred[b] += o.bPred[b]
	}
}

// Report returns the report of everything recorded so far.
func (h *Holdout) Report() HoldoutReport {
	r := HoldoutReport{Horizon: h.horizon, Customers: h.n, Actual: h.act, Predicted: h.pred}
	if h.n > 0 {
		r.MAE = h.abs / h.n
		r.RMSE = math.Sqrt(h.sq / h.n)
	}
	for b := range r.Buckets {
		r.Buckets[b] = HoldoutBucket{X: int32(b), Customers: h.bn[b]}
		if h.bn[b] > 0 {
			r.Buckets[b].MeanActual = h.bAct[b] / h.bn[b]
			r.Buckets[b].MeanPredicted = h.bPred[b] / h.bn[b]
		}
	}
	return r
}
