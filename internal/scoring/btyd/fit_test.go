package btyd

import (
	"context"
	"errors"
	"math"
	"testing"
)

func checkRel(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s = %.6g, want %.6g (rel err %.2g > %.2g)", what, got, want, e, tol)
	}
}

// checkPrinted checks got rounds to want at want's printed precision
// (half a unit in the last printed digit, with decimals digits after the point).
func checkPrinted(t *testing.T, what string, got, want float64, decimals int) {
	t.Helper()
	half := 0.5 * math.Pow(10, -float64(decimals))
	if !(math.Abs(got-want) <= half*(1+1e-9)) {
		t.Errorf("%s = %.6f, want %.*f to printed precision", what, got, decimals, want)
	}
}

func TestCDNOWBGNBD(t *testing.T) {
	cs, d := cdnowData(t)
	m, res, err := FitBGNBD(context.Background(), d, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BG/NBD %+v %+v (customers %v, triples %d)", m, res, d.Customers(), len(d.Triples))
	checkPrinted(t, "r", m.R, 0.243, 3)
	checkPrinted(t, "alpha", m.Alpha, 4.414, 3)
	checkPrinted(t, "a", m.A, 0.793, 3)
	checkPrinted(t, "b", m.B, 2.426, 3)
	checkPrinted(t, "LL", res.LogLikelihood, -9582.4, 1)
	checkRel(t, "LogLikelihood()", m.LogLikelihood(d), res.LogLikelihood, 1e-12)
	checkPrinted(t, "E[Y(39)|2,30.43,38.86]", m.ExpectedPurchases(39, 2, 30.43, 38.86), 1.226, 3)
	t.Logf("E[Y(39)|2,30.43,38.86] = %.5f, P(alive) = %.5f", m.ExpectedPurchases(39, 2, 30.43, 38.86), m.PAlive(2, 30.43, 38.86))
	var total float64
	for _, c := range cs {
		total += m.ExpectedPurchases(holdoutWeeks, c.x, c.tx, c.T)
	}
	checkRel(t, "holdout total", total, 1653, 0.01)
	t.Logf("predicted holdout total %.1f", total)
}

func TestCDNOWMBGNBD(t *testing.T) {
	cs, d := cdnowData(t)
	m, res, err := FitMBGNBD(context.Background(), d, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MBG/NBD %+v %+v", m, res)
	checkRel(t, "r", m.R, 0.5248, 1e-3)
	checkRel(t, "alpha", m.Alpha, 6.1831, 1e-3)
	checkRel(t, "a", m.A, 0.8914, 1e-3)
	checkRel(t, "b", m.B, 1.6140, 1e-3)
	checkPrinted(t, "P(alive|2,30.43,38.86)", m.PAlive(2, 30.43, 38.86), 0.7061, 4)
	checkPrinted(t, "E[Y(39)|2,30.43,38.86]", m.ExpectedPurchases(39, 2, 30.43, 38.86), 1.2627, 4)
	t.Logf("E[Y(39)|2,30.43,38.86] = %.5f, P(alive) = %.5f", m.ExpectedPurchases(39, 2, 30.43, 38.86), m.PAlive(2, 30.43, 38.86))
	var total float64
	for _, c := range cs {
		total += m.ExpectedPurchases(holdoutWeeks, c.x, c.tx, c.T)
	}
	checkRel(t, "holdout total", total, 1577, 0.01)
	t.Logf("predicted holdout total %.1f", total)
}

func TestCDNOWParetoNBD(t *testing.T) {
	cs, d := cdnowData(t)
	m, res, err := FitParetoNBD(context.Background(), d, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Pareto/NBD %+v %+v", m, res)
	checkRel(t, "r", m.R, 0.5533, 1e-3)
	checkRel(t, "alpha", m.Alpha, 10.578, 1e-3)
	checkRel(t, "s", m.S, 0.6062, 1e-3)
	checkRel(t, "beta", m.Beta, 11.668, 1e-3)
	checkRel(t, "LogLikelihood()", m.LogLikelihood(d), res.LogLikelihood, 1e-12)
	checkPrinted(t, "P(alive|2,30.43,38.86)", m.PAlive(2, 30.43, 38.86), 0.8691, 4)
	checkPrinted(t, "E[Y(39)|2,30.43,38.86]", m.ExpectedPurchases(39, 2, 30.43, 38.86), 1.4551, 4)
	t.Logf("E[Y(39)|2,30.43,38.86] = %.5f, P(alive) = %.5f", m.ExpectedPurchases(39, 2, 30.43, 38.86), m.PAlive(2, 30.43, 38.86))
	var total float64
	for _, c := range cs {
		total += m.ExpectedPurchases(holdoutWeeks, c.x, c.tx, c.T)
	}
	checkRel(t, "holdout total", total, 1666, 0.01)
	t.Logf("predicted holdout total %.1f", total)
}

func TestCDNOWGammaGamma(t *testing.T) {
	cs := loadCDNOW(t)
	var spends []Spend
	for _, c := range cs {
		if c.x > 0 {
			spends = append(spends, Spend{X: c.x, M: c.monetary, Count: 1})
		}
	}
	sd, err := NewSpendData(spends)
	if err != nil {
		t.Fatal(err)
	}
	m, res, err := FitGammaGamma(context.Background(), sd, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Gamma-Gamma on %v repeat buyers: %+v %+v", sd.Customers(), m, res)
	// Published (FHL 2005, on the paper's spend data): p = 6.25, q = 3.74,
	// v = 15.44. The sample's amounts reproduce them to printed precision.
	checkPrinted(t, "p", m.P, 6.25, 2)
	checkPrinted(t, "q", m.Q, 3.74, 2)
	checkPrinted(t, "v", m.V, 15.44, 2)
	checkRel(t, "LogLikelihood()", m.LogLikelihood(sd), res.LogLikelihood, 1e-12)
	// E[M|x,m] shrinks the customer's mean towards the population mean.
	pop := m.MeanSpend()
	for _, s := range spends[:20] {
		e := m.ExpectedSpend(s.X, s.M)
		if lo, hi := math.Min(pop, s.M), math.Max(pop, s.M); e < lo-1e-9 || e > hi+1e-9 {
			t.Errorf("E[M|%d,%v] = %v not between %v and %v", s.X, s.M, e, lo, hi)
		}
	}
}

func TestCDNOWHoldout(t *testing.T) {
	cs, d := cdnowData(t)
	ctx := context.Background()
	want := map[ModelName]float64{NameBGNBD: 1653, NameMBGNBD: 1577, NameParetoNBD: 1666}
	for _, name := range []ModelName{NameBGNBD, NameMBGNBD, NameParetoNBD} {
		m, _, err := Fit(ctx, name, d, FitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHoldout(m, holdoutWeeks)
		if err != nil {
			t.Fatal(err)
		}
		// Half the customers one by one, half as counted triples via a second
		// accumulator merged in: both paths must agree with the direct sum.
		h2, _ := NewHoldout(m, holdoutWeeks)
		var direct, actual float64
		for i, c := range cs {
			acc := h
			if i%2 == 1 {
				acc = h2
			}
			if err := acc.AddN(c.x, c.tx, c.T, float64(c.holdout), 1); err != nil {
				t.Fatal(err)
			}
			direct += m.ExpectedPurchases(holdoutWeeks, c.x, c.tx, c.T)
			actual += float64(c.holdout)
		}
		h.Merge(h2)
		r := h.Report()
		checkRel(t, string(name)+" predicted", r.Predicted, want[name], 0.01)
		checkRel(t, string(name)+" predicted vs direct", r.Predicted, direct, 1e-12)
		if r.Actual != actual || r.Customers != float64(len(cs)) {
			t.Errorf("%s: actual %v customers %v, want %v, %d", name, r.Actual, r.Customers, actual, len(cs))
		}
		if !(r.MAE > 0 && r.RMSE >= r.MAE) {
			t.Errorf("%s: MAE %v RMSE %v", name, r.MAE, r.RMSE)
		}
		t.Logf("%s: actual %.0f predicted %.1f MAE %.3f RMSE %.3f", name, r.Actual, r.Predicted, r.MAE, r.RMSE)
		for _, b := range r.Buckets {
			t.Logf("  x=%d%s n=%4.0f actual %.3f predicted %.3f", b.X, map[bool]string{true: "+", false: " "}[b.X == HoldoutBuckets-1], b.Customers, b.MeanActual, b.MeanPredicted)
		}
	}
}

func TestFitCancelled(t *testing.T) {
	_, d := cdnowData(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, _, err := Fit(ctx, NameBGNBD, d, FitOptions{}); !errors.Is(err, context.Canceled) || m != nil {
		t.Errorf("cancelled fit: %v, %v", m, err)
	}
}

func TestMBGNBDZeroRepeatNotSurelyAlive(t *testing.T) {
	m := MBGNBD{R: 0.5248, Alpha: 6.1831, A: 0.8914, B: 1.6140}
	if p := m.PAlive(0, 0, 30); !(p < 1 && p > 0) {
		t.Errorf("MBG/NBD P(alive | x=0) = %v, want in (0,1)", p)
	}
	if p := (BGNBD{0.243, 4.414, 0.793, 2.426}).PAlive(0, 0, 30); p != 1 {
		t.Errorf("BG/NBD P(alive | x=0) = %v, want 1", p)
	}
}
