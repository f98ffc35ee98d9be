package btyd

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// FitOptions tunes a fit. The zero value is a good default.
type FitOptions struct {
	// MaxIterations bounds the BFGS iterations (default 200).
	MaxIterations int
	// GradTol is the convergence threshold on the largest component of the
	// gradient of the mean negative log-likelihood with respect to the
	// log-parameters (default 1e-7: parameters then agree to ~1e-6 relative).
	// The mean does not grow with the data, and the gradient is accurate to
	// rounding, so the default holds from a few thousand customers to
	// millions (see noiseRel for why this needs care in the line search).
	GradTol float64
	// Init are starting parameters by name ("r", "alpha", ...); missing names
	// start at 1 (as lifetimes does). Values must be positive.
	Init map[string]float64
	// Workers is the number of goroutines evaluating the likelihood
	// (default min(2, GOMAXPROCS)); 1 disables parallelism.
	Workers int
}

// FitResult reports how a fit went.
type FitResult struct {
	Converged     bool
	Iterations    int     // BFGS iterations
	Evaluations   int     // log-likelihood (with gradient) evaluations on the full data
	LogLikelihood float64 // at the returned parameters
	Reason        string  // why the optimiser stopped
}

func (o FitOptions) maxIter() int {
	if o.MaxIterations > 0 {
		return o.MaxIterations
	}
	return 200
}

func (o FitOptions) gradTol() float64 {
	if o.GradTol > 0 {
		return o.GradTol
	}
	return 1e-7
}

const (
	// noiseRel bounds the relative rounding noise of an objective: a sum
	// over up to millions of customers is accurate to about 1e-14·|f| (the
	// error of a long floating-point sum grows with the number of terms),
	// so changes of f below noiseRel·|f| are not evidence of anything.
	// Near the optimum of a large data set the decrease a BFGS step makes
	// (about |∇f|²) falls below that noise while the gradient is still
	// above GradTol, and an Armijo test then accepts or rejects steps at
	// random: the fit wanders at a gradient of a few 1e-7 until the
	// iteration limit. Within the noise the line search decides by the
	// directional derivative instead (Hager & Zhang's approximate Wolfe
	// condition, CG_DESCENT, SIAM J. Optim. 16(1), 2005), which is accurate
	// to rounding, so the gradient criterion stays reachable at any data
	// size.
	noiseRel = 1e-10
	// wolfeDelta is δ of the approximate Wolfe condition φ'(α) <= (2δ−1)φ'(0).
	wolfeDelta = 0.1
)

// objective returns f(θ) and fills grad; a non-finite f marks θ as outside
// the region where the model can be evaluated (the line search backs off).
type objective func(theta, grad []float64) float64

// minimize runs BFGS with a backtracking (Armijo) line search on f from x0.
// Steps are capped at maxStep in every coordinate, because θ are
// log-parameters and a step of 5 already multiplies a parameter by 148. The
// inverse-Hessian update is skipped when the curvature condition fails, so
// the approximation stays positive definite without a Wolfe search; in four
// dimensions this costs about 1.1 evaluations per iteration.
//
// H0, if not nil, is the starting inverse Hessian (from a fit of a
// subsample); the final inverse-Hessian approximation is returned.
func minimize(ctx context.Context, f objective, x0 []float64, H0 [][]float64, opts FitOptions) ([]float64, [][]float64, FitResult, error) {
	const (
		c1      = 1e-4
		maxStep = 5.0
	)
	n := len(x0)
	x := append([]float64(nil), x0...)
	g := make([]float64, n)
	res := FitResult{}
	fx := f(x, g)
	res.Evaluations++
	if !isFinite(fx) || !allFinite(g) {
		return x, nil, res, fmt.Errorf("%w: non-finite log-likelihood at the starting point", ErrNotConverged)
	}
	H := identity(n)
	first := true
	if H0 != nil {
		for i := range H {
			copy(H[i], H0[i])
		}
		first = false
	}
	p, xn, gn, s, y := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	gtol := opts.gradTol()
	for res.Iterations = 0; res.Iterations < opts.maxIter(); res.Iterations++ {
		if err := ctx.Err(); err != nil {
			res.LogLikelihood = -fx
			return x, H, res, fmt.Errorf("fit cancelled: %w", err)
		}
		if normInf(g) <= gtol {
			res.Converged, res.Reason = true, fmt.Sprintf("gradient norm %.3g <= %.3g", normInf(g), gtol)
			res.LogLikelihood = -fx
			return x, H, res, nil
		}
		matVec(p, H, g, -1)
		if dot(p, g) >= 0 { // lost descent: restart from steepest descent
			H = identity(n)
			first = true
			matVec(p, H, g, -1)
		}
		if m := normInf(p); m > maxStep {
			scale(p, maxStep/m)
		}
		slope := dot(p, g)
		noise := noiseRel * math.Max(1, math.Abs(fx))
		step, fn, ok := 1.0, 0.0, false
		for ls := 0; ls < 60; ls++ {
			for i := range x {
				xn[i] = x[i] + step*p[i]
			}
			if slices.Equal(xn, x) {
				break // the step no longer moves x: no progress along p
			}
			fn = f(xn, gn)
			res.Evaluations++
			if !isFinite(fn) || !allFinite(gn) {
				step *= 0.1
				continue
			}
			df := fn - fx
			if math.Abs(df) <= noise {
				// The change of f is within its rounding noise, so f cannot
				// tell a better point: decide by the directional
				// derivative, which stays accurate (approximate Wolfe).
				dphi := dot(gn, p)
				if dphi <= (2*wolfeDelta-1)*slope {
					ok = true // still descending, or past the minimum by little
					break
				}
				// Far past the minimum along p: secant step on φ'.
				t := step * -slope / (dphi - slope)
				step = math.Min(math.Max(t, 0.1*step), 0.5*step)
				continue
			}
			if df <= c1*step*slope { // Armijo
				ok = true
				break
			}
			// quadratic interpolation, safeguarded
			t := -slope * step * step / (2 * (df - slope*step))
			step = math.Min(math.Max(t, 0.1*step), 0.5*step)
		}
		if !ok {
			// No decrease along a descent direction: we are at the rounding
			// floor of f. Accept it if the gradient is nearly converged.
			if normInf(g) <= 100*gtol {
				res.Converged, res.Reason = true, fmt.Sprintf("line search at rounding floor, gradient norm %.3g", normInf(g))
				res.LogLikelihood = -fx
				return x, H, res, nil
			}
			res.Reason = fmt.Sprintf("line search failed, gradient norm %.3g", normInf(g))
			res.LogLikelihood = -fx
			return x, H, res, fmt.Errorf("%w: %s after %d iterations", ErrNotConverged, res.Reason, res.Iterations)
		}
		for i := range x {
			s[i], y[i] = xn[i]-x[i], gn[i]-g[i]
		}
		copy(x, xn)
		copy(g, gn)
		fx = fn
		sy := dot(s, y)
		if sy <= 1e-12*math.Sqrt(dot(s, s)*dot(y, y)) {
			continue // curvature condition failed: keep H positive definite
		}
		if first { // scale the initial inverse Hessian (Nocedal & Wright 6.20)
			sc := sy / dot(y, y)
			for i := range H {
				for j := range H[i] {
					H[i][j] = 0
				}
				H[i][i] = sc
			}
			first = false
		}
		bfgsUpdate(H, s, y, sy)
	}
	res.Reason = fmt.Sprintf("%d iterations, gradient norm %.3g", res.Iterations, normInf(g))
	res.LogLikelihood = -fx
	return x, H, res, fmt.Errorf("%w: %s", ErrNotConverged, res.Reason)
}

// bfgsUpdate applies H ← (I - ρsyᵀ) H (I - ρysᵀ) + ρssᵀ, ρ = 1/sᵀy.
func bfgsUpdate(H [][]float64, s, y []float64, sy float64) {
	n := len(s)
	rho := 1 / sy
	Hy := make([]float64, n)
	matVec(Hy, H, y, 1)
	yHy := dot(y, Hy)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			H[i][j] += -rho*(Hy[i]*s[j]+s[i]*Hy[j]) + (rho*rho*yHy+rho)*s[i]*s[j]
		}
	}
}

func identity(n int) [][]float64 {
	H := make([][]float64, n)
	for i := range H {
		H[i] = make([]float64, n)
		H[i][i] = 1
	}
	return H
}

// matVec sets dst = alpha·H·v.
func matVec(dst []float64, H [][]float64, v []float64, alpha float64) {
	for i := range H {
		dst[i] = alpha * dot(H[i], v)
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func scale(v []float64, a float64) {
	for i := range v {
		v[i] *= a
	}
}

func normInf(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

func allFinite(v []float64) bool {
	for _, x := range v {
		if !isFinite(x) {
			return false
		}
	}
	return true
}
