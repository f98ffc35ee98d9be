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
// (1−p)^(x+1) λ^x e^(−λT), gives λ the same posterior given alive, and a
// customer alive at T can again drop out only after her next purchase.
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
// with probability λ/(λ+μ)·(1 − e^(−(λ+μ)t)), the chance that the first
// purchase comes before both death and T+t; given alive, λ and μ are
// independent Gamma(r+x, α+T) and Gamma(s, β+T) (the alive branch's
// likelihood is λ^x e^(−λT) e^(−μT)). So
//
//	P(Y(t) > 0 | x, t_x, T) = P(alive) · E[λ/(λ+μ)·(1 − e^(−(λ+μ)t))]
//
// and t → ∞ gives P(alive)·E[λ/(λ+μ)] (< P(alive): a living customer may
// die before buying again). paretoBuyAlive evaluates the expectation.
func (m ParetoNBD) ProbPurchase(t float64, x int32, tx, T float64) float64 {
	if !(t > 0) {
		return 0
	}
	pa := m.PAlive(x, tx, T)
	if pa == 0 {
		return 0
	}
	v, ok := paretoBuyAlive(m.R+float64(x), m.Alpha+T, m.S, m.Beta+T, t)
	if !ok {
		return 0
	}
	return finiteOr(pa*math.Min(v, 1), 0) // v <= G <= 1 up to rounding
}

// paretoBuyAlive returns E[λ/(λ+μ)·(1 − e^(−(λ+μ)t))] for independent
// λ ~ Gamma(r, rate a) and μ ~ Gamma(s, rate b), t > 0 (+Inf allowed).
// Writing λ/(λ+μ)·(1 − e^(−(λ+μ)t)) = ∫₀ᵗ λ e^(−λu) e^(−μu) du and taking
// the expectation under the integral,
//
//	E[…] = (r/a) ∫₀ᵗ (1+u/a)^(−(r+1)) (1+u/b)^(−s) du,
//
// a positive, decreasing integrand (the density of the first purchase
// time, Lomax(r, a), times the survival function of the lifetime). Three
// evaluations, in order of preference:
//   - paretoBuySeries: a series of positive terms with ratio
//     z = |a−b|/max(a,b), exact for every t (no cancellation at small t),
//     when it needs at most seriesBudget terms: z up to about 0.8, i.e.
//     (α+T)/(β+T) between 1/5 and 5, which covers typical fits;
//   - paretoBuyQuad: adaptive Gauss–Kronrod quadrature of the integral,
//     1–15 µs, 1e-12 relative;
//   - the closed form G(a,b) − (a/(a+t))^r (b/(b+t))^s G(a+t,b+t) with
//     G = E[λ/(λ+μ)] from gammaShare (the factor e^(−(λ+μ)t) tilts both
//     Gamma rates by t), should the quadrature fail (t = ∞ with a tail too
//     heavy to truncate, r+s near 0). It cancels when t is far below the
//     purchase and death time scales; the result is then floored at 0.
func paretoBuyAlive(r, a, s, b, t float64) (float64, bool) {
	if v, ok := paretoBuySeries(r, a, s, b, t); ok {
		return v, true
	}
	if v, ok := paretoBuyQuad(r, a, s, b, t); ok {
		return v, true
	}
	g0, ok := gammaShare(r, a, s, b)
	if !ok {
		return 0, false
	}
	if math.IsInf(t, 1) {
		return g0, true
	}
	gt, ok := gammaShare(r, a+t, s, b+t)
	if !ok {
		return 0, false
	}
	tilt := math.Exp(-r*math.Log1p(t/a) - s*math.Log1p(t/b))
	return math.Max(0, g0-tilt*gt), true
}

// seriesBudget caps paretoBuySeries (about 1µs); beyond it the quadrature
// is cheaper.
const seriesBudget = 200

// paretoBuySeries evaluates paretoBuyAlive's integral as a series. With
// m = r+s, for a >= b write 1+u/b = (1+u/a)·(a/b)·(1 − z/(1+u/a)),
// z = 1 − b/a, and expand (1 − z/(1+u/a))^(−s) binomially; each term
// integrates in closed form:
//
//	E = r (b/a)^s Σ_{n≥0} (s)_n/n! z^n (1 − q^(m+n))/(m+n),  q = a/(a+t).
//
// For a < b the roles swap (the exponent of 1+u/a is r+1):
//
//	E = r (a/b)^r Σ_{n≥0} (r+1)_n/n! z^n (1 − q^(m+n))/(m+n),  z = 1 − a/b, q = b/(b+t).
//
// All terms are positive, e_n = 1 − q^(m+n) follows the positive recurrence
// e_{n+1} = (1−q) + q·e_n from e_0 = −expm1(m·ln q), and e_n/(m+n)
// decreases in n, so the tail after term n is at most term·R/(1−R) with
// R = z·max(1, (p+n)/(n+1)), p = s or r+1. At t = ∞ the sum is G(a,b).
// ok is false when more than seriesBudget terms would be needed.
func paretoBuySeries(r, a, s, b, t float64) (float64, bool) {
	m := r + s
	p, z, h, lnPre := s, (a-b)/a, a, s*math.Log(b/a)
	if a < b {
		p, z, h, lnPre = r+1, (b-a)/b, b, r*math.Log(a/b)
	}
	// Terms rise until n ≈ (p−1)z/(1−z), then shrink by about z each.
	if z > 0 {
		peak := math.Max(0, (p-1)*z/(1-z))
		if !(peak-40/math.Log(z) <= seriesBudget) {
			return 0, false
		}
	}
	q, oneMinusQ, e := 0.0, 1.0, 1.0 // t = ∞
	if !math.IsInf(t, 1) {
		q, oneMinusQ = h/(h+t), t/(h+t)
		e = -math.Expm1(-m * math.Log1p(t/h))
	}
	const rescale = 1e200
	c, sum, scale := 1.0, 0.0, lnPre
	for n := 0.0; n <= 2*seriesBudget; n++ {
		term := c * e / (m + n)
		sum += term
		R := z * math.Max(1, (p+n)/(n+1)) // bounds every later term ratio
		if R == 0 || (R < 1 && term*R <= 1e-17*(1-R)*sum) {
			return finiteOr(r*math.Exp(scale+math.Log(sum)), 0), sum > 0
		}
		c *= (p + n) / (n + 1) * z
		e = oneMinusQ + q*e
		if c > rescale {
			c, sum, scale = c/rescale, sum/rescale, scale+math.Log(rescale)
		}
	}
	return 0, false
}

// paretoBuyQuad integrates paretoBuyAlive's integral over v = ln(1+u/d),
// u = d·expm1(v), d = min(a/(r+1), b/(s+1)), where the integrand
//
//	(r/a) (1+u/a)^(−(r+1)) (1+u/b)^(−s) (d+u)
//
// is analytic in the strip |Im v| < π (the branch points u = −a, −b map to
// Im v = ±π as d <= a, b), and d, the shorter of the two factors' e-folding
// scales, keeps its slope near −1 or gentler wherever it is not negligible.
// Globally adaptive Gauss–Kronrod (7, 15) runs until |Kronrod − Gauss|
// sums to 1e-9 of the result (the Kronrod value is far more accurate: 1e-12
// against 60-digit references). For t = ∞ or huge t the range stops at the
// U where the bound ∫_U^∞ ≤ r a^r b^s U^(−(r+s))/(r+s) (from 1+u/c >= u/c)
// falls below 1e-13 of d·g(d) <= ∫₀^d. ok is false if that needs v > 1000
// (r+s near 0) or the estimate is not reached within 200 subintervals.
func paretoBuyQuad(r, a, s, b, t float64) (float64, bool) {
	d := math.Min(a/(r+1), b/(s+1))
	if !(d > 0) {
		return 0, false
	}
	lnC, lnD := math.Log(r/a), math.Log(d)
	lnG := func(u float64) float64 { return lnC - (r+1)*math.Log1p(u/a) - s*math.Log1p(u/b) }
	V := math.Log1p(t / d)
	m := r + s
	lnTail := math.Log(r) + r*math.Log(a) + s*math.Log(b) - math.Log(m) // + −m·ln U
	lnLow := lnD + lnG(d)
	// ln(U/d) for U = d·expm1(vCap); vCap = softplus(ln(U/d)).
	if x := (lnTail-lnLow+13*math.Ln10)/m - lnD; x > 0 {
		V = math.Min(V, x+math.Log1p(math.Exp(-x)))
	} else {
		V = math.Min(V, math.Log1p(math.Exp(x)))
	}
	if !(V > 0) || V > 1000 {
		return 0, false
	}
	f := func(v float64) float64 {
		return math.Exp(lnG(d*math.Expm1(v)) + lnD + v) // d+u = d·e^v
	}
	return adaptiveGK15(f, 0, V, 1e-9, 200)
}

// Gauss–Kronrod (7, 15) nodes on [−1, 1] (xgk[1], xgk[3], xgk[5], xgk[7]
// are the Gauss nodes), Kronrod weights and Gauss weights (QUADPACK qk15).
var (
	gkNodes = [8]float64{
		0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
		0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
		0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
		0.207784955007898467600689403773245, 0,
	}
	gkWeights = [8]float64{
		0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
		0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
		0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
		0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
	}
	gaussWeights = [4]float64{
		0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
		0.381830050505118944950369775488975, 0.417959183673469387755102040816327,
	}
)

// gk15 returns the Kronrod estimate of ∫ f over [lo, hi] and |Kronrod − Gauss|.
func gk15(f func(float64) float64, lo, hi float64) (float64, float64) {
	c, h := (lo+hi)/2, (hi-lo)/2
	fc := f(c)
	k, g := gkWeights[7]*fc, gaussWeights[3]*fc
	for j := range 7 {
		dx := h * gkNodes[j]
		s := f(c-dx) + f(c+dx)
		k += gkWeights[j] * s
		if j%2 == 1 {
			g += gaussWeights[j/2] * s
		}
	}
	return k * h, math.Abs(k-g) * h
}

// adaptiveGK15 integrates f over [lo, hi], bisecting the subinterval with
// the largest error estimate until the summed estimate is below rel of the
// result or maxIntervals is reached (then ok is false).
func adaptiveGK15(f func(float64) float64, lo, hi, rel float64, maxIntervals int) (float64, bool) {
	type piece struct{ lo, hi, val, err float64 }
	v, e := gk15(f, lo, hi)
	pieces := []piece{{lo, hi, v, e}}
	for len(pieces) < maxIntervals {
		var total, errSum float64
		worst := 0
		for i, p := range pieces {
			total += p.val
			errSum += p.err
			if p.err > pieces[worst].err {
				worst = i
			}
		}
		if !isFinite(total) {
			return 0, false
		}
		if errSum <= rel*math.Abs(total) {
			return total, true
		}
		p := pieces[worst]
		mid := (p.lo + p.hi) / 2
		v1, e1 := gk15(f, p.lo, mid)
		v2, e2 := gk15(f, mid, p.hi)
		pieces[worst] = piece{p.lo, mid, v1, e1}
		pieces = append(pieces, piece{mid, p.hi, v2, e2})
	}
	return 0, false
}

// gammaShare returns G(a, b) = E[λ/(λ+μ)] for independent λ ~ Gamma(r,
// rate a) and μ ~ Gamma(s, rate b). With λ = X/a, μ = Y/b and
// B = X/(X+Y) ~ Beta(r, s), λ/(λ+μ) = B/(B + c(1−B)), c = a/b, whose mean
// is Euler's integral (1/c)·r/(r+s)·₂F₁(1, r+1; r+s+1; 1 − 1/c). For c < 1
// Pfaff's transformation turns it into r/(r+s)·₂F₁(1, s; r+s+1; 1 − c):
//
//	G = r/(r+s) · (b/a)·₂F₁(1, r+1; r+s+1; 1 − b/a)   (a >= b),
//	G = r/(r+s) · ₂F₁(1, s; r+s+1; 1 − a/b)           (a < b),
//
// both with an argument in [0, 1) and positive terms, so a small G keeps
// its relative precision (no 1 − E[μ/(λ+μ)]).
func gammaShare(r, a, s, b float64) (float64, bool) {
	var f float64
	var err error
	if a >= b {
		f, err = Hyp2F1(1, r+1, r+s+1, 1-b/a)
		f *= b / a
	} else {
		f, err = Hyp2F1(1, s, r+s+1, 1-a/b)
	}
	if err != nil || !isFinite(f) {
		return 0, false
	}
	return r / (r + s) * f, true
}
