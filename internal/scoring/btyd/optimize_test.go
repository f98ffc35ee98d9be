package btyd

import (
	"context"
	"errors"
	"math"
	"testing"
)

// noisyQuadratic is f(θ) = 10 + ½Σ a_i θ_i² plus rounding-like noise of
// ±1e-12 (a hash of θ's bits), with the exact gradient: the situation of a
// likelihood summed over a million customers near its optimum, where a
// step's decrease (~|∇f|²) drops below the noise while |∇f| is still above
// the tolerance.
func noisyQuadratic(theta, grad []float64) float64 {
	f := 10.0
	h := uint64(0x9e3779b97f4a7c15)
	for i, th := range theta {
		a := float64(i + 1)
		f += a * th * th / 2
		grad[i] = a * th
		h ^= math.Float64bits(th)
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	return f + 1e-12*(float64(h>>11)/(1<<53)*2-1)
}

func TestMinimizeBelowNoise(t *testing.T) {
	x, _, res, err := minimize(context.Background(), noisyQuadratic, []float64{1, -1, 1, -1}, nil, FitOptions{GradTol: 1e-9})
	if err != nil || !res.Converged {
		t.Fatalf("%+v: %v", res, err)
	}
	if res.Evaluations > 40 {
		t.Errorf("%d evaluations", res.Evaluations)
	}
	for i, v := range x {
		if math.Abs(v) > 1e-9 {
			t.Errorf("θ%d = %v, want 0", i, v)
		}
	}
	t.Logf("%+v", res)
}

// TestMinimizeNoProgress: when no step along the search direction moves θ
// without leaving the domain, the fit stops at once with ErrNotConverged
// (before, a step too small to change θ passed the Armijo test, and every
// iteration up to the limit repeated it).
func TestMinimizeNoProgress(t *testing.T) {
	x0 := []float64{0.3, -0.2}
	f := func(theta, grad []float64) float64 {
		grad[0], grad[1] = 1, 1
		if theta[0] != x0[0] || theta[1] != x0[1] {
			return math.Inf(1)
		}
		return 1
	}
	_, _, res, err := minimize(context.Background(), f, x0, nil, FitOptions{})
	if !errors.Is(err, ErrNotConverged) || res.Evaluations > 60 {
		t.Errorf("%+v: %v", res, err)
	}
}

// samePurchaseRate is internal/scoring's TestFallbacks data set "spend does
// not vary" in weeks: 200 customers, every one with a second purchase
// 1–11 weeks after the first, a third of them with a third. Nobody has
// x = 0, so nothing identifies heterogeneity of the purchase rate: the
// BG/NBD likelihood rises towards the Poisson limit r, α → ∞ (r/α fixed).
var samePurchaseRate = func() []Triple {
	var ts []Triple
	for _, c := range [][4]float64{
		{1, 54, 63, 4}, {1, 19, 64, 5}, {1, 42, 65, 5}, {1, 7, 66, 4}, {1, 58, 67, 5}, {1, 23, 68, 5}, {1, 46, 69, 4},
		{1, 11, 70, 5}, {1, 62, 71, 5}, {1, 27, 72, 4}, {1, 50, 73, 5}, {1, 15, 74, 5}, {1, 66, 75, 4}, {1, 31, 76, 5},
		{1, 54, 77, 5}, {1, 19, 78, 4}, {1, 70, 79, 5}, {1, 35, 80, 5}, {1, 58, 81, 4}, {1, 23, 82, 5}, {1, 74, 83, 5},
		{1, 39, 84, 4}, {1, 62, 85, 5}, {1, 27, 86, 5}, {1, 78, 87, 5}, {1, 43, 88, 5}, {1, 66, 89, 6}, {1, 31, 90, 5},
		{2, 56, 63, 3}, {2, 52, 64, 2}, {2, 48, 65, 2}, {2, 44, 66, 3}, {2, 58, 67, 2}, {2, 64, 68, 2}, {2, 60, 69, 3},
		{2, 56, 70, 2}, {2, 62, 71, 2}, {2, 48, 72, 3}, {2, 50, 73, 2}, {2, 68, 74, 2}, {2, 66, 75, 3}, {2, 60, 76, 2},
		{2, 56, 77, 2}, {2, 52, 78, 3}, {2, 76, 79, 2}, {2, 72, 80, 2}, {2, 68, 81, 3}, {2, 64, 82, 2}, {2, 74, 83, 2},
		{2, 56, 84, 3}, {2, 80, 85, 2}, {2, 76, 86, 2}, {2, 78, 87, 3}, {2, 68, 88, 3}, {2, 66, 89, 2}, {2, 60, 90, 3},
	} {
		ts = append(ts, Triple{X: int32(c[0]), TX: c[1] / 7, T: c[2] / 7, Count: c[3]})
	}
	return ts
}()

// TestBGNBDPoissonLimit: on data without purchase-rate heterogeneity the
// BG/NBD fit runs towards r, α → ∞. It used to evaluate r ln α − (r+x)
// ln(α+T) as the difference of two terms of size r·ln α, which at r ~ 1e20
// is pure rounding noise: the optimiser "descended" into that noise to a
// log-likelihood of +4.9e14 and a gradient of 9.9e11, then spent 200
// iterations (3,111 evaluations) unable to move. Now the likelihood stays
// accurate along the ridge and the fit converges to its limit.
func TestBGNBDPoissonLimit(t *testing.T) {
	d, err := NewData(samePurchaseRate)
	if err != nil {
		t.Fatal(err)
	}
	if d.Customers() != 200 {
		t.Fatalf("%v customers", d.Customers())
	}
	// Along the ridge the log-likelihood converges, with no noise.
	var prev float64
	for i, k := range []float64{1e4, 1e8, 1e16, 1e32, 1e64} {
		ll := BGNBD{R: 0.16 * k, Alpha: k, A: 0.8, B: 1}.LogLikelihood(d)
		if !isFinite(ll) || ll > 0 || (i > 0 && math.Abs(ll-prev) > 1e-3*math.Abs(prev)) {
			t.Errorf("r = %.3g: log-likelihood %v (previous %v)", 0.16*k, ll, prev)
		}
		prev = ll
	}
	ctx := context.Background()
	bg, res, err := FitBGNBD(ctx, d, FitOptions{})
	if err != nil {
		t.Fatalf("%+v: %v", res, err)
	}
	_, mres, err := FitMBGNBD(ctx, d, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BG/NBD %+v %+v; MBG/NBD log-likelihood %v", bg, res, mres.LogLikelihood)
	if res.Iterations > 100 || !(res.LogLikelihood < 0) || res.LogLikelihood < mres.LogLikelihood {
		t.Errorf("BG/NBD %+v, MBG/NBD log-likelihood %v", res, mres.LogLikelihood)
	}
	checkRel(t, "LogLikelihood()", bg.LogLikelihood(d), res.LogLikelihood, 1e-12)
	for _, tr := range d.Triples {
		pa, e := bg.PAlive(tr.X, tr.TX, tr.T), bg.ExpectedPurchases(52, tr.X, tr.TX, tr.T)
		if !(pa > 0 && pa <= 1) || !(e > 0 && e < 52) {
			t.Errorf("%+v: P(alive) %v, E[Y(52)] %v", tr, pa, e)
		}
	}
}
