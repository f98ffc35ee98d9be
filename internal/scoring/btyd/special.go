package btyd

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// stirlingMin is the argument above which lnΓ and ψ differences use the
// Stirling series: at y >= 30 the first omitted term is below 1e-16.
const stirlingMin = 30

// stirCorr is lnΓ(y) - [(y-½)ln y - y + ½ln 2π], the Stirling correction, for y >= stirlingMin.
func stirCorr(y float64) float64 {
	y2 := 1 / (y * y)
	return (1.0/12 - y2*(1.0/360-y2*(1.0/1260-y2*(1.0/1680)))) / y
}

// lnGammaDiff returns lnΓ(w+g) - lnΓ(w) for w > 0, g >= 0. For large w it
// avoids subtracting two huge lnΓ values (which loses absolute precision
// exactly where a fit drifts to large a or b) by differencing the Stirling
// series analytically: (w-½)·log1p(g/w) + g·(ln(w+g)-1) + corr(w+g) - corr(w).
func lnGammaDiff(w, g float64) float64 {
	if g == 0 {
		return 0
	}
	if w >= stirlingMin {
		return (w-0.5)*math.Log1p(g/w) + g*(math.Log(w+g)-1) + stirCorr(w+g) - stirCorr(w)
	}
	lw, _ := math.Lgamma(w)
	lg, _ := math.Lgamma(w + g)
	return lg - lw
}

// digammaTail is ψ(y) - ln y for y >= stirlingMin (asymptotic series).
func digammaTail(y float64) float64 {
	y2 := 1 / (y * y)
	return -0.5/y - y2*(1.0/12-y2*(1.0/120-y2*(1.0/252-y2*(1.0/240))))
}

// digammaDiff returns ψ(w+g) - ψ(w) for w > 0, g >= 0.
func digammaDiff(w, g float64) float64 {
	if g == 0 {
		return 0
	}
	if w >= stirlingMin {
		return math.Log1p(g/w) + digammaTail(w+g) - digammaTail(w)
	}
	return mathext.Digamma(w+g) - mathext.Digamma(w)
}

// pochTable fills, for n_k = xs[k]+off with xs ascending and non-negative,
//
//	lp[k] = lnΓ(z+n_k) - lnΓ(z) = Σ_{j<n_k} ln(z+j)   (log rising factorial)
//	dg[k] = ψ(z+n_k) - ψ(z)     = Σ_{j<n_k} 1/(z+j)
//
// walking the sorted x values once. Small gaps are summed term by term,
// which is exact to rounding and far cheaper than lnΓ per customer; large
// gaps use lnGammaDiff/digammaDiff. Either dg or lp may be nil.
func pochTable(z float64, xs []int32, off int32, lp, dg []float64) {
	var accL, accD float64
	prev := 0
	for k, x := range xs {
		n := int(x + off)
		if g := n - prev; g <= 64 {
			for j := prev; j < n; j++ {
				w := z + float64(j)
				if lp != nil {
					accL += math.Log(w)
				}
				accD += 1 / w
			}
		} else {
			w := z + float64(prev)
			if lp != nil {
				accL += lnGammaDiff(w, float64(g))
			}
			accD += digammaDiff(w, float64(g))
		}
		prev = n
		if lp != nil {
			lp[k] = accL
		}
		if dg != nil {
			dg[k] = accD
		}
	}
}

// softplus returns ln(1+e^d) without overflow, and σ(d) = 1/(1+e^-d), its
// derivative, from one exp and a table-driven log1p on [0, 1] (log1pUnit):
// this pair is the hottest code of BG/NBD fits, and math.Log1p is several
// times slower for no gain in accuracy.
func softplus(d float64) (sp, sig float64) {
	e := math.Exp(-math.Abs(d))
	l := log1pUnit(e)
	inv := 1 / (1 + e)
	if d >= 0 {
		return d + l, inv
	}
	return l, e * inv
}

// exprel returns (e^u - 1)/u, continuous at u = 0.
func exprel(u float64) float64 {
	if math.Abs(u) < 1e-5 {
		return 1 + u*(0.5+u/6)
	}
	return math.Expm1(u) / u
}

// isFinite reports whether v is neither NaN nor ±Inf.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
