package btyd

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// SimulateBGNBD draws one customer's repeat purchase times in (0, T] under
// BG/NBD's generative story (FHL 2005 §3): λ ~ Gamma(R, rate Alpha) and
// p ~ Beta(A, B) for the customer; purchases follow a Poisson process with
// rate λ from the first purchase at time 0; after each repeat purchase the
// customer drops out with probability p. Times are ascending. Parameters
// must be positive and T >= 0; otherwise it returns nil.
func SimulateBGNBD(rng *rand.Rand, m BGNBD, T float64) []float64 {
	return simulateBeta(rng, m.R, m.Alpha, m.A, m.B, T, false)
}

// SimulateMBGNBD draws repeat purchase times under MBG/NBD: as BG/NBD, but
// the customer may also drop out right after the first purchase (at time 0).
func SimulateMBGNBD(rng *rand.Rand, m MBGNBD, T float64) []float64 {
	return simulateBeta(rng, m.R, m.Alpha, m.A, m.B, T, true)
}

func simulateBeta(rng *rand.Rand, r, alpha, a, b, T float64, dropAtFirst bool) []float64 {
	if rng == nil || !validParams(r, alpha, a, b) || !(T >= 0) || math.IsInf(T, 1) {
		return nil
	}
	lambda := distuv.Gamma{Alpha: r, Beta: alpha, Src: rng}.Rand()
	p := distuv.Beta{Alpha: a, Beta: b, Src: rng}.Rand()
	if dropAtFirst && rng.Float64() < p {
		return nil
	}
	var times []float64
	for t := 0.0; lambda > 0; {
		t += rng.ExpFloat64() / lambda
		if t > T {
			break
		}
		times = append(times, t)
		if rng.Float64() < p {
			break
		}
	}
	return times
}

// SimulateParetoNBD draws repeat purchase times in (0, T] under Pareto/NBD:
// λ ~ Gamma(R, rate Alpha), μ ~ Gamma(S, rate Beta), lifetime τ ~ Exp(μ),
// Poisson purchases at rate λ while t < τ.
func SimulateParetoNBD(rng *rand.Rand, m ParetoNBD, T float64) []float64 {
	if rng == nil || !validParams(m.R, m.Alpha, m.S, m.Beta) || !(T >= 0) || math.IsInf(T, 1) {
		return nil
	}
	lambda := distuv.Gamma{Alpha: m.R, Beta: m.Alpha, Src: rng}.Rand()
	mu := distuv.Gamma{Alpha: m.S, Beta: m.Beta, Src: rng}.Rand()
	end := T
	if mu > 0 {
		end = math.Min(T, rng.ExpFloat64()/mu)
	}
	var times []float64
	for t := 0.0; lambda > 0; {
		t += rng.ExpFloat64() / lambda
		if t > end {
			break
		}
		times = append(times, t)
	}
	return times
}

// SimulateGammaGamma draws the values of n transactions of one customer
// under the Gamma-Gamma spend model: ν ~ Gamma(Q, rate V) per customer and
// each value z ~ Gamma(P, rate ν). It returns nil on invalid input.
func SimulateGammaGamma(rng *rand.Rand, m GammaGamma, n int) []float64 {
	if rng == nil || !validParams(m.P, m.Q, m.V) || n <= 0 {
		return nil
	}
	nu := distuv.Gamma{Alpha: m.Q, Beta: m.V, Src: rng}.Rand()
	z := distuv.Gamma{Alpha: m.P, Beta: nu, Src: rng}
	out := make([]float64, n)
	for i := range out {
		out[i] = z.Rand()
	}
	return out
}

// Summarize turns repeat purchase times (relative to the first purchase at
// 0, ascending) into (x, t_x) at a time resolution: times are floored to a
// multiple of resolution and purchases in the same period count once (the
// BTYD convention of one purchase per day; resolution 1.0/7 for days in
// weekly units, 0 to keep times exact). Purchases in the first purchase's
// period are not repeat purchases.
func Summarize(times []float64, resolution float64) (x int32, tx float64) {
	last := 0.0
	for _, t := range times {
		if resolution > 0 {
			t = math.Floor(t/resolution) * resolution
		}
		if t > last {
			x++
			last = t
		}
	}
	return x, last
}
