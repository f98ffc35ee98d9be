package btyd

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mathext"
)

// GammaGamma is a fitted Gamma-Gamma spend model (Fader, Hardie & Lee 2005,
// "RFM and CLV: Using iso-value curves for customer base analysis", JMR
// 42(4); Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value").
// A customer's transaction values are z ~ Gamma(P, rate ν) with
// ν ~ Gamma(Q, rate V) across customers, independent of the transaction
// process; so the mean transaction value is E[z] = P·V/(Q−1) for Q > 1.
type GammaGamma struct{ P, Q, V float64 }

// Params returns "p", "q", "v".
func (m GammaGamma) Params() map[string]float64 {
	return map[string]float64{"p": m.P, "q": m.Q, "v": m.V}
}

// Spend is the spend summary of customers with x > 0 repeat purchases whose
// mean repeat transaction value is M (the first purchase excluded), with the
// number of customers sharing it.
type Spend struct {
	X     int32
	M     float64
	Count float64
}

// SpendData is the Gamma-Gamma fit input; build it with NewSpendData.
type SpendData struct {
	total  float64
	xs     []int32   // distinct x ascending
	xCount []float64 // Σ count per distinct x
	xStart []int32   // the entries of xs[k] are [xStart[k], xStart[k+1])
	xm     []float64 // per entry: x·m
	count  []float64 // per entry: count; nil when every count is 1
	// Σ c·ln m, Σ c·x·ln m, Σ c·x·ln x: the terms that do not depend on (q, v).
	sLnM, sXLnM, sXLnX float64
}

// NewSpendData validates spends and precomputes what the likelihood needs.
// Entries with X = 0 are skipped (they carry no spend information). It fails
// with ErrInvalidInput on X < 0, a non-finite M or a non-positive count,
// with ErrDegenerate on M <= 0 (zero amounts) or no entries left, and with
// ErrNotIdentifiable when the mean values do not vary between customers
// (coefficient of variation below 1e-9): the likelihood then has no maximum,
// only a ridge to q, v → ∞.
//
// Spends sorted by X (as internal/scoring builds them) are read in place;
// others are first sorted (stably) by X. The spends are not retained: d
// keeps 8 bytes per entry (16 when some count is not 1).
func NewSpendData(spends []Spend) (*SpendData, error) {
	n, sorted, ones := 0, true, true
	var prev int32
	for _, s := range spends {
		switch {
		case s.X < 0 || !isFinite(s.M) || !(s.Count > 0) || math.IsInf(s.Count, 1):
			return nil, fmt.Errorf("new spend data: %w: %+v", ErrInvalidInput, s)
		case s.X == 0:
			continue
		case s.M <= 0:
			return nil, fmt.Errorf("new spend data: %w: monetary value %v <= 0", ErrDegenerate, s.M)
		}
		if s.X < prev {
			sorted = false
		}
		prev = s.X
		ones = ones && s.Count == 1
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("new spend data: %w: no customer with repeat purchases", ErrDegenerate)
	}
	if !sorted {
		kept := make([]Spend, 0, n)
		for _, s := range spends {
			if s.X > 0 {
				kept = append(kept, s)
			}
		}
		slices.SortStableFunc(kept, func(a, b Spend) int { return cmp.Compare(a.X, b.X) })
		spends = kept
	}
	nx := 0
	prev = 0
	for _, s := range spends {
		if s.X > prev {
			nx++
			prev = s.X
		}
	}
	d := &SpendData{
		xs: make([]int32, 0, nx), xCount: make([]float64, 0, nx), xStart: make([]int32, 0, nx+1),
		xm: make([]float64, 0, n),
	}
	if !ones {
		d.count = make([]float64, 0, n)
	}
	var sum, sum2 float64
	for _, s := range spends {
		if s.X == 0 {
			continue
		}
		if len(d.xs) == 0 || d.xs[len(d.xs)-1] != s.X {
			d.xs = append(d.xs, s.X)
			d.xCount = append(d.xCount, 0)
			d.xStart = append(d.xStart, int32(len(d.xm)))
		}
		d.xCount[len(d.xs)-1] += s.Count
		x := float64(s.X)
		d.xm = append(d.xm, x*s.M)
		if !ones {
			d.count = append(d.count, s.Count)
		}
		lm := math.Log(s.M)
		d.total += s.Count
		d.sLnM += s.Count * lm
		d.sXLnM += s.Count * x * lm
		sum += s.Count * s.M
		sum2 += s.Count * s.M * s.M
	}
	d.xStart = append(d.xStart, int32(len(d.xm)))
	for k, x := range d.xs {
		xf := float64(x)
		d.sXLnX += d.xCount[k] * xf * math.Log(xf)
	}
	mean := sum / d.total
	if v := sum2/d.total - mean*mean; !(v > 1e-18*mean*mean) {
		return nil, fmt.Errorf("new spend data: %w: monetary value does not vary between customers (mean %v)", ErrNotIdentifiable, mean)
	}
	if d.total <= 1 {
		return nil, fmt.Errorf("new spend data: %w: a single customer", ErrDegenerate)
	}
	return d, nil
}

// Customers returns the total count of customers in d.
func (d *SpendData) Customers() float64 { return d.total }

var ggNames = []string{"p", "q", "v"}

// identifiableMax bounds q and v: beyond it the fit has run along the ridge
// q, v → ∞ with v/q fixed that appears when spend hardly varies between
// customers, and the parameters mean nothing.
const identifiableMax = 1e6

// FitGammaGamma fits the Gamma-Gamma model by maximum likelihood (Fader &
// Hardie 2013, eq. 1a). Besides the errors of NewSpendData it returns
// ErrNotIdentifiable (wrapped) when q or v run past 1e6, which is how a
// ridge shows, and ErrNotConverged.
func FitGammaGamma(ctx context.Context, d *SpendData, opts FitOptions) (GammaGamma, FitResult, error) {
	if d == nil {
		return GammaGamma{}, FitResult{}, fmt.Errorf("fit Gamma-Gamma: %w: nil data", ErrInvalidInput)
	}
	p, res, err := fitLogParams(ctx, ggNames, func(th, g []float64) float64 { return ggNegLL(d, th, g) }, nil, d.total, opts)
	if len(p) == 3 && (p[1] > identifiableMax || p[2] > identifiableMax) {
		res.Converged = false
		res.Reason = fmt.Sprintf("q = %.3g, v = %.3g diverge along a ridge", p[1], p[2])
		return GammaGamma{}, res, fmt.Errorf("fit Gamma-Gamma: %w: %s", ErrNotIdentifiable, res.Reason)
	}
	if err != nil {
		return GammaGamma{}, res, fmt.Errorf("fit Gamma-Gamma: %w", err)
	}
	return GammaGamma{p[0], p[1], p[2]}, res, nil
}

// LogLikelihood returns the log-likelihood of d (-Inf for invalid parameters):
//
//	Σ lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln v + (px−1) ln m + px ln x − (px+q) ln(v+xm).
func (m GammaGamma) LogLikelihood(d *SpendData) float64 {
	if d == nil || !validParams(m.P, m.Q, m.V) {
		return math.Inf(-1)
	}
	g := make([]float64, 3)
	return -ggNegLL(d, []float64{math.Log(m.P), math.Log(m.Q), math.Log(m.V)}, g) * d.total
}

// ggNegLL returns −ℓ/N and its gradient in θ = ln(p, q, v); lnΓ and ψ are
// evaluated once per distinct x, leaving one log per customer.
func ggNegLL(d *SpendData, theta, grad []float64) float64 {
	p, q, v := math.Exp(theta[0]), math.Exp(theta[1]), math.Exp(theta[2])
	if !validParams(p, q, v) {
		return math.Inf(1)
	}
	lgq, _ := math.Lgamma(q)
	psiq := mathext.Digamma(q)
	lnv := math.Log(v)
	ll := d.total*(q*lnv-lgq) + p*(d.sXLnM+d.sXLnX) - d.sLnM
	gp := d.sXLnM + d.sXLnX
	gq := d.total * (lnv - psiq)
	gv := d.total * q / v
	for k, x := range d.xs {
		xf := float64(x)
		px := p * xf
		n := d.xCount[k]
		ll += n * lnGammaDiff(px, q) // lnΓ(px+q) − lnΓ(px)
		psiPQ := mathext.Digamma(px + q)
		gp += n * xf * (psiPQ - mathext.Digamma(px))
		gq += n * psiPQ
		// Per customer: ln(v + x·m) and 1/(v + x·m), summed per x.
		lo, hi := d.xStart[k], d.xStart[k+1]
		var sl, sw float64
		if d.count == nil {
			for _, xm := range d.xm[lo:hi] {
				w := v + xm
				sl += fastLog(w)
				sw += 1 / w
			}
		} else {
			for i, xm := range d.xm[lo:hi] {
				c, w := d.count[int(lo)+i], v+xm
				sl += c * fastLog(w)
				sw += c / w
			}
		}
		a := px + q
		ll -= a * sl
		gp -= xf * sl
		gq -= sl
		gv -= a * sw
	}
	if !isFinite(ll) {
		return math.Inf(1)
	}
	inv := -1 / d.total
	grad[0], grad[1], grad[2] = inv*gp*p, inv*gq*q, inv*gv*v
	return inv * ll
}

// ExpectedSpend returns the conditional expected mean transaction value of a
// customer with x repeat purchases of mean value m (Fader & Hardie 2013 eq. 5):
//
//	E[M | x, m] = p(v + x·m)/(p·x + q − 1)
//	            = (q−1)/(px+q−1) · pv/(q−1) + px/(px+q−1) · m,
//
// a weighted mean of the population mean pv/(q−1) and the customer's own
// mean. For x = 0 it is the population mean. It returns 0 when that mean
// does not exist (p·x + q <= 1) or the input is invalid (x < 0; m < 0 or
// not finite).
func (m GammaGamma) ExpectedSpend(x int32, mean float64) float64 {
	if x < 0 || !(mean >= 0) || math.IsInf(mean, 1) || !validParams(m.P, m.Q, m.V) {
		return 0
	}
	xf := float64(x)
	if x == 0 {
		mean = 0
	}
	den := m.P*xf + m.Q - 1
	if !(den > 0) {
		return 0
	}
	return finiteOr(m.P*(m.V+xf*mean)/den, 0)
}

// MeanSpend returns the population mean transaction value p·v/(q−1), or 0
// when it does not exist (q <= 1).
func (m GammaGamma) MeanSpend() float64 { return m.ExpectedSpend(0, 0) }
