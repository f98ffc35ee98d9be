package btyd

import (
	"context"
	"fmt"
	"math"
	"runtime"

	par "github.com/retention-dev/retention-operator/internal/parallel"
)

// ModelName names a transaction model.
type ModelName string

// Transaction models.
const (
	NameBGNBD     ModelName = "BGNBD"
	NameMBGNBD    ModelName = "MBGNBD"
	NameParetoNBD ModelName = "ParetoNBD"
)

// Model is a fitted transaction model. Implementations are value types
// (BGNBD, MBGNBD, ParetoNBD) whose fields are the parameters.
//
// Scoring methods take one customer's summary: x repeat purchases, recency
// t_x and age T with 0 <= t_x <= T (t_x = 0 when x = 0). They never return
// NaN or ±Inf for finite positive parameters and valid summaries; on an
// invalid summary they return 0.
type Model interface {
	Name() ModelName
	// Params returns the parameters by name: "r","alpha","a","b" (BG/NBD,
	// MBG/NBD) or "r","alpha","s","beta" (Pareto/NBD).
	Params() map[string]float64
	// LogLikelihood returns the log-likelihood of d: -Inf for invalid
	// parameters or where it cannot be evaluated (never NaN).
	LogLikelihood(d *Data) float64
	// PAlive returns P(alive at T | x, t_x, T).
	PAlive(x int32, tx, T float64) float64
	// ExpectedPurchases returns E[Y(t) | x, t_x, T], the expected number of
	// purchases in (T, T+t].
	ExpectedPurchases(t float64, x int32, tx, T float64) float64
	// ExpectedPurchasesPopulation returns E[X(t)], the expected number of
	// repeat purchases of a new customer in (0, t].
	ExpectedPurchasesPopulation(t float64) float64
	// ProbPurchase returns P(Y(t) > 0 | x, t_x, T), the probability of at
	// least one purchase in (T, T+t]: a campaign's base conversion rate.
	ProbPurchase(t float64, x int32, tx, T float64) float64
}

// Fit fits the named transaction model to d by maximum likelihood. On
// success the FitResult has Converged set; otherwise the error wraps
// ErrNoRepeatBuyers, ErrDegenerate, ErrNotConverged or ErrInvalidInput and
// the Model is nil, so a caller never sees parameters of a failed fit.
func Fit(ctx context.Context, name ModelName, d *Data, opts FitOptions) (Model, FitResult, error) {
	switch name {
	case NameBGNBD:
		m, res, err := FitBGNBD(ctx, d, opts)
		if err != nil {
			return nil, res, err
		}
		return m, res, nil
	case NameMBGNBD:
		m, res, err := FitMBGNBD(ctx, d, opts)
		if err != nil {
			return nil, res, err
		}
		return m, res, nil
	case NameParetoNBD:
		m, res, err := FitParetoNBD(ctx, d, opts)
		if err != nil {
			return nil, res, err
		}
		return m, res, nil
	}
	return nil, FitResult{}, fmt.Errorf("%w: unknown model %q", ErrInvalidInput, name)
}

// fitLogParams maximises a log-likelihood over θ = ln(params). negLL
// returns the negative log-likelihood divided by the customer count (so the
// tolerances do not depend on the data size) and its θ-gradient. If coarse
// is not nil it is the same objective on a subsample: BFGS first converges
// on it (cheaply), then starts from its optimum and inverse Hessian on the
// full data, which then needs only a few evaluations. The result is the
// optimum of negLL either way; coarse only saves time.
func fitLogParams(ctx context.Context, names []string, negLL, coarse objective, total float64, opts FitOptions) ([]float64, FitResult, error) {
	theta := make([]float64, len(names))
	for i, n := range names {
		v, ok := opts.Init[n]
		if !ok {
			v = 1
		}
		if !(v > 0) || math.IsInf(v, 1) {
			return nil, FitResult{}, fmt.Errorf("%w: initial %s = %v must be positive and finite", ErrInvalidInput, n, v)
		}
		theta[i] = math.Log(v)
	}
	var H0 [][]float64
	var pre FitResult
	if coarse != nil {
		co := opts
		co.GradTol = 100 * opts.gradTol()
		if th, H, r, err := minimize(ctx, coarse, theta, nil, co); err == nil {
			theta, H0, pre = th, H, r
		}
	}
	theta, _, res, err := minimize(ctx, negLL, theta, H0, opts)
	if coarse != nil {
		res.Reason += fmt.Sprintf(" (after %d iterations on a subsample)", pre.Iterations)
	}
	res.LogLikelihood *= total // minimize reports the mean
	params := make([]float64, len(theta))
	for i, t := range theta {
		params[i] = math.Exp(t)
	}
	// params are returned even on error, for diagnostics (Gamma-Gamma's ridge
	// check); exported fits never hand them out with an error.
	if err != nil {
		return params, res, err
	}
	for i, p := range params {
		if !(p > 0) || math.IsInf(p, 0) {
			return params, res, fmt.Errorf("%w: %s = %v left the representable range", ErrNotConverged, names[i], p)
		}
	}
	if !isFinite(res.LogLikelihood) {
		return params, res, fmt.Errorf("%w: non-finite log-likelihood at the optimum", ErrNotConverged)
	}
	return params, res, nil
}

// workers returns the number of goroutines for a likelihood evaluation over
// n items: parallel only when the work amortises starting a goroutine.
func (o FitOptions) workers(n int) int {
	w := o.Workers
	if w <= 0 {
		w = min(2, runtime.GOMAXPROCS(0))
	}
	if n < 20000 {
		return 1
	}
	return w
}

// parallel runs fn over [0,n) split into w contiguous chunks, chunk i on
// worker i; callers sum per-worker partials in worker order, so results do
// not depend on scheduling.
func parallel(w, n int, fn func(worker, lo, hi int)) { par.Chunks(w, n, fn) }

// validParams reports whether all parameters are finite and positive.
func validParams(ps ...float64) bool {
	for _, p := range ps {
		if !(p > 0) || math.IsInf(p, 1) {
			return false
		}
	}
	return true
}

// finiteOr returns v when finite, else def: the last guard of scoring
// functions, whose results must never be NaN or ±Inf.
func finiteOr(v, def float64) float64 {
	if isFinite(v) {
		return v
	}
	return def
}
