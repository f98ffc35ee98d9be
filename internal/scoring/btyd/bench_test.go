package btyd

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
)

// cdnowTruth are parameters of the size of the CDNOW BG/NBD fit.
var cdnowTruth = BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}

// simulateCohort simulates n customers whose first purchases fall uniformly
// on the days of the first year of a two-year calibration period, with
// times at day resolution in weeks (as real data are): that is what makes
// a million customers compress to a few hundred thousand triples.
func simulateCohort(n int, seed uint64, sim func(rng *rand.Rand, T float64) []float64) *Data {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	const days = 7 * 104
	comp := NewCompressor()
	for i := 0; i < n; i++ {
		T := float64(days-rng.IntN(365)) / 7
		x, tx := Summarize(sim(rng, T), 1.0/7)
		if err := comp.Add(x, tx, T); err != nil {
			panic(err)
		}
	}
	d, err := comp.Data()
	if err != nil {
		panic(err)
	}
	return d
}

var (
	benchOnce sync.Once
	benchBG   *Data
)

func benchData(b *testing.B) *Data {
	benchOnce.Do(func() {
		benchBG = simulateCohort(1_000_000, 1, func(rng *rand.Rand, T float64) []float64 { return SimulateBGNBD(rng, cdnowTruth, T) })
	})
	return benchBG
}

func BenchmarkFitBGNBD(b *testing.B) {
	d := benchData(b)
	b.Logf("%v customers, %d triples, %d distinct x, %d distinct times, %d (x,t) pairs",
		d.Customers(), len(d.Triples), d.DistinctX(), d.DistinctTimes(), len(d.pairs))
	b.ResetTimer()
	for range b.N {
		if _, _, err := FitBGNBD(context.Background(), d, FitOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFitMBGNBD(b *testing.B) {
	d := benchData(b)
	b.ResetTimer()
	for range b.N {
		if _, _, err := FitMBGNBD(context.Background(), d, FitOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFitParetoNBD(b *testing.B) {
	d := benchData(b)
	b.ResetTimer()
	for range b.N {
		if _, _, err := FitParetoNBD(context.Background(), d, FitOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLogLikelihoodBGNBD(b *testing.B) {
	d := benchData(b)
	e := newBGEval(d, false, FitOptions{}.workers(len(d.tri)))
	theta, g := []float64{-1.4, 1.5, -0.2, 0.9}, make([]float64, 4)
	b.ResetTimer()
	for range b.N {
		e.negLL(theta, g)
	}
}

func BenchmarkLogLikelihoodParetoNBD(b *testing.B) {
	d := benchData(b)
	e := newParetoEval(d, FitOptions{}.workers(len(d.tri)))
	theta, g := []float64{-0.6, 2.36, -0.5, 2.46}, make([]float64, 4)
	b.ResetTimer()
	for range b.N {
		e.negLL(theta, g)
	}
}
