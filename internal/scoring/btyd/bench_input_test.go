package btyd

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// benchSpends returns n single-customer spends sorted by x (as
// internal/scoring builds them): Gamma-Gamma mean values of 1–40 repeat
// purchases.
var benchSpends = sync.OnceValue(func() []Spend {
	const n = 616_000
	rng := rand.New(rand.NewPCG(3, 4))
	gg := GammaGamma{P: 6.25, Q: 3.74, V: 15.44}
	s := make([]Spend, n)
	for i := range s {
		x := 1 + int32(rng.ExpFloat64()*3)
		z := SimulateGammaGamma(rng, gg, int(x))
		var sum float64
		for _, v := range z {
			sum += v
		}
		s[i] = Spend{X: x, M: sum / float64(x), Count: 1}
	}
	// Counting sort by x keeps the random order within an x.
	var byX [][]Spend
	for _, v := range s {
		for int(v.X) >= len(byX) {
			byX = append(byX, nil)
		}
		byX[v.X] = append(byX[v.X], v)
	}
	s = s[:0]
	for _, g := range byX {
		s = append(s, g...)
	}
	return s
})

// BenchmarkNewData builds the fit input of the million-customer data set
// from its distinct triples in canonical order (as internal/scoring passes
// them), shuffled, and shuffled with every triple split in two (duplicates).
func BenchmarkNewData(b *testing.B) {
	sorted := benchData(b).Triples
	rng := rand.New(rand.NewPCG(5, 6))
	shuffled := append([]Triple(nil), sorted...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	dup := make([]Triple, 0, 2*len(shuffled))
	for _, t := range shuffled {
		t.Count /= 2
		dup = append(dup, t, t)
	}
	rng.Shuffle(len(dup), func(i, j int) { dup[i], dup[j] = dup[j], dup[i] })
	for _, bc := range []struct {
		name string
		ts   []Triple
	}{{"sorted", sorted}, {"shuffled", shuffled}, {"duplicates", dup}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewData(bc.ts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNewSpendData(b *testing.B) {
	s := benchSpends()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSpendData(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHoldout records every triple of the million-customer data set
// in canonical order, each split into three holdout counts (as
// internal/scoring's holdout groups come).
func BenchmarkHoldout(b *testing.B) {
	ts := benchData(b).Triples
	m := cdnowTruth
	b.ReportAllocs()
	for b.Loop() {
		h, err := NewHoldout(m, 39)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range ts {
			for a := range 3 {
				if err := h.AddN(t.X, t.TX, t.T, float64(a), t.Count/3); err != nil {
					b.Fatal(err)
				}
			}
		}
		if r := h.Report(); !(r.Customers > 0) {
			b.Fatal(r)
		}
	}
}
