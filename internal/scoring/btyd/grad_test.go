package btyd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkGrad compares an analytical gradient with central finite differences.
func checkGrad(t *testing.T, name string, f objective, theta []float64) {
	t.Helper()
	g := make([]float64, len(theta))
	f0 := f(theta, g)
	if !isFinite(f0) {
		t.Fatalf("%s: f(%v) = %v", name, theta, f0)
	}
	scratch := make([]float64, len(theta))
	for i := range theta {
		h := 1e-5
		tp := append([]float64(nil), theta...)
		tm := append([]float64(nil), theta...)
		tp[i] += h
		tm[i] -= h
		fd := (f(tp, scratch) - f(tm, scratch)) / (2 * h)
		if math.Abs(fd-g[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
			t.Errorf("%s θ=%v: ∂f/∂θ%d = %.10g, finite difference %.10g", name, theta, i, g[i], fd)
		}
	}
}

func smallData(t *testing.T) *Data {
	rng := rand.New(rand.NewPCG(7, 7))
	comp := NewCompressor()
	for i := 0; i < 3000; i++ {
		T := float64(200+rng.IntN(160)) / 7
		x, tx := Summarize(SimulateBGNBD(rng, cdnowTruth, T), 1.0/7)
		if err := comp.Add(x, tx, T); err != nil {
			t.Fatal(err)
		}
	}
	// A customer with many purchases and one with a huge e^D exercise the
	// large-x and overflow-safe branches.
	if err := comp.Add(500, 50, 51); err != nil {
		t.Fatal(err)
	}
	if err := comp.Add(300, 0.5, 51); err != nil {
		t.Fatal(err)
	}
	d, err := comp.Data()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGradients(t *testing.T) {
	d := smallData(t)
	thetas := [][]float64{{-1.4, 1.5, -0.2, 0.9}, {0.3, -0.5, 0.4, -1}, {-3, 3, 1.5, 2}, {0.1, 2.3, 0.1, 1.9}}
	for _, th := range thetas {
		checkGrad(t, "BG/NBD", newBGEval(d, false, 1).negLL, th)
		checkGrad(t, "MBG/NBD", newBGEval(d, true, 1).negLL, th)
		checkGrad(t, "Pareto/NBD", newParetoEval(d, 1).negLL, th) // covers α<β and α>β
	}
	// Parallel evaluation must agree with serial to rounding.
	g1, g2 := make([]float64, 4), make([]float64, 4)
	f1 := newParetoEval(d, 1).negLL(thetas[0], g1)
	f2 := newParetoEval(d, 2).negLL(thetas[0], g2)
	if relErr(f1, f2) > 1e-13 {
		t.Errorf("parallel Pareto/NBD %v != serial %v", f2, f1)
	}

	sd, err := NewSpendData([]Spend{{1, 20, 3}, {2, 35.5, 1}, {5, 12.25, 2}, {1, 80, 1}, {12, 27, 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range [][]float64{{1.8, 1.3, 2.7}, {0, 0, 0}, {-1, 3, 5}} {
		checkGrad(t, "Gamma-Gamma", func(th, g []float64) float64 { return ggNegLL(sd, th, g) }, th)
	}
}
