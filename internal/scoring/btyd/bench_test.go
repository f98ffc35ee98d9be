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
	d.pairIndex()
	b.Logf("%v customers, %d triples, %d distinct x, %d distinct times, %d (x,t) pairs",
		d.Customers(), len(d.Triples), d.DistinctX(), d.DistinctTimes(), len(d.pairs))
	b.ResetTimer()
	for i := range b.N {
		m, res, err := FitBGNBD(context.Background(), d, FitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.Logf("%+v %+v", m, res)
		}
	}
}

func BenchmarkFitMBGNBD(b *testing.B) {
	d := benchData(b)
	b.ResetTimer()
	for i := range b.N {
		m, res, err := FitMBGNBD(context.Background(), d, FitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.Logf("%+v %+v", m, res)
		}
	}
}

func BenchmarkFitParetoNBD(b *testing.B) {
	d := benchData(b)
	b.ResetTimer()
	for i := range b.N {
		m, res, err := FitParetoNBD(context.Background(), d, FitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.Logf("%+v %+v", m, res)
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

// BenchmarkScoreTriples scores every distinct triple of the million-customer
// data set: P(alive) and expected purchases in the next 39 weeks.
func BenchmarkScoreTriples(b *testing.B) {
	d := benchData(b)
	for _, m := range []Model{
		cdnowTruth,
		MBGNBD{R: 0.5248, Alpha: 6.1831, A: 0.8914, B: 1.6140},
		ParetoNBD{R: 0.5533, Alpha: 10.578, S: 0.6062, Beta: 11.668},
	} {
		b.Run(string(m.Name()), func(b *testing.B) {
			var sink float64
			for range b.N {
				for _, t := range d.Triples {
					sink += m.PAlive(t.X, t.TX, t.T) + m.ExpectedPurchases(39, t.X, t.TX, t.T)
				}
			}
			if !isFinite(sink) {
				b.Fatal(sink)
			}
		})
	}
}
