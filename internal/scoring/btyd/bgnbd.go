package btyd

import (
	"context"
	"fmt"
	"math"
)

// BGNBD is a fitted BG/NBD model (Fader, Hardie & Lee 2005, "Counting your
// customers the easy way: An alternative to the Pareto/NBD model",
// Marketing Science 24(2)). While alive a customer buys at Poisson rate
// λ ~ Gamma(R, Alpha) (shape R, rate Alpha); after each repeat purchase she
// drops out with probability p ~ Beta(A, B).
type BGNBD struct{ R, Alpha, A, B float64 }

// MBGNBD is a fitted MBG/NBD model (Batislam, Denizel & Filiztekin 2007,
// "Empirical validation and comparison of models for customer base
// analysis", IJRM 24(3)): as BG/NBD, but the customer may also drop out right
// after the first purchase, so customers without repeat purchases have
// P(alive) < 1. Formulas follow lifetimes' ModifiedBetaGeoFitter.
type MBGNBD struct{ R, Alpha, A, B float64 }

// Name implements Model.
func (BGNBD) Name() ModelName { return NameBGNBD }

// Name implements Model.
func (MBGNBD) Name() ModelName { return NameMBGNBD }

// Params implements Model.
func (m BGNBD) Params() map[string]float64 {
	return map[string]float64{"r": m.R, "alpha": m.Alpha, "a": m.A, "b": m.B}
}

// Params implements Model.
func (m MBGNBD) Params() map[string]float64 {
	return map[string]float64{"r": m.R, "alpha": m.Alpha, "a": m.A, "b": m.B}
}

var bgNames = []string{"r", "alpha", "a", "b"}

// FitBGNBD fits BG/NBD to d by maximum likelihood (FHL 2005 eq. 6).
func FitBGNBD(ctx context.Context, d *Data, opts FitOptions) (BGNBD, FitResult, error) {
	p, res, err := fitBG(ctx, d, opts, false)
	if err != nil {
		return BGNBD{}, res, fmt.Errorf("fit BG/NBD: %w", err)
	}
	return BGNBD{p[0], p[1], p[2], p[3]}, res, nil
}

// FitMBGNBD fits MBG/NBD to d by maximum likelihood.
func FitMBGNBD(ctx context.Context, d *Data, opts FitOptions) (MBGNBD, FitResult, error) {
	p, res, err := fitBG(ctx, d, opts, true)
	if err != nil {
		return MBGNBD{}, res, fmt.Errorf("fit MBG/NBD: %w", err)
	}
	return MBGNBD{p[0], p[1], p[2], p[3]}, res, nil
}

func fitBG(ctx context.Context, d *Data, opts FitOptions, modified bool) ([]float64, FitResult, error) {
	if d == nil {
		return nil, FitResult{}, fmt.Errorf("%w: nil data", ErrInvalidInput)
	}
	if err := d.checkTransaction(); err != nil {
		return nil, FitResult{}, err
	}
	e := newBGEval(d, modified, opts.workers(len(d.tri)))
	var coarse objective
	if sub := d.subsample(); sub != nil {
		coarse = newBGEval(sub, modified, opts.workers(len(sub.tri))).negLL
	}
	return fitLogParams(ctx, bgNames, e.negLL, coarse, d.total, opts)
}

// LogLikelihood implements Model (FHL 2005 eq. 6).
func (m BGNBD) LogLikelihood(d *Data) float64 {
	return bgLogLikelihood(d, false, m.R, m.Alpha, m.A, m.B)
}

// LogLikelihood implements Model (lifetimes' ModifiedBetaGeoFitter likelihood).
func (m MBGNBD) LogLikelihood(d *Data) float64 {
	return bgLogLikelihood(d, true, m.R, m.Alpha, m.A, m.B)
}

func bgLogLikelihood(d *Data, modified bool, r, alpha, a, b float64) float64 {
	if d == nil || !validParams(r, alpha, a, b) {
		return math.Inf(-1)
	}
	e := newBGEval(d, modified, 1)
	g := make([]float64, 4)
	theta := []float64{math.Log(r), math.Log(alpha), math.Log(a), math.Log(b)}
	return -e.negLL(theta, g) * d.total
}

// bgEval evaluates the BG/NBD or MBG/NBD log-likelihood and its gradient.
// With L(t) = ln(1+t/α) and d = ln(a/(b+x-1)) + (r+x)·(L(T)−L(t_x)) (BG/NBD,
// x > 0) or d = ln(a/(b+x)) + (r+x)·(L(T)−L(t_x)) (MBG/NBD, all x), a
// customer's log-likelihood is
//
//	ℓ = c(x) − x ln α − (r+x) L(T) + softplus(d),
//	c(x) = lnΓ(r+x)/Γ(r) + lnΓ(b+x')/Γ(b) − lnΓ(a+b+x')/Γ(a+b),  x' = x (BG) or x+1 (MBG),
//
// (FHL 2005 eq. 6 rewritten with B(a,b+x)/B(a,b) as rising factorials, and
// r ln α − (r+x) ln(α+T) as −x ln α − (r+x) L(T): the textbook form
// subtracts two terms of size r·ln α, which leaves only rounding noise when
// a fit drifts towards the Poisson limit r, α → ∞ (no heterogeneity in the
// purchase rate), and the optimiser then "descends" into that noise). c(x)
// is computed once per distinct x and L(t) once per distinct t, so a
// triple costs one exp and one log1p.
type bgEval struct {
	d        *Data
	modified bool
	workers  int
	xf       []float64 // x as float per distinct x
	// per-evaluation tables
	lpR, dgR, lpB, dgB, lpAB, dgAB, cx, lnD []float64
	tt                                      []bgTime // per distinct time
	part                                    []bgPartial
}

// bgTime holds L(t) = ln(1+t/α) and u(t) = t/(α+t) = α·∂L/∂α side by
// side: one cache line per lookup.
type bgTime struct{ L, u float64 }

type bgPartial struct {
	ll, gr, galpha float64   // galpha is α·∂ℓ/∂α
	sig            []float64 // Σ count·σ(d) per distinct x
}

func newBGEval(d *Data, modified bool, workers int) *bgEval {
	nx, nt := len(d.xs), len(d.times)
	e := &bgEval{d: d, modified: modified, workers: workers}
	e.xf = make([]float64, nx)
	for k, x := range d.xs {
		e.xf[k] = float64(x)
	}
	for _, p := range []*[]float64{&e.lpR, &e.dgR, &e.lpB, &e.dgB, &e.lpAB, &e.dgAB, &e.cx, &e.lnD} {
		*p = make([]float64, nx)
	}
	e.tt = make([]bgTime, nt)
	e.part = make([]bgPartial, workers)
	for i := range e.part {
		e.part[i].sig = make([]float64, nx)
	}
	return e
}

// negLL returns −ℓ/N and its gradient with respect to θ = ln(r, α, a, b).
func (e *bgEval) negLL(theta, grad []float64) float64 {
	r, alpha, a, b := math.Exp(theta[0]), math.Exp(theta[1]), math.Exp(theta[2]), math.Exp(theta[3])
	if !validParams(r, alpha, a, b) {
		return math.Inf(1)
	}
	d := e.d
	off := int32(0)
	if e.modified {
		off = 1
	}
	pochTable(r, d.xs, 0, e.lpR, e.dgR)
	pochTable(b, d.xs, off, e.lpB, e.dgB)
	pochTable(a+b, d.xs, off, e.lpAB, e.dgAB)
	lna := math.Log(a)
	for k := range d.xs {
		e.cx[k] = e.lpR[k] + e.lpB[k] - e.lpAB[k]
		if n := b + e.xf[k] - 1 + float64(off); n > 0 { // BG/NBD x = 0 has no dropout term
			e.lnD[k] = lna - math.Log(n)
		}
	}
	for j, t := range d.times {
		e.tt[j] = bgTime{math.Log1p(t / alpha), t / (alpha + t)}
	}
	parallel(e.workers, len(d.tri), func(w, lo, hi int) { e.part[w] = e.sum(e.part[w], r, lo, hi) })

	// Terms constant per distinct x.
	lnAlpha := math.Log(alpha)
	var ll, gr, galpha, ga, gb float64
	for k := range d.xs {
		n := d.xCount[k]
		ll += n * (e.cx[k] - e.xf[k]*lnAlpha)
		gr += n * e.dgR[k]
		galpha -= n * e.xf[k]
		ga -= n * e.dgAB[k]
		gb += n * (e.dgB[k] - e.dgAB[k])
	}
	for _, p := range e.part {
		ll += p.ll
		gr += p.gr
		galpha += p.galpha
		for k, s := range p.sig {
			if s != 0 {
				ga += s / a
				gb -= s / (b + e.xf[k] - 1 + float64(off))
			}
		}
	}
	if !isFinite(ll) {
		return math.Inf(1)
	}
	inv := -1 / d.total
	grad[0], grad[1], grad[2], grad[3] = inv*gr*r, inv*galpha, inv*ga*a, inv*gb*b
	return inv * ll
}

// sum accumulates the per-triple terms of triples [lo, hi).
func (e *bgEval) sum(p bgPartial, r float64, lo, hi int) bgPartial {
	p.ll, p.gr, p.galpha = 0, 0, 0
	clear(p.sig)
	tt, xf, lnD := e.tt, e.xf, e.lnD
	// Triples are sorted by x: Σ count·σ for the current x stays in a register.
	cur, sigSum := int32(-1), 0.0
	for _, tr := range e.d.tri[lo:hi] {
		if tr.xi != cur {
			if cur >= 0 {
				p.sig[cur] += sigSum
			}
			cur, sigSum = tr.xi, 0
		}
		rx := r + xf[tr.xi]
		T := tt[tr.ti]
		l, gr, ga := -rx*T.L, -T.L, rx*T.u
		if e.modified || xf[tr.xi] > 0 { // BG/NBD: the dropout term needs a repeat purchase
			t := tt[tr.txi]
			dl := T.L - t.L
			sp, sig := softplus(lnD[tr.xi] + rx*dl)
			l += sp
			gr += sig * dl
			ga += sig * rx * (t.u - T.u)
			sigSum += tr.c * sig
		}
		p.ll += tr.c * l
		p.gr += tr.c * gr
		p.galpha += tr.c * ga
	}
	if cur >= 0 {
		p.sig[cur] += sigSum
	}
	return p
}

// logRatioT returns ln((α+T)/(α+t_x)) without cancellation.
func logRatioT(alpha, tx, T float64) float64 { return math.Log1p((T - tx) / (alpha + tx)) }

// sigmoidNeg returns 1/(1+e^d) without overflow.
func sigmoidNeg(d float64) float64 {
	if d > 0 {
		e := math.Exp(-d)
		return e / (1 + e)
	}
	return 1 / (1 + math.Exp(d))
}

// PAlive implements Model (FHL 2005 eq. 13; 1 when x = 0):
//
//	P(alive) = 1 / (1 + δ_{x>0} a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).
func (m BGNBD) PAlive(x int32, tx, T float64) float64 {
	if validSummary(x, tx, T) != nil || !validParams(m.R, m.Alpha, m.A, m.B) {
		return 0
	}
	if x == 0 {
		return 1
	}
	xf := float64(x)
	d := math.Log(m.A/(m.B+xf-1)) + (m.R+xf)*logRatioT(m.Alpha, tx, T)
	return finiteOr(sigmoidNeg(d), 0)
}

// PAlive implements Model (lifetimes' ModifiedBetaGeoFitter):
//
//	P(alive) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)).
func (m MBGNBD) PAlive(x int32, tx, T float64) float64 {
	if validSummary(x, tx, T) != nil || !validParams(m.R, m.Alpha, m.A, m.B) {
		return 0
	}
	xf := float64(x)
	d := math.Log(m.A/(m.B+xf)) + (m.R+xf)*logRatioT(m.Alpha, tx, T)
	return finiteOr(sigmoidNeg(d), 0)
}

// ExpectedPurchases implements Model (FHL 2005 eq. 10):
//
//	E[Y(t)|x,t_x,T] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive).
//
// See bgBracket for the evaluation, which is regular at a = 1.
func (m BGNBD) ExpectedPurchases(t float64, x int32, tx, T float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) {
		return 0
	}
	pa := m.PAlive(x, tx, T)
	if pa == 0 {
		return 0
	}
	xf := float64(x)
	return finiteOr(bgBracket(m.R+xf, m.A+m.B+xf-1, m.A, t, m.Alpha+T)*pa, 0)
}

// ExpectedPurchases implements Model (lifetimes' ModifiedBetaGeoFitter, after Wagner & Hoppe 2008):
//
//	E[Y(t)|x,t_x,T] = (a+b+x)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x+1; a+b+x; t/(α+T+t))] · P(alive).
func (m MBGNBD) ExpectedPurchases(t float64, x int32, tx, T float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) {
		return 0
	}
	pa := m.PAlive(x, tx, T)
	if pa == 0 {
		return 0
	}
	xf := float64(x)
	return finiteOr(bgBracket(m.R+xf, m.A+m.B+xf, m.A, t, m.Alpha+T)*pa, 0)
}

// ExpectedPurchasesPopulation implements Model (FHL 2005 eq. 9):
//
//	E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))].
func (m BGNBD) ExpectedPurchasesPopulation(t float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) || !validParams(m.R, m.Alpha, m.A, m.B) {
		return 0
	}
	return finiteOr(bgBracket(m.R, m.A+m.B-1, m.A, t, m.Alpha), 0)
}

// ExpectedPurchasesPopulation implements Model (lifetimes' ModifiedBetaGeoFitter):
//
//	E[X(t)] = b/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b+1; a+b; t/(α+t))].
func (m MBGNBD) ExpectedPurchasesPopulation(t float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) || !validParams(m.R, m.Alpha, m.A, m.B) {
		return 0
	}
	c := m.A + m.B
	return finiteOr(m.B/c*bgBracket(m.R, c, m.A, t, m.Alpha), 0)
}

// bgBracket returns
//
//	C/(a−1) · [1 − (1−z)^A ₂F₁(A, B; C; z)],  z = t/(h+t),  B = C − a + 1,
//
// the numerator shared by the BG/NBD and MBG/NBD expectations (h = α+T),
// never negative. Euler's transformation gives
// (1−z)^A ₂F₁(A,B;C;z) = (1+v)^(1−a) ₂F₁(C−A, a−1; C; z) with v = t/h, and
// splitting (a−1)_n = (a−1)(a)_{n−1} removes the removable singularities at
// a = 1 and C = 0:
//
//	C/(a−1)·[…] = C·L·exprel((1−a)L) − (1+v)^(1−a) · M,  L = ln(1+v),
//	M = Σ_{n≥1} (C−A)_n (a)_{n−1} / ((C+1)_{n−1} n!) · z^n.
//
// M's terms keep one sign when C−A >= −1 (r <= a+b for BG/NBD, the usual
// case) and decay like n^(a−A−2) z^n. Otherwise, or when z is within 1e-3
// of 1, the textbook form is used with ₂F₁(A, B; C; z) from log2F1Signed
// (positive terms; connection formula near z = 1), averaged over a = 1±1e-4
// near a = 1 where that form is 0/0.
func bgBracket(A, C, a, t, h float64) float64 {
	v := t / h
	L := math.Log1p(v)
	z := t / (h + t)
	if C-A >= -1 && z <= 0.999 {
		if M, ok := bgSeriesM(A, C, a, z, 1_000_000); ok {
			u := (1 - a) * L
			return math.Max(0, C*L*exprel(u)-math.Exp(u)*M)
		}
	}
	const da = 1e-4
	if math.Abs(a-1) < da {
		lo, hi := bgTextbook(A, C+1-da-a, 1-da, z), bgTextbook(A, C+1+da-a, 1+da, z)
		return math.Max(0, (lo+hi)/2)
	}
	return math.Max(0, bgTextbook(A, C, a, z))
}

// bgTextbook evaluates C/(a−1)·[1 − (1−z)^A ₂F₁(A, C−a+1; C; z)] directly (NaN on failure).
func bgTextbook(A, C, a, z float64) float64 {
	if C == 0 {
		C = 1e-12 // a removable singularity: the product C·₂F₁ is regular
	}
	l, s, err := log2F1Signed(A, C-a+1, C, z)
	if err != nil {
		return math.NaN()
	}
	return C / (a - 1) * (1 - s*math.Exp(A*math.Log1p(-z)+l))
}

// bgSeriesM sums M of bgBracket; ok is false if it does not converge or overflows.
func bgSeriesM(A, C, a, z float64, maxTerms int) (float64, bool) {
	ca := C - A
	term := ca * z
	sum := term
	nmin := 2 + math.Max(0, math.Max(-ca, math.Max(-C, -a)))
	for n := 1.0; n < float64(maxTerms); n++ {
		rho := (ca + n) * (a + n - 1) / ((C + n) * (n + 1)) * z
		term *= rho
		sum += term
		if term == 0 {
			return sum, true
		}
		if n < nmin {
			continue
		}
		rnext := math.Abs((ca + n + 1) * (a + n) / ((C + n + 1) * (n + 2)) * z)
		rmax := math.Max(rnext, z)
		if rmax < 1 && math.Abs(term)*rnext/(1-rmax) <= 1e-17*math.Abs(sum) {
			return sum, isFinite(sum)
		}
		if !isFinite(sum) {
			return 0, false
		}
	}
	return 0, false
}
