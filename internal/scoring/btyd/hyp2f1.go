package btyd

import (
	"fmt"
	"math"
)

// Log2F1 returns ln 2F1(a, b; c; z), the natural logarithm of the Gauss
// hypergeometric function
//
//	2F1(a, b; c; z) = Σ_{n>=0} (a)_n (b)_n / ((c)_n n!) z^n,
//
// for real a, b, c and z < 1 where the function is positive. It fails with
// ErrInvalidInput when c is a non-positive integer, z >= 1 or an argument is
// not finite, with ErrInvalidInput when 2F1 <= 0 (no real logarithm), and
// with ErrNotConverged when no method below reaches full precision.
//
// Methods (Abramowitz & Stegun 15.3.5 and 15.3.6; DLMF 15.8.1, 15.8.4):
//   - 0 <= z <= 0.9: the defining series, summed with running rescaling so
//     that terms never overflow even when (a)_n (b)_n grow past 1e308;
//   - z < 0: Pfaff's transformation 2F1(a,b;c;z) = (1-z)^-a 2F1(a,c-b;c;z/(z-1))
//     (or its twin with a and b swapped, whichever keeps the terms positive)
//     maps z to w = z/(z-1) in (0, 1);
//   - w or z in (0.99, 1): the connection formula in 1-z, whose series
//     converge fast there; within 1e-4 of an integer c-a-b (where its terms
//     have cancelling poles) a cubic through c-a-b = k±1e-4, k±2e-4, exact
//     to about 1e-11; if its two terms cancel, the direct series (up to
//     3·10^5 terms).
func Log2F1(a, b, c, z float64) (float64, error) {
	l, s, err := log2F1Signed(a, b, c, z)
	if err != nil {
		return 0, err
	}
	if s <= 0 {
		return 0, fmt.Errorf("%w: 2F1(%v,%v;%v;%v) <= 0 has no real logarithm", ErrInvalidInput, a, b, c, z)
	}
	return l, nil
}

// Hyp2F1 returns 2F1(a, b; c; z) under the preconditions of Log2F1, for any
// sign of the result. It fails with ErrInvalidInput when the value overflows.
func Hyp2F1(a, b, c, z float64) (float64, error) {
	l, s, err := log2F1Signed(a, b, c, z)
	if err != nil {
		return 0, err
	}
	if l > 709 {
		return 0, fmt.Errorf("%w: 2F1(%v,%v;%v;%v) overflows float64", ErrInvalidInput, a, b, c, z)
	}
	return s * math.Exp(l), nil
}

// log2F1Signed returns ln|2F1(a,b;c;z)| and its sign (+1, -1; 0 when the value is 0).
func log2F1Signed(a, b, c, z float64) (float64, float64, error) {
	switch {
	case !isFinite(a) || !isFinite(b) || !isFinite(c) || !isFinite(z):
		return 0, 0, fmt.Errorf("%w: 2F1(%v,%v;%v;%v): non-finite argument", ErrInvalidInput, a, b, c, z)
	case c <= 0 && c == math.Trunc(c):
		return 0, 0, fmt.Errorf("%w: 2F1 with c = %v, a non-positive integer", ErrInvalidInput, c)
	case z >= 1:
		return 0, 0, fmt.Errorf("%w: 2F1 needs z < 1, have %v", ErrInvalidInput, z)
	case z == 0 || a == 0 || b == 0:
		return 0, 1, nil
	case z > 0:
		return hyp2F1Unit(a, b, c, z)
	}
	// Pfaff: of the two forms pick the one whose upper parameters give the
	// fewest sign changes among the terms (none when both are >= 0), so the
	// series in w does not cancel.
	w := z / (z - 1)
	l1z := math.Log1p(-z)
	if signChanges(a)+signChanges(c-b) <= signChanges(c-a)+signChanges(b) {
		l, s, err := hyp2F1Unit(a, c-b, c, w)
		return l - a*l1z, s, err
	}
	l, s, err := hyp2F1Unit(c-a, b, c, w)
	return l - b*l1z, s, err
}

// signChanges counts the sign changes of the rising factorials (p)_n, n >= 0.
func signChanges(p float64) float64 {
	if p >= 0 {
		return 0
	}
	return math.Ceil(-p)
}

// hyp2F1Unit evaluates 2F1 for 0 < z < 1. The series needs about
// ln(1e-17)/ln(z) terms past its peak; beyond a few thousand the connection
// formula in 1-z is used when it does not cancel.
func hyp2F1Unit(a, b, c, z float64) (float64, float64, error) {
	if z > 0.99 {
		if l, s, err := hyp2F1Connection(a, b, c, z); err == nil {
			return l, s, nil
		}
	}
	return hypSeries(a, b, c, z, 300_000)
}

// hypSeries sums the defining series of 2F1(a,b;c;z), |z| < 1, returning
// ln|sum| and its sign. Terms are rescaled by 1e-250 whenever they grow past
// 1e250 and the scale is carried in log form, so large parameters (x = 500)
// do not overflow. It stops when the tail, bounded by a geometric series
// with the current term ratio, is below 1e-17 of the sum, and reports
// ErrNotConverged if that does not happen within maxTerms or if cancellation
// between terms of opposite sign destroys more than 10 digits.
func hypSeries(a, b, c, z float64, maxTerms int) (float64, float64, error) {
	const rescale = 1e250
	lnRescale := 250 * math.Ln10
	// Fail fast when the terms still shrink too slowly halfway through the
	// allowed count: the series cannot converge within maxTerms.
	if h := float64(maxTerms / 2); math.Abs((a+h)*(b+h)*z/((c+h)*(h+1))) > math.Pow(1e-17, 1/h) {
		return 0, 0, fmt.Errorf("%w: 2F1(%v,%v;%v;%v) series needs more than %d terms", ErrNotConverged, a, b, c, z, maxTerms)
	}
	sum, term, maxAbs, scale := 1.0, 1.0, 1.0, 0.0
	nmin := 2 + math.Max(0, math.Max(-a, math.Max(-b, -c)))
	az := math.Abs(z)
	for n := 0; n < maxTerms; n++ {
		fn := float64(n)
		num := (a + fn) * (b + fn)
		if num == 0 { // a or b is a non-positive integer: a polynomial
			return signedLog(sum, scale, maxAbs)
		}
		term *= num * z / ((c + fn) * (fn + 1))
		sum += term
		if math.Abs(term) > rescale {
			term, sum, maxAbs, scale = term/rescale, sum/rescale, maxAbs/rescale, scale+lnRescale
		}
		if n&7 != 7 { // the remaining bookkeeping every 8 terms keeps the loop cheap
			continue
		}
		maxAbs = math.Max(maxAbs, math.Abs(term))
		if fn+1 < nmin {
			continue
		}
		// Ratio of the next term; the tail is bounded by the larger of it and |z|.
		fn1 := fn + 1
		rnext := math.Abs((a + fn1) * (b + fn1) * z / ((c + fn1) * (fn1 + 1)))
		rmax := math.Max(rnext, az)
		if rmax < 1 && math.Abs(term)*rnext <= 1e-17*(1-rmax)*math.Abs(sum) {
			return signedLog(sum, scale, maxAbs)
		}
	}
	return 0, 0, fmt.Errorf("%w: 2F1(%v,%v;%v;%v) series did not converge in %d terms", ErrNotConverged, a, b, c, z, maxTerms)
}

// signedLog converts a rescaled sum into (ln|sum|, sign), refusing sums that
// cancelled to fewer than ~6 significant digits.
func signedLog(sum, scale, maxAbs float64) (float64, float64, error) {
	if !isFinite(sum) {
		return 0, 0, fmt.Errorf("%w: 2F1 series overflowed", ErrNotConverged)
	}
	if math.Abs(sum) < 1e-10*maxAbs {
		return 0, 0, fmt.Errorf("%w: 2F1 series cancelled (|sum| %.3g of largest term %.3g)", ErrNotConverged, math.Abs(sum), maxAbs)
	}
	if sum == 0 {
		return math.Inf(-1), 0, nil
	}
	return math.Log(math.Abs(sum)) + scale, math.Copysign(1, sum), nil
}

// lgammaSigned returns ln|Γ(x)| and sign Γ(x), with sign 0 at the poles
// (non-positive integers), where 1/Γ(x) = 0.
func lgammaSigned(x float64) (float64, float64) {
	if x <= 0 && x == math.Trunc(x) {
		return 0, 0
	}
	l, s := math.Lgamma(x)
	return l, float64(s)
}

// connDelta is the node spacing of the interpolation used when c-a-b is
// within connDelta of an integer k: the formula is evaluated at
// c-a-b = k±δ, k±2δ and interpolated by a cubic (error O(δ⁴)), each value
// costing about eps/δ relative precision through the cancelling poles.
const connDelta = 1e-4

// hyp2F1Connection evaluates 2F1(a,b;c;z) for z near 1 by A&S 15.3.6 with y = 1-z, d = c-a-b:
//
//	Γ(c)Γ(d)/(Γ(c-a)Γ(c-b)) 2F1(a,b;1-d;y) + y^d Γ(c)Γ(-d)/(Γ(a)Γ(b)) 2F1(c-a,c-b;1+d;y).
//
// At an integer d both terms have poles that cancel; near one it
// interpolates (relative error about 1e-11). It refuses results whose two
// terms cancel by more than six digits.
func hyp2F1Connection(a, b, c, z float64) (float64, float64, error) {
	d := c - a - b
	k := math.Round(d)
	if math.Abs(d-k) >= connDelta {
		return connection(a, b, c, z, 1e-6)
	}
	nodes := [4]float64{-2 * connDelta, -connDelta, connDelta, 2 * connDelta}
	var ls, ss [4]float64
	for j, h := range nodes {
		l, s, err := connection(a, b, c+(k+h-d), z, 1e-9)
		if err != nil {
			return 0, 0, err
		}
		if j > 0 && s != ss[0] {
			return 0, 0, fmt.Errorf("%w: connection formula changes sign near integer c-a-b", ErrNotConverged)
		}
		ls[j], ss[j] = l, s
	}
	m := max(ls[0], ls[1], ls[2], ls[3])
	u := d - k
	var v float64
	for j := range nodes { // Lagrange form of the cubic through the four nodes
		w := math.Exp(ls[j] - m)
		for i := range nodes {
			if i != j {
				w *= (u - nodes[i]) / (nodes[j] - nodes[i])
			}
		}
		v += w
	}
	if !(v > 0) {
		return 0, 0, fmt.Errorf("%w: connection formula interpolation failed", ErrNotConverged)
	}
	return m + math.Log(v), ss[0], nil
}

// connection is one evaluation of A&S 15.3.6; minRel is the smallest
// accepted ratio of the result to its larger term.
func connection(a, b, c, z, minRel float64) (float64, float64, error) {
	y := 1 - z
	d := c - a - b
	lc, sc := lgammaSigned(c)
	var parts [2]struct{ l, s float64 }
	for i, p := range [2]struct{ u, v, w, g1, g2, dd, pw float64 }{
		{a, b, 1 - d, c - a, c - b, d, 0},
		{c - a, c - b, 1 + d, a, b, -d, d},
	} {
		l1, s1 := lgammaSigned(p.g1)
		l2, s2 := lgammaSigned(p.g2)
		ld, sd := lgammaSigned(p.dd)
		if s1 == 0 || s2 == 0 { // 1/Γ(pole) = 0: the term vanishes
			continue
		}
		lf, sf, err := hypSeries(p.u, p.v, p.w, y, 100_000)
		if err != nil {
			return 0, 0, err
		}
		parts[i].l = lc + ld - l1 - l2 + lf + p.pw*math.Log(y)
		parts[i].s = sc * sd * s1 * s2 * sf
	}
	switch {
	case parts[0].s == 0 && parts[1].s == 0:
		return 0, 0, fmt.Errorf("%w: connection formula: both terms vanish", ErrNotConverged)
	case parts[0].s == 0:
		return parts[1].l, parts[1].s, nil
	case parts[1].s == 0:
		return parts[0].l, parts[0].s, nil
	}
	m := math.Max(parts[0].l, parts[1].l)
	v := parts[0].s*math.Exp(parts[0].l-m) + parts[1].s*math.Exp(parts[1].l-m)
	if math.Abs(v) < minRel || !isFinite(v) {
		return 0, 0, fmt.Errorf("%w: connection formula cancelled", ErrNotConverged)
	}
	return m + math.Log(math.Abs(v)), math.Copysign(1, v), nil
}
