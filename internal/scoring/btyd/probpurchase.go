package btyd

import "math"

// ProbPurchase implements Model:
//
//	P(Y(t) > 0 | x, t_x, T) = P(alive) · (1 − ((α+T)/(α+T+t))^(r+x)).
//
// A BG/NBD customer drops out only right after a purchase, so one alive at
// T with rate λ makes no purchase in (T, T+t] with probability e^(−λt);
// given alive, λ's posterior is Gamma(r+x, α+T) (the alive branch's
// likelihood is (1−p)^x λ^x e^(−λT), and p is independent of λ), whose
// Laplace transform at t is ((α+T)/(α+T+t))^(r+x).
func (m BGNBD) ProbPurchase(t float64, x int32, tx, T float64) float64 {
	return bgProbPurchase(m.PAlive(x, tx, T), m.R, m.Alpha, t, x, T)
}

// ProbPurchase implements Model, as BGNBD's: the MBG/NBD's alive branch,
// (1−p)^(x+1) λ^x e^(−λT), gives λ the same posterior given alive.
func (m MBGNBD) ProbPurchase(t float64, x int32, tx, T float64) float64 {
	return bgProbPurchase(m.PAlive(x, tx, T), m.R, m.Alpha, t, x, T)
}

func bgProbPurchase(pAlive, r, alpha, t float64, x int32, T float64) float64 {
	if !(t > 0) || pAlive == 0 {
		return 0
	}
	if math.IsInf(t, 1) {
		return pAlive
	}
	// 1 − ((α+T)/(α+T+t))^(r+x) = −expm1(−(r+x)·log1p(t/(α+T))), exact for small t.
	none := -math.Expm1(-(r + float64(x)) * math.Log1p(t/(alpha+T)))
	return finiteOr(pAlive*none, 0)
}

// ProbPurchase implements Model. A Pareto/NBD customer alive at T with
// rates λ and μ (exponential lifetime, memoryless) purchases in (T, T+t]
// with probability λ/(λ+μ)·(1 − e^(−(λ+μ)t)); given alive, λ and μ are
// independent Gamma(r+x, α+T) and Gamma(s, β+T). The e^(−(λ+μ)t) factor
// tilts both rates by t, so
//
//	P(Y(t) > 0 | x, t_x, T) = P(alive)·[G(α+T, β+T) − ((α+T)/(α+T+t))^(r+x) ((β+T)/(β+T+t))^s G(α+T+t, β+T+t)],
//
// with G(a, b) = E[λ/(λ+μ)] for λ ~ Gamma(r+x, a), μ ~ Gamma(s, b) (see
// gammaShare).
func (m ParetoNBD) ProbPurchase(t float64, x int32, tx, T float64) float64 {
	if !(t > 0) {
		return 0
	}
	pa := m.PAlive(x, tx, T)
	if pa == 0 {
		return 0
	}
	r := m.R + float64(x)
	a, b := m.Alpha+T, m.Beta+T
	g0, ok0 := gammaShare(r, a, m.S, b)
	if math.IsInf(t, 1) {
		return finiteOr(pa*g0, 0)
	}
	gt, okt := gammaShare(r, a+t, m.S, b+t)
	if !ok0 || !okt {
		return 0
	}
	tilt := math.Exp(-r*math.Log1p(t/a) - m.S*math.Log1p(t/b))
	return finiteOr(pa*math.Max(0, g0-tilt*gt), 0)
}

// gammaShare returns E[λ/(λ+μ)] for independent λ ~ Gamma(r, rate a) and
// μ ~ Gamma(s, rate b). With λ = X/a, μ = Y/b and B = X/(X+Y) ~ Beta(r, s),
// λ/(λ+μ) = B/(B + c(1−B)), c = a/b, whose mean is Euler's integral
//
//	(1/c)·r/(r+s)·₂F₁(1, r+1; r+s+1; 1 − 1/c).
//
// For c < 1 the argument is negative (Hyp2F1 maps it by Pfaff's
// transformation); the complement E[μ/(λ+μ)] with the roles swapped keeps
// it in [0, 1) otherwise, where the series converges — whichever is used,
// the result is the same.
func gammaShare(r, a, s, b float64) (float64, bool) {
	c := a / b
	if c < 1 {
		v, ok := gammaShare(s, b, r, a)
		return 1 - v, ok
	}
	f, err := Hyp2F1(1, r+1, r+s+1, 1-1/c)
	if err != nil {
		return 0, false
	}
	return r / (r + s) * f / c, true
}
