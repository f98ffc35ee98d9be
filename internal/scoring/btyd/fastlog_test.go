package btyd

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFastLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	check := func(x float64) {
		got, want := fastLog(x), math.Log(x)
		if tol := 2.5e-16 * math.Max(1, math.Abs(want)); !(math.Abs(got-want) <= tol) && !(math.IsNaN(want) && math.IsNaN(got)) && got != want {
			t.Fatalf("fastLog(%v) = %.17g, math.Log %.17g (diff %.3g)", x, got, want, got-want)
		}
	}
	for i := 0; i < 2_000_000; i++ {
		check(math.Ldexp(1+rng.Float64(), rng.IntN(2000)-1000))
		check(1 + rng.Float64())
		check(1 + 1e-3*rng.Float64())
	}
	for i := 0; i < 1_000_000; i++ {
		e := rng.Float64()
		if i%3 == 0 {
			e = math.Ldexp(e, -rng.IntN(60))
		}
		if got, want := log1pUnit(e), math.Log1p(e); math.Abs(got-want) > 1.2e-16 {
			t.Fatalf("log1pUnit(%v) = %.17g, math.Log1p %.17g", e, got, want)
		}
	}
	for _, e := range []float64{0, 1, 1.0 / 64, math.Nextafter(1, 0)} {
		if got, want := log1pUnit(e), math.Log1p(e); math.Abs(got-want) > 1.2e-16 {
			t.Errorf("log1pUnit(%v) = %.17g, math.Log1p %.17g", e, got, want)
		}
	}
	for _, x := range []float64{1, 2, 0.5, math.Nextafter(1, 2), math.Nextafter(1, 0), math.Nextafter(2, 0), 0, -1,
		math.SmallestNonzeroFloat64, 2.2250738585072014e-308, math.MaxFloat64, math.Inf(1), math.NaN()} {
		check(x)
	}
}

func BenchmarkLog(b *testing.B) {
	xs := make([]float64, 1024)
	for i := range xs {
		xs[i] = 1 + float64(i)/1024
	}
	b.Run("math.Log", func(b *testing.B) {
		var s float64
		for i := range b.N {
			s += math.Log(xs[i&1023])
		}
		_ = s
	})
	b.Run("fastLog", func(b *testing.B) {
		var s float64
		for i := range b.N {
			s += fastLog(xs[i&1023])
		}
		_ = s
	})
}
