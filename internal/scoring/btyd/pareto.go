package btyd

import (
	"context"
	"fmt"
	"math"
)

// ParetoNBD is a fitted Pareto/NBD model (Schmittlein, Morrison & Colombo
// 1987, "Counting your customers: Who are they and what will they do next?",
// Management Science 33(1)). While alive a customer buys at Poisson rate
// λ ~ Gamma(R, Alpha); her lifetime is exponential with rate μ ~ Gamma(S, Beta).
type ParetoNBD struct{ R, Alpha, S, Beta float64 }

// Name implements Model.
func (ParetoNBD) Name() ModelName { return NameParetoNBD }

// Params implements Model.
func (m ParetoNBD) Params() map[string]float64 {
	return map[string]float64{"r": m.R, "alpha": m.Alpha, "s": m.S, "beta": m.Beta}
}

var paretoNames = []string{"r", "alpha", "s", "beta"}

// FitParetoNBD fits Pareto/NBD to d by maximum likelihood.
func FitParetoNBD(ctx context.Context, d *Data, opts FitOptions) (ParetoNBD, FitResult, error) {
	if d == nil {
		return ParetoNBD{}, FitResult{}, fmt.Errorf("fit Pareto/NBD: %w: nil data", ErrInvalidInput)
	}
	if err := d.checkTransaction(); err != nil {
		return ParetoNBD{}, FitResult{}, fmt.Errorf("fit Pareto/NBD: %w", err)
	}
	e := newParetoEval(d, opts.workers(len(d.tri)))
	var coarse objective
	if sub := d.subsample(); sub != nil {
		coarse = newParetoEval(sub, opts.workers(len(sub.tri))).negLL
	}
	p, res, err := fitLogParams(ctx, paretoNames, e.negLL, coarse, d.total, opts)
	if err != nil {
		return ParetoNBD{}, res, fmt.Errorf("fit Pareto/NBD: %w", err)
	}
	return ParetoNBD{p[0], p[1], p[2], p[3]}, res, nil
}

// LogLikelihood implements Model.
func (m ParetoNBD) LogLikelihood(d *Data) float64 {
	if d == nil || !validParams(m.R, m.Alpha, m.S, m.Beta) {
		return math.Inf(-1)
	}
	e := newParetoEval(d, 1)
	g := make([]float64, 4)
	theta := []float64{math.Log(m.R), math.Log(m.Alpha), math.Log(m.S), math.Log(m.Beta)}
	return -e.negLL(theta, g) * d.total
}

// The Pareto/NBD likelihood (FHL 2005 MATLAB note, eqs. 1-3) is
//
//	L = Γ(r+x)α^r β^s/Γ(r) · [F(T) + s·∫_{t_x}^T (α+τ)^−(r+x) (β+τ)^−(s+1) dτ],
//	F(t) = (α+t)^−(r+x) (β+t)^−s.
//
// The note writes the integral with ₂F₁(r+s+x, s+1; r+s+x+1; (α−β)/(α+t))
// (α >= β) or ₂F₁(r+s+x, r+x; r+s+x+1; (β−α)/(β+t)) (α < β). Euler's
// transformation turns both into ₂F₁(1, p; q; z) = Σ (p)_n/(q)_n z^n with
// q = r+s+x+1 > p > 0, whose terms are positive and at most z^n:
//
//	(r+s+x)·∫_t^∞ … dτ = F(t)·R(t),
//	R(t) = ₂F₁(1, r+x; q; (α−β)/(α+t))                     if α >= β,
//	R(t) = (α+t)/(β+t) · ₂F₁(1, s+1; q; (β−α)/(β+t))       if α < β,
//
// so, with q_s = s/(r+s+x) and D = ln F(t_x) − ln F(T) >= 0,
//
//	ln L = lnΓ(r+x)/Γ(r) + r ln α + s ln β + ln F(T) + ln(1 − q_s R(T) + q_s e^D R(t_x)).
//
// R depends on a triple only through (x, t): it is evaluated once per
// distinct (x, t) pair by a power series whose coefficients are tabulated
// once per distinct x, with exact derivatives of the truncated series.

// paretoR returns R(t) of the comment above for one (x, t), by Log2F1 so
// that z near 1 is handled by the connection formula.
func paretoR(r, alpha, s, beta, x, t float64) (float64, error) {
	q := r + s + x + 1
	if alpha >= beta {
		l, err := Log2F1(1, r+x, q, (alpha-beta)/(alpha+t))
		return math.Exp(l), err
	}
	l, err := Log2F1(1, s+1, q, (beta-alpha)/(beta+t))
	return (alpha + t) / (beta + t) * math.Exp(l), err
}

// logS returns ln(F(T)) + ln(1 − q_s R(T) + q_s e^D R(t_x)) for one customer, and D.
func (m ParetoNBD) logS(x int32, tx, T float64) (lFT, lS, D float64, err error) {
	xf := float64(x)
	rt, err := paretoR(m.R, m.Alpha, m.S, m.Beta, xf, T)
	if err != nil {
		return 0, 0, 0, err
	}
	rtx, err := paretoR(m.R, m.Alpha, m.S, m.Beta, xf, tx)
	if err != nil {
		return 0, 0, 0, err
	}
	qs := m.S / (m.R + m.S + xf)
	D = (m.R+xf)*logRatioT(m.Alpha, tx, T) + m.S*logRatioT(m.Beta, tx, T)
	lFT = -(m.R+xf)*math.Log(m.Alpha+T) - m.S*math.Log(m.Beta+T)
	base := math.Max(1-qs*rt, 0) // > 0 in exact arithmetic
	if D < 700 {
		return lFT, math.Log(base + qs*math.Exp(D)*rtx), D, nil
	}
	return lFT, D + math.Log(qs*rtx+base*math.Exp(-D)), D, nil
}

// PAlive implements Model (lifetimes' ParetoNBDFitter; FHL 2005 note eq. 5):
//
//	P(alive) = F(T) / [F(T) + s/(r+s+x)·A₀] = 1 / (1 − q_s R(T) + q_s e^D R(t_x)).
func (m ParetoNBD) PAlive(x int32, tx, T float64) float64 {
	if validSummary(x, tx, T) != nil || !validParams(m.R, m.Alpha, m.S, m.Beta) {
		return 0
	}
	_, lS, _, err := m.logS(x, tx, T)
	if err != nil {
		return 0
	}
	return finiteOr(math.Min(1, math.Exp(-lS)), 0)
}

// ExpectedPurchases implements Model (Schmittlein et al. 1987; lifetimes'
// ParetoNBDFitter, FHL 2005 note eq. 41):
//
//	E[Y(t)|x,t_x,T] = P(alive)·(r+x)(β+T)/((α+T)(s−1))·[1 − ((β+T)/(β+T+t))^(s−1)],
//
// evaluated as P(alive)·(r+x)/(α+T)·(β+T)·w·exprel(−(s−1)w), w = ln(1+t/(β+T)),
// which is regular at s = 1.
func (m ParetoNBD) ExpectedPurchases(t float64, x int32, tx, T float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) {
		return 0
	}
	pa := m.PAlive(x, tx, T)
	if pa == 0 {
		return 0
	}
	w := math.Log1p(t / (m.Beta + T))
	v := pa * (m.R + float64(x)) / (m.Alpha + T) * (m.Beta + T) * w * exprel(-(m.S-1)*w)
	return finiteOr(v, 0)
}

// ExpectedPurchasesPopulation implements Model:
//
//	E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)].
func (m ParetoNBD) ExpectedPurchasesPopulation(t float64) float64 {
	if !(t > 0) || math.IsInf(t, 1) || !validParams(m.R, m.Alpha, m.S, m.Beta) {
		return 0
	}
	w := math.Log1p(t / m.Beta)
	return finiteOr(m.R/m.Alpha*m.Beta*w*exprel(-(m.S-1)*w), 0)
}

// paretoEval evaluates the Pareto/NBD log-likelihood and its gradient.
type paretoEval struct {
	d       *Data
	workers int
	xf      []float64
	lpR     []float64
	dgR     []float64
	// per distinct time: ln(α+t), 1/(α+t), ln(β+t), 1/(β+t)
	tab   []timeTab
	pairs []pairVal
	coef  []coefTab // per worker
	part  []paretoPartial
	fail  []bool // per worker: a series did not converge
}

type timeTab struct{ lA, iA, lB, iB float64 }

// pairVal is R(t) and its derivatives with respect to r, α, s, β.
type pairVal struct{ R, dr, da, ds, db float64 }

// coefTab holds the coefficients of ₂F₁(1,p;q;z) = Σ c_n z^n for one x and
// of its derivatives in p and q: cp_n = ∂c_n/∂p, cq_n = ∂c_n/∂q, cn_n = n·c_n.
type coefTab struct {
	c, cp, cq, cn []float64
	xi            int32 // distinct x the table was built for (-1: none)
}

type paretoPartial struct {
	ll float64
	g  [4]float64
}

// maxSeriesTerms caps the per-x power series; a θ needing more (z within
// ~1e-5 of 1, i.e. β/α < 1e-5 or α/β < 1e-5) is rejected as non-finite,
// which makes the line search step back.
const maxSeriesTerms = 200_000

func newParetoEval(d *Data, workers int) *paretoEval {
	d.pairIndex()
	e := &paretoEval{d: d, workers: workers}
	e.xf = make([]float64, len(d.xs))
	for k, x := range d.xs {
		e.xf[k] = float64(x)
	}
	e.lpR, e.dgR = make([]float64, len(d.xs)), make([]float64, len(d.xs))
	e.tab = make([]timeTab, len(d.times))
	e.pairs = make([]pairVal, len(d.pairs))
	e.coef = make([]coefTab, workers)
	e.part = make([]paretoPartial, workers)
	e.fail = make([]bool, workers)
	return e
}

// negLL returns −ℓ/N and its gradient with respect to θ = ln(r, α, s, β).
func (e *paretoEval) negLL(theta, grad []float64) float64 {
	r, alpha, s, beta := math.Exp(theta[0]), math.Exp(theta[1]), math.Exp(theta[2]), math.Exp(theta[3])
	if !validParams(r, alpha, s, beta) {
		return math.Inf(1)
	}
	d := e.d
	pochTable(r, d.xs, 0, e.lpR, e.dgR)
	for j, t := range d.times {
		e.tab[j] = timeTab{math.Log(alpha + t), 1 / (alpha + t), math.Log(beta + t), 1 / (beta + t)}
	}
	parallel(e.workers, len(d.pairs), func(w, lo, hi int) { e.fail[w] = !e.pairRange(w, r, alpha, s, beta, lo, hi) })
	for _, f := range e.fail {
		if f {
			return math.Inf(1)
		}
	}
	parallel(e.workers, len(d.tri), func(w, lo, hi int) { e.part[w] = e.sum(r, s, lo, hi) })

	lnAlpha, lnBeta := math.Log(alpha), math.Log(beta)
	ll := d.total * (r*lnAlpha + s*lnBeta)
	g := [4]float64{d.total * lnAlpha, d.total * r / alpha, d.total * lnBeta, d.total * s / beta}
	for k := range d.xs {
		ll += d.xCount[k] * e.lpR[k]
		g[0] += d.xCount[k] * e.dgR[k]
	}
	for _, p := range e.part {
		ll += p.ll
		for i := range g {
			g[i] += p.g[i]
		}
	}
	if !isFinite(ll) {
		return math.Inf(1)
	}
	inv := -1 / d.total
	grad[0], grad[1], grad[2], grad[3] = inv*g[0]*r, inv*g[1]*alpha, inv*g[2]*s, inv*g[3]*beta
	return inv * ll
}

// pairRange evaluates R and its gradient for pairs [lo, hi); false if a
// series would need more than maxSeriesTerms terms.
func (e *paretoEval) pairRange(w int, r, alpha, s, beta float64, lo, hi int) bool {
	ct := &e.coef[w]
	ct.xi = -1
	d := e.d
	for i := lo; i < hi; i++ {
		pr := d.pairs[i]
		if pr.xi != ct.xi {
			if !e.buildCoef(ct, pr.xi, i, r, alpha, s, beta) {
				return false
			}
		}
		t := d.times[pr.ti]
		e.pairs[i] = pairEval(ct, alpha, beta, t)
	}
	return true
}

// buildCoef tabulates the coefficients for distinct x index xi, long enough
// for the largest z among its pairs (the smallest t, pairs being sorted by t
// within an x, first is the index of one of them at or after the first).
func (e *paretoEval) buildCoef(ct *coefTab, xi int32, first int, r, alpha, s, beta float64) bool {
	d := e.d
	for first > int(d.pStart[xi]) { // walk back to the group's smallest t
		first--
	}
	t0 := d.times[d.pairs[first].ti]
	x := e.xf[xi]
	q := r + s + x + 1
	p, z := r+x, (alpha-beta)/(alpha+t0)
	if alpha < beta {
		p, z = s+1, (beta-alpha)/(beta+t0)
	}
	ct.xi = xi
	ct.c, ct.cp, ct.cq, ct.cn = append(ct.c[:0], 1), append(ct.cp[:0], 0), append(ct.cq[:0], 0), append(ct.cn[:0], 0)
	c, hp, hq, zn := 1.0, 0.0, 0.0, 1.0
	for n := 0.0; ; n++ {
		// c_n ≤ 1 decreases, so the tail after n is below c_n z^n·z/(1−z);
		// the derivative series carry an extra factor ln n at most.
		if c*zn*(1+hp+hq) <= 1e-17*(1-z) {
			return true
		}
		if len(ct.c) >= maxSeriesTerms {
			return false
		}
		hp += 1 / (p + n)
		hq += 1 / (q + n)
		c *= (p + n) / (q + n)
		zn *= z
		ct.c = append(ct.c, c)
		ct.cp = append(ct.cp, c*hp)
		ct.cq = append(ct.cq, -c*hq)
		ct.cn = append(ct.cn, (n+1)*c)
	}
}

// pairEval sums the tabulated series at the pair's z and applies the chain rule.
func pairEval(ct *coefTab, alpha, beta, t float64) pairVal {
	var z float64
	if alpha >= beta {
		z = (alpha - beta) / (alpha + t)
	} else {
		z = (beta - alpha) / (beta + t)
	}
	F, Fp, Fq, Fz := 1.0, 0.0, 0.0, 0.0
	zn1 := 1.0 // z^(n−1)
	for n := 1; n < len(ct.c); n++ {
		Fz += ct.cn[n] * zn1
		zn := zn1 * z
		F += ct.c[n] * zn
		Fp += ct.cp[n] * zn
		Fq += ct.cq[n] * zn
		zn1 = zn
		if ct.c[n]*zn <= 1e-17*F*(1-z) && n > 2 {
			break
		}
	}
	if alpha >= beta {
		at := alpha + t
		return pairVal{R: F, dr: Fp + Fq, da: Fz * (beta + t) / (at * at), ds: Fq, db: -Fz / at}
	}
	bt := beta + t
	rho := (alpha + t) / bt
	return pairVal{R: rho * F, dr: rho * Fq, da: (F - rho*Fz) / bt, ds: rho * (Fp + Fq), db: rho * (rho*Fz - F) / bt}
}

// sum accumulates the per-triple terms of triples [lo, hi).
func (e *paretoEval) sum(r, s float64, lo, hi int) paretoPartial {
	var p paretoPartial
	tab, pairs, xf, pref := e.tab, e.pairs, e.xf, e.d.pref[lo:hi]
	for i, tr := range e.d.tri[lo:hi] {
		rx := r + xf[tr.xi]
		A := rx + s
		qs := s / A
		dq := [4]float64{-s / (A * A), 0, rx / (A * A), 0}
		tT, tt := tab[tr.ti], tab[tr.txi]
		pT, pt := pairs[pref[i].pt], pairs[pref[i].ptx]
		// D = (r+x)(ln(α+T) − ln(α+t_x)) + s(ln(β+T) − ln(β+t_x)) and its gradient.
		dD := [4]float64{tT.lA - tt.lA, rx * (tT.iA - tt.iA), tT.lB - tt.lB, s * (tT.iB - tt.iB)}
		D := rx*dD[0] + s*dD[2]
		lF := -rx*tT.lA - s*tT.lB
		dF := [4]float64{-tT.lA, -rx * tT.iA, -tT.lB, -s * tT.iB}
		dRT := [4]float64{pT.dr, pT.da, pT.ds, pT.db}
		dRt := [4]float64{pt.dr, pt.da, pt.ds, pt.db}
		base := 1 - qs*pT.R
		var S, ll float64
		var dS [4]float64
		if D < 700 {
			E := math.Exp(D)
			S = base + qs*E*pt.R
			for i := range dS {
				dS[i] = -dq[i]*pT.R - qs*dRT[i] + E*(dq[i]*pt.R+qs*(dD[i]*pt.R+dRt[i]))
			}
			ll = lF + fastLog(S)
		} else { // factor out e^D: S' = q_s R(t_x) + base·e^−D
			E := math.Exp(-D)
			S = qs*pt.R + base*E
			for i := range dS {
				dS[i] = dq[i]*pt.R + qs*dRt[i] + E*(-dq[i]*pT.R-qs*dRT[i]-base*dD[i]) + dD[i]*S
			}
			ll = lF + D + fastLog(S)
		}
		if !(S > 0) {
			p.ll = math.Inf(-1)
			return p
		}
		p.ll += tr.c * ll
		w := tr.c / S
		for i := range p.g {
			p.g[i] += tr.c*dF[i] + w*dS[i]
		}
	}
	return p
}
