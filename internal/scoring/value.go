package scoring

import (
	"math"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// The three transaction models share one structure (FHL 2005 eq. 10;
// Schmittlein et al. 1987; lifetimes' ModifiedBetaGeoFitter):
//
//	E[Y(t) | x, t_x, T] = P(alive | x, t_x, T) · h(t; x, T),
//
// where h, the expected purchases of a customer known to be alive, depends
// on x and T but not on t_x. So h is computed once per distinct (x, T) —
// far fewer than distinct triples — as E/P(alive) at t_x = T (t_x = 0 when
// x = 0, the only valid recency then), and a triple costs one P(alive).
// TestFactorisation checks the identity against btyd's direct formulas.

type pairKey struct {
	x int32
	T float64
}

// aliveCurve returns h(t; x, T), or -1 when it cannot be evaluated this
// way (P(alive) underflows at the reference recency).
func aliveCurve(m btyd.Model, t float64, x int32, T float64) float64 {
	ref := T
	if x == 0 {
		ref = 0
	}
	pa := m.PAlive(x, ref, T)
	if !(pa > 1e-200) {
		return -1
	}
	h := m.ExpectedPurchases(t, x, ref, T) / pa
	if math.IsNaN(h) || math.IsInf(h, 0) || h < 0 {
		return -1
	}
	return h
}

// factored is a btyd.Model whose ExpectedPurchases at one horizon uses the
// factorisation above with h cached per (x, T). Summaries in canonical
// order (by x, then T) come in runs of one (x, T): the previous pair is
// checked before the map. Not safe for concurrent use.
type factored struct {
	btyd.Model
	t       float64
	cache   map[pairKey]float64
	last    pairKey
	lastH   float64
	hasLast bool
}

func newFactored(m btyd.Model, t float64) *factored {
	return &factored{Model: m, t: t, cache: map[pairKey]float64{}}
}

// ExpectedPurchases implements btyd.Model.
func (f *factored) ExpectedPurchases(t float64, x int32, tx, T float64) float64 {
	if t != f.t || x < 0 || !(tx >= 0) || !(T >= tx) || (x == 0 && tx != 0) {
		return f.Model.ExpectedPurchases(t, x, tx, T)
	}
	k := pairKey{x, T}
	h := f.lastH
	if !f.hasLast || k != f.last {
		var ok bool
		if h, ok = f.cache[k]; !ok {
			h = aliveCurve(f.Model, t, x, T)
			f.cache[k] = h
		}
		f.last, f.lastH, f.hasLast = k, h, true
	}
	if h < 0 {
		return f.Model.ExpectedPurchases(t, x, tx, T)
	}
	return f.Model.PAlive(x, tx, T) * h
}

// curve is the horizon forecast of one (x, T) pair: h at the horizon and
// the discounted sum D = Σ_i (h(i·u) − h((i−1)·u))⁺ / (1+d)^i over the
// discounting periods, so that a customer's expected value is
// spend · P(alive) · D, exactly as btyd.CustomerLifetimeValue computes it.
type curve struct {
	h, d float64
	ok   bool
}

func (j *job) pairCurve(m btyd.Model, x int32, T float64) curve {
	p := j.p
	ref := T
	if x == 0 {
		ref = 0
	}
	pa := m.PAlive(x, ref, T)
	if !(pa > 1e-200) {
		return curve{}
	}
	var prev, d float64
	disc := 1.0
	for i := 1; i <= p.periods; i++ {
		t := float64(i) * p.periodUnits
		if i == p.periods {
			t = p.horizon
		}
		h := m.ExpectedPurchases(t, x, ref, T) / pa
		if math.IsNaN(h) || math.IsInf(h, 0) {
			return curve{}
		}
		disc /= 1 + p.periodRate
		d += math.Max(h-prev, 0) * disc
		prev = h
	}
	return curve{h: prev, d: d, ok: true}
}

// directCurve is the per-triple evaluation used when a pair's curve is not ok.
func (j *job) directCurve(m btyd.Model, x int32, tx, T float64) (ep, d float64) {
	p := j.p
	var prev float64
	disc := 1.0
	for i := 1; i <= p.periods; i++ {
		t := float64(i) * p.periodUnits
		if i == p.periods {
			t = p.horizon
		}
		e := finite(m.ExpectedPurchases(t, x, tx, T))
		disc /= 1 + p.periodRate
		d += math.Max(e-prev, 0) * disc
		prev = e
	}
	return prev, d
}

// scoreTriples computes P(alive), expected purchases over the horizon and
// the discounted expected purchases once per distinct triple.
func (j *job) scoreTriples() {
	m := j.model
	if m == nil {
		return
	}
	ts := j.m.triples
	pairOf := make([]int32, len(ts))
	index := make(map[pairKey]int32, len(ts)/8+16)
	var pairs []pairKey
	// Triples in canonical order come in runs of one (x, T): the map is
	// consulted once per run, not once per triple.
	for i, t := range ts {
		k := pairKey{t.X, t.T}
		if i > 0 && k == pairs[pairOf[i-1]] {
			pairOf[i] = pairOf[i-1]
			continue
		}
		pi, ok := index[k]
		if !ok {
			pi = int32(len(pairs))
			index[k] = pi
			pairs = append(pairs, k)
		}
		pairOf[i] = pi
	}
	curves := make([]curve, len(pairs))
	parallelRange(j.p.workers, len(pairs), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			curves[i] = j.pairCurve(m, pairs[i].x, pairs[i].T)
		}
	})
	j.pa = make([]float64, len(ts))
	j.ep = make([]float64, len(ts))
	j.disc = make([]float64, len(ts))
	parallelRange(j.p.workers, len(ts), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			t := ts[i]
			pa := finite(m.PAlive(t.X, t.TX, t.T))
			pa = math.Min(math.Max(pa, 0), 1)
			j.pa[i] = pa
			if c := curves[pairOf[i]]; c.ok {
				j.ep[i] = finite(pa * c.h)
				j.disc[i] = finite(pa * c.d)
			} else {
				j.ep[i], j.disc[i] = j.directCurve(m, t.X, t.TX, t.T)
			}
		}
	})
	j.pairs = len(pairs)
}

// spend returns the expected value of a future purchase of a customer.
func (j *job) spend(f *feat) float64 {
	mv := math.Max(f.mv, 0)
	if j.res.Spend.Fitted {
		return finite(j.gg.ExpectedSpend(f.x, mv))
	}
	if f.x > 0 && mv > 0 {
		return mv
	}
	return j.res.Spend.MeanSpend
}

// customerScores fills P(alive), expected purchases, expected spend and
// expected value of one scored customer (global id g, triple tri).
func (j *job) customerScores(f *feat, tri int32, g int, sc *customer.Scores) {
	sp := j.spend(f)
	sc.ExpectedSpend = sp
	if j.model != nil {
		sc.PAlive = j.pa[tri]
		sc.ExpectedPurchases = j.ep[tri]
		sc.ExpectedValue = finite(sp * j.disc[tri])
		return
	}
	// RFM only: P(alive) is the recency percentile; expected purchases
	// extrapolate the customer's own repeat rate over the horizon.
	pa := float64(j.recCnt[g]) / float64(j.scored)
	rate := 0.0
	if f.T > 0 {
		rate = float64(f.x) / f.T
	}
	ep := finite(pa * rate * j.p.horizon)
	sc.PAlive = pa
	sc.ExpectedPurchases = ep
	sc.ExpectedValue = finite(sp * ep * j.meanDiscount())
}

// meanDiscount is the mean discount factor of the periods of the horizon.
func (j *job) meanDiscount() float64 {
	var s float64
	disc := 1.0
	for i := 1; i <= j.p.periods; i++ {
		disc /= 1 + j.p.periodRate
		s += disc
	}
	return s / float64(j.p.periods)
}

// scoreCustomers computes every customer's expected value (for ranking).
func (j *job) scoreCustomers() {
	if len(j.value) != j.total {
		j.value = make([]float64, j.total)
	}
	parallel(j.shards, func(si int, s *shard) {
		var sc customer.Scores
		base := j.base[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			tri := j.tri[g]
			if tri < 0 {
				j.value[g] = 0
				continue
			}
			f := s.feat(i)
			j.customerScores(&f, tri, g, &sc)
			j.value[g] = sc.ExpectedValue
		}
	})
}
