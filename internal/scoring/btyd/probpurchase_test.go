package btyd

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// Published CDNOW fits (FHL 2005 for BG/NBD; Fader, Hardie & Lee's
// Pareto/NBD note for Pareto/NBD); MBG/NBD with BG/NBD's parameters.
var probModels = []Model{
	BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426},
	MBGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426},
	ParetoNBD{R: 0.553, Alpha: 10.578, S: 0.606, Beta: 11.669},
}

var probHistories = []struct {
	x     int32
	tx, T float64
}{{0, 0, 38}, {2, 30.43, 38.86}, {7, 35, 38}, {1, 2, 39}, {20, 37, 38}}

// TestProbPurchaseLimits: 0 at t = 0, growing with t, never above P(alive)
// (t → ∞ reaches it for the BG family, whose living customers always buy
// again) nor above E[Y(t)] (Markov), and ≈ E[Y(t)] for small t, where
// both are P(alive)·E[λ]·t to first order — E[Y(t)] is the papers'
// closed form, computed independently.
func TestProbPurchaseLimits(t *testing.T) {
	t.Parallel()
	for _, m := range probModels {
		for _, h := range probHistories {
			pa := m.PAlive(h.x, h.tx, h.T)
			if p := m.ProbPurchase(0, h.x, h.tx, h.T); p != 0 {
				t.Errorf("%s %+v: P at t=0 = %v", m.Name(), h, p)
			}
			prev := 0.0
			for _, tt := range []float64{0.01, 1, 4, 52, 520, 1e5} {
				p := m.ProbPurchase(tt, h.x, h.tx, h.T)
				e := m.ExpectedPurchases(tt, h.x, h.tx, h.T)
				if p < prev || p > pa+1e-12 || p > e+1e-12 || math.IsNaN(p) {
					t.Errorf("%s %+v t=%v: P %v (previous %v), P(alive) %v, E[Y] %v", m.Name(), h, tt, p, prev, pa, e)
				}
				prev = p
			}
			small := 1e-4
			if p, e := m.ProbPurchase(small, h.x, h.tx, h.T), m.ExpectedPurchases(small, h.x, h.tx, h.T); math.Abs(p-e) > 1e-3*e+1e-12 {
				t.Errorf("%s %+v: small t: P %v vs E[Y] %v", m.Name(), h, p, e)
			}
			if _, pareto := m.(ParetoNBD); !pareto {
				if p := m.ProbPurchase(math.Inf(1), h.x, h.tx, h.T); math.Abs(p-pa) > 1e-12 {
					t.Errorf("%s %+v: t=∞ gives %v, want P(alive) %v", m.Name(), h, p, pa)
				}
			}
		}
	}
	if p := (BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}).ProbPurchase(4, 2, 40, 38); p != 0 {
		t.Errorf("an invalid summary (t_x > T) gives %v", p)
	}
}

// TestProbPurchaseMonteCarlo checks each formula against the model's own
// process, sampled from the posterior it derives from: alive with
// P(alive); then λ ~ Gamma(r+x, α+T) (and μ ~ Gamma(s, β+T), lifetime
// ~ Exp(μ), for Pareto/NBD); a purchase in (T, T+t] when the first
// arrival of the Poisson(λ) process comes before t (and before death).
// This checks the Laplace-transform and hypergeometric algebra, which is
// where a slip would hide; 200,000 draws, 4 standard errors.
func TestProbPurchaseMonteCarlo(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	const draws = 200000
	for _, m := range probModels {
		for _, h := range probHistories[1:3] {
			for _, tt := range []float64{4, 26} {
				want := m.ProbPurchase(tt, h.x, h.tx, h.T)
				pa := m.PAlive(h.x, h.tx, h.T)
				params := m.Params()
				r, alpha := params["r"]+float64(h.x), params["alpha"]+h.T
				lam := distuv.Gamma{Alpha: r, Beta: alpha, Src: rng}
				var mu *distuv.Gamma
				if s, ok := params["s"]; ok {
					mu = &distuv.Gamma{Alpha: s, Beta: params["beta"] + h.T, Src: rng}
				}
				hits := 0
				for range draws {
					if rng.Float64() >= pa {
						continue
					}
					first := rng.ExpFloat64() / lam.Rand()
					if mu != nil && rng.ExpFloat64()/mu.Rand() < first {
						continue // died before the first purchase
					}
					if first <= tt {
						hits++
					}
				}
				got := float64(hits) / draws
				se := math.Sqrt(want * (1 - want) / draws)
				if math.Abs(got-want) > 4*se+1e-9 {
					t.Errorf("%s %+v t=%v: formula %.5f, simulation %.5f (se %.5f)", m.Name(), h, tt, want, got, se)
				}
			}
		}
	}
}

func TestGammaShare(t *testing.T) {
	t.Parallel()
	// Equal rates: λ/(λ+μ) ~ Beta(r, s), mean r/(r+s), either branch.
	if g, ok := gammaShare(2, 5, 3, 5); !ok || math.Abs(g-0.4) > 1e-12 {
		t.Fatalf("equal rates: %v", g)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for _, tc := range []struct{ r, a, s, b float64 }{{0.6, 50, 0.6, 12}, {2.5, 3, 0.7, 40}, {8, 48, 0.6, 49.7}} {
		g, ok := gammaShare(tc.r, tc.a, tc.s, tc.b)
		l, m := distuv.Gamma{Alpha: tc.r, Beta: tc.a, Src: rng}, distuv.Gamma{Alpha: tc.s, Beta: tc.b, Src: rng}
		var sum, sum2 float64
		const n = 200000
		for range n {
			x, y := l.Rand(), m.Rand()
			v := x / (x + y)
			sum += v
			sum2 += v * v
		}
		mean := sum / n
		se := math.Sqrt((sum2/n - mean*mean) / n)
		if !ok || math.Abs(g-mean) > 4*se {
			t.Errorf("%+v: %v (ok %v), simulation %v ± %v", tc, g, ok, mean, se)
		}
	}
}

func BenchmarkProbPurchase(b *testing.B) {
	for _, m := range probModels {
		b.Run(string(m.Name()), func(b *testing.B) {
			var s float64
			for i := 0; b.Loop(); i++ {
				h := probHistories[i%len(probHistories)]
				s += m.ProbPurchase(4, h.x, h.tx, h.T)
			}
			_ = s
		})
	}
}
