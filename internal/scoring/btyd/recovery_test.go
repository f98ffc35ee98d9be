package btyd

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// standardErrors returns the asymptotic standard errors of θ = ln(params)
// from the observed information: the Hessian of the total negative
// log-likelihood, by central differences of the analytical gradient.
func standardErrors(t *testing.T, f objective, theta []float64, n float64) []float64 {
	k := len(theta)
	H := mat.NewSymDense(k, nil)
	gp, gm := make([]float64, k), make([]float64, k)
	for i := 0; i < k; i++ {
		h := 1e-4
		tp := append([]float64(nil), theta...)
		tm := append([]float64(nil), theta...)
		tp[i] += h
		tm[i] -= h
		f(tp, gp)
		f(tm, gm)
		for j := 0; j <= i; j++ {
			H.SetSym(i, j, n*(gp[j]-gm[j])/(2*h))
		}
	}
	var cov mat.Dense
	if err := cov.Inverse(H); err != nil {
		t.Fatal(err)
	}
	se := make([]float64, k)
	for i := range se {
		se[i] = math.Sqrt(cov.At(i, i))
	}
	return se
}

// TestBGNBDParameterRecovery simulates 100,000 customers from known BG/NBD
// parameters (continuous times, so the model holds exactly) and checks that
// the fit recovers each log-parameter within 4 asymptotic standard errors,
// for three seeds. The standard errors (about 1-6% of each parameter here)
// come from the observed information at the estimate; 4σ keeps the
// false-alarm rate of 12 checks below 0.1%, while a biased likelihood or
// gradient would miss by many σ.
func TestBGNBDParameterRecovery(t *testing.T) {
	seeds := []uint64{11, 12, 13}
	if testing.Short() {
		seeds = seeds[:1]
	}
	truth := cdnowTruth
	want := []float64{truth.R, truth.Alpha, truth.A, truth.B}
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 99))
		comp := NewCompressor()
		for i := 0; i < 100_000; i++ {
			T := 30 + 20*rng.Float64()
			x, tx := Summarize(SimulateBGNBD(rng, truth, T), 0)
			if err := comp.Add(x, tx, T); err != nil {
				t.Fatal(err)
			}
		}
		d, err := comp.Data()
		if err != nil {
			t.Fatal(err)
		}
		m, res, err := FitBGNBD(context.Background(), d, FitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := []float64{m.R, m.Alpha, m.A, m.B}
		theta := make([]float64, 4)
		for i, v := range got {
			theta[i] = math.Log(v)
		}
		se := standardErrors(t, newBGEval(d, false, 1).negLL, theta, d.Customers())
		for i, name := range bgNames {
			z := (theta[i] - math.Log(want[i])) / se[i]
			t.Logf("seed %d %-5s true %.4f fitted %.4f  SE(ln) %.4f  z %+.2f", seed, name, want[i], got[i], se[i], z)
			if math.Abs(z) > 4 {
				t.Errorf("seed %d: %s = %v, true %v: %.1f standard errors off", seed, name, got[i], want[i], z)
			}
		}
		_ = res
	}
}

// TestParetoAndMBGRecovery checks the Pareto/NBD and MBG/NBD fits (and
// simulators) the same way on 100,000 customers, one seed each.
func TestParetoAndMBGRecovery(t *testing.T) {
	type fitter func(d *Data) ([]float64, objective, error)
	cases := []struct {
		name  string
		truth []float64
		sim   func(rng *rand.Rand, T float64) []float64
		fit   fitter
	}{
		{"Pareto/NBD", []float64{0.55, 10.6, 0.61, 11.7},
			func(rng *rand.Rand, T float64) []float64 {
				return SimulateParetoNBD(rng, ParetoNBD{0.55, 10.6, 0.61, 11.7}, T)
			},
			func(d *Data) ([]float64, objective, error) {
				m, _, err := FitParetoNBD(context.Background(), d, FitOptions{})
				return []float64{m.R, m.Alpha, m.S, m.Beta}, newParetoEval(d, 1).negLL, err
			}},
		{"MBG/NBD", []float64{0.52, 6.2, 0.89, 1.6},
			func(rng *rand.Rand, T float64) []float64 {
				return SimulateMBGNBD(rng, MBGNBD{0.52, 6.2, 0.89, 1.6}, T)
			},
			func(d *Data) ([]float64, objective, error) {
				m, _, err := FitMBGNBD(context.Background(), d, FitOptions{})
				return []float64{m.R, m.Alpha, m.A, m.B}, newBGEval(d, true, 1).negLL, err
			}},
	}
	for _, c := range cases {
		rng := rand.New(rand.NewPCG(21, 5))
		comp := NewCompressor()
		for i := 0; i < 100_000; i++ {
			T := 30 + 20*rng.Float64()
			x, tx := Summarize(c.sim(rng, T), 0)
			if err := comp.Add(x, tx, T); err != nil {
				t.Fatal(err)
			}
		}
		d, err := comp.Data()
		if err != nil {
			t.Fatal(err)
		}
		got, f, err := c.fit(d)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		theta := make([]float64, 4)
		for i, v := range got {
			theta[i] = math.Log(v)
		}
		se := standardErrors(t, f, theta, d.Customers())
		for i := range got {
			z := (theta[i] - math.Log(c.truth[i])) / se[i]
			t.Logf("%s param %d true %.4f fitted %.4f SE(ln) %.4f z %+.2f", c.name, i, c.truth[i], got[i], se[i], z)
			if math.Abs(z) > 4 {
				t.Errorf("%s: param %d = %v, true %v: %.1f standard errors off", c.name, i, got[i], c.truth[i], z)
			}
		}
	}
}

func TestGammaGammaRecovery(t *testing.T) {
	truth := GammaGamma{P: 6.25, Q: 3.74, V: 15.44}
	rng := rand.New(rand.NewPCG(4, 4))
	var spends []Spend
	for i := 0; i < 20_000; i++ {
		x := 1 + rng.IntN(8)
		var sum float64
		for _, z := range SimulateGammaGamma(rng, truth, x) {
			sum += z
		}
		spends = append(spends, Spend{X: int32(x), M: sum / float64(x), Count: 1})
	}
	sd, err := NewSpendData(spends)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := FitGammaGamma(context.Background(), sd, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, want := []float64{m.P, m.Q, m.V}, []float64{truth.P, truth.Q, truth.V}
	theta := []float64{math.Log(m.P), math.Log(m.Q), math.Log(m.V)}
	se := standardErrors(t, func(th, g []float64) float64 { return ggNegLL(sd, th, g) }, theta, sd.Customers())
	for i, name := range ggNames {
		z := (theta[i] - math.Log(want[i])) / se[i]
		t.Logf("%s true %.3f fitted %.3f SE(ln) %.4f z %+.2f", name, want[i], got[i], se[i], z)
		if math.Abs(z) > 4 {
			t.Errorf("%s = %v, true %v: %.1f standard errors off", name, got[i], want[i], z)
		}
	}
}
