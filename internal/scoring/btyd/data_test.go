package btyd

import (
	"cmp"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// referenceData builds Data the straightforward way (a Compressor's map,
// a sort, a map from time to index, binary searches for the pairs): the
// oracle for NewData's allocation-lean construction.
func referenceData(t *testing.T, triples []Triple) *Data {
	c := NewCompressor()
	for _, tr := range triples {
		if err := c.AddN(tr.X, tr.TX, tr.T, tr.Count); err != nil {
			t.Fatal(err)
		}
	}
	d := &Data{Triples: slices.Clone(c.triples)}
	slices.SortFunc(d.Triples, func(a, b Triple) int {
		return cmp.Or(cmp.Compare(a.X, b.X), cmp.Compare(a.T, b.T), cmp.Compare(a.TX, b.TX))
	})
	var times []float64
	for _, tr := range d.Triples {
		times = append(times, tr.TX, tr.T)
	}
	slices.Sort(times)
	d.times = slices.Compact(times)
	d.maxTime = d.times[len(d.times)-1]
	timeIdx := map[float64]int32{}
	for i, v := range d.times {
		timeIdx[v] = int32(i)
	}
	d.tri = make([]triRef, len(d.Triples))
	for i, tr := range d.Triples {
		if len(d.xs) == 0 || d.xs[len(d.xs)-1] != tr.X {
			d.xs = append(d.xs, tr.X)
			d.xCount = append(d.xCount, 0)
			d.xStart = append(d.xStart, int32(i))
		}
		xi := int32(len(d.xs) - 1)
		d.xCount[xi] += tr.Count
		d.total += tr.Count
		if tr.X > 0 {
			d.repeat += tr.Count
		}
		d.tri[i] = triRef{xi: xi, txi: timeIdx[tr.TX], ti: timeIdx[tr.T], c: tr.Count}
	}
	d.xStart = append(d.xStart, int32(len(d.Triples)))
	for k := range d.xs {
		d.pStart = append(d.pStart, int32(len(d.pairs)))
		var ts []int32
		for _, r := range d.tri[d.xStart[k]:d.xStart[k+1]] {
			ts = append(ts, r.txi, r.ti)
		}
		slices.Sort(ts)
		ts = slices.Compact(ts)
		base := int32(len(d.pairs))
		for _, ti := range ts {
			d.pairs = append(d.pairs, pairRef{xi: int32(k), ti: ti})
		}
		for i := d.xStart[k]; i < d.xStart[k+1]; i++ {
			r := d.tri[i]
			p, _ := slices.BinarySearch(ts, r.txi)
			q, _ := slices.BinarySearch(ts, r.ti)
			d.pref = append(d.pref, pairIdx{ptx: base + int32(p), pt: base + int32(q)})
		}
	}
	d.pStart = append(d.pStart, int32(len(d.pairs)))
	return d
}

func sameData(t *testing.T, name string, got, want *Data) {
	t.Helper()
	got.pairIndex()
	for _, f := range []struct {
		what     string
		got, wnt any
	}{
		{"Triples", got.Triples, want.Triples}, {"total", got.total, want.total}, {"repeat", got.repeat, want.repeat},
		{"xs", got.xs, want.xs}, {"xCount", got.xCount, want.xCount}, {"times", got.times, want.times},
		{"tri", got.tri, want.tri}, {"xStart", got.xStart, want.xStart}, {"pairs", got.pairs, want.pairs},
		{"pStart", got.pStart, want.pStart}, {"pref", got.pref, want.pref}, {"maxTime", got.maxTime, want.maxTime},
	} {
		if !reflect.DeepEqual(f.got, f.wnt) {
			t.Errorf("%s: %s differs from the reference", name, f.what)
		}
	}
	for i, tr := range got.Triples {
		if math.Signbit(tr.TX) || math.Signbit(tr.T) {
			t.Errorf("%s: triple %d keeps a -0: %+v", name, i, tr)
		}
	}
}

// TestNewDataMatchesReference: canonical, shuffled and duplicated input
// (fractional counts, -0 times) give exactly the reference's tables.
func TestNewDataMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	comp := NewCompressor()
	for i := 0; i < 20000; i++ {
		T := float64(700-rng.IntN(3000)%700) / 7
		x, tx := Summarize(SimulateBGNBD(rng, cdnowTruth, T), 1.0/7)
		if err := comp.AddN(x, tx, T, 0.5+float64(rng.IntN(3))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range []Triple{{0, math.Copysign(0, -1), 3, 1}, {0, 0, 3, 2}, {2, math.Copysign(0, -1), 0.5, 1}, {0, 0, 1e-300, 1}} {
		if err := comp.AddN(tr.X, tr.TX, tr.T, tr.Count); err != nil {
			t.Fatal(err)
		}
	}
	canonical, err := comp.Data()
	if err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(canonical.Triples)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var dup []Triple
	for _, tr := range shuffled {
		a, b := tr, tr
		a.Count, b.Count = tr.Count*0.3, tr.Count*0.7
		if b.TX == 0 && rng.IntN(2) == 0 {
			b.TX = math.Copysign(0, -1)
		}
		dup = append(dup, a, b)
	}
	rng.Shuffle(len(dup), func(i, j int) { dup[i], dup[j] = dup[j], dup[i] })
	var dupInt []Triple // whole counts: merged in any order
	for _, tr := range dup {
		tr.Count = math.Ceil(tr.Count)
		dupInt = append(dupInt, tr)
	}
	sortedDup := slices.Clone(dup)
	slices.SortStableFunc(sortedDup, compareTriples)
	for _, c := range []struct {
		name string
		ts   []Triple
	}{{"canonical", canonical.Triples}, {"shuffled", shuffled}, {"duplicates", dup}, {"whole duplicates", dupInt}, {"sorted duplicates", sortedDup},
		{"one", []Triple{{1, 2, 3, 4}}}} {
		in := slices.Clone(c.ts)
		got, err := NewData(c.ts)
		if err != nil {
			t.Fatal(c.name, err)
		}
		if !slices.Equal(in, c.ts) {
			t.Errorf("%s: NewData modified its input", c.name)
		}
		sameData(t, c.name, got, referenceData(t, c.ts))
		if c.name == "canonical" {
			if sub := got.subsample(); sub != nil {
				t.Error("subsample of a small data set")
			}
		}
	}
	// A subsample is indexed the same way.
	big := make([]Triple, 0, 3*subsampleSize)
	for i := range 3 * subsampleSize {
		x := int32(i % 7)
		tx := float64(i%5) / 7
		if x == 0 {
			tx = 0
		}
		big = append(big, Triple{X: x, TX: tx, T: 1 + float64(i/7)/7, Count: 1 + float64(i%3)})
	}
	d, err := NewData(big)
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, "big", d, referenceData(t, big))
	sub := d.subsample()
	sameData(t, "subsample", sub, referenceData(t, sub.Triples))
}

func TestNewDataShared(t *testing.T) {
	ts := []Triple{{0, 0, 2, 3}, {0, 0, 5, 1}, {1, 1, 5, 2}, {1, 0.5, 6, 1}, {3, 4, 6, 2}}
	d, err := NewDataShared(ts)
	if err != nil {
		t.Fatal(err)
	}
	if &d.Triples[0] != &ts[0] {
		t.Error("canonical triples were copied")
	}
	sameData(t, "shared", d, referenceData(t, ts))
	// Not canonical (out of order, a duplicate, a -0): copied, input unchanged.
	for _, in := range [][]Triple{
		{{1, 1, 5, 2}, {0, 0, 2, 3}},
		{{0, 0, 2, 3}, {0, 0, 2, 1}},
		{{0, math.Copysign(0, -1), 2, 3}, {1, 1, 5, 2}},
	} {
		before := slices.Clone(in)
		d, err := NewDataShared(in)
		if err != nil {
			t.Fatal(err)
		}
		if &d.Triples[0] == &in[0] || !reflect.DeepEqual(before, in) {
			t.Errorf("%v: shared or modified", in)
		}
		sameData(t, "copied", d, referenceData(t, in))
	}
}

// ggReference is the Gamma-Gamma log-likelihood summed customer by
// customer with lnΓ (Fader & Hardie 2013 eq. 1a).
func ggReference(m GammaGamma, spends []Spend) float64 {
	var ll float64
	for _, s := range spends {
		if s.X == 0 {
			continue
		}
		x := float64(s.X)
		px := m.P * x
		a, _ := math.Lgamma(px + m.Q)
		b, _ := math.Lgamma(px)
		c, _ := math.Lgamma(m.Q)
		ll += s.Count * (a - b - c + m.Q*math.Log(m.V) + (px-1)*math.Log(s.M) + px*math.Log(x) - (px+m.Q)*math.Log(m.V+x*s.M))
	}
	return ll
}

// TestNewSpendData: sorted, unsorted and weighted input give the
// customer-by-customer log-likelihood and gradient.
func TestNewSpendData(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	gg := GammaGamma{P: 6.25, Q: 3.74, V: 15.44}
	var sorted []Spend
	for x := int32(0); x <= 40; x++ {
		for range 1 + rng.IntN(50) {
			z := SimulateGammaGamma(rng, gg, int(max(x, 1)))
			var sum float64
			for _, v := range z {
				sum += v
			}
			sorted = append(sorted, Spend{X: x, M: sum / float64(len(z)), Count: 1})
		}
	}
	shuffled := slices.Clone(sorted)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	weighted := slices.Clone(shuffled)
	for i := range weighted {
		weighted[i].Count = 0.5 + float64(rng.IntN(4))
	}
	for _, c := range []struct {
		name string
		s    []Spend
	}{{"sorted", sorted}, {"shuffled", shuffled}, {"weighted", weighted}} {
		before := slices.Clone(c.s)
		d, err := NewSpendData(c.s)
		if err != nil {
			t.Fatal(c.name, err)
		}
		if !slices.Equal(before, c.s) {
			t.Errorf("%s: input modified", c.name)
		}
		var n float64
		for _, s := range c.s {
			if s.X > 0 {
				n += s.Count
			}
		}
		if d.Customers() != n {
			t.Errorf("%s: %v customers, want %v", c.name, d.Customers(), n)
		}
		for _, m := range []GammaGamma{gg, {1.5, 0.8, 3}, {40, 12, 200}} {
			checkRel(t, c.name+" log-likelihood", m.LogLikelihood(d), ggReference(m, c.s), 1e-12)
		}
		checkGrad(t, "Gamma-Gamma "+c.name, func(th, g []float64) float64 { return ggNegLL(d, th, g) }, []float64{1.8, 1.3, 2.7})
	}
}

// countingModel counts conditional expectations.
type countingModel struct {
	Model
	n *int
}

func (m countingModel) ExpectedPurchases(t float64, x int32, tx, T float64) float64 {
	*m.n++
	return m.Model.ExpectedPurchases(t, x, tx, T)
}

// TestHoldoutOrder: records in canonical order cost one evaluation per
// distinct summary without a map; any order gives the same report.
func TestHoldoutOrder(t *testing.T) {
	_, d := cdnowData(t)
	type rec struct {
		t      Triple
		actual float64
	}
	var recs []rec
	for _, tr := range d.Triples {
		for a := range 3 {
			recs = append(recs, rec{Triple{tr.X, tr.TX, tr.T, tr.Count / 3}, float64(a)})
		}
	}
	run := func(rs []rec) (HoldoutReport, int, bool) {
		var n int
		h, err := NewHoldout(countingModel{cdnowTruth, &n}, 39)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if err := h.AddN(r.t.X, r.t.TX, r.t.T, r.actual, r.t.Count); err != nil {
				t.Fatal(err)
			}
		}
		return h.Report(), n, h.cache != nil
	}
	ordered, n, mapped := run(recs)
	if n != len(d.Triples) || mapped {
		t.Errorf("canonical order: %d evaluations for %d summaries, map used %v", n, len(d.Triples), mapped)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	shuffled := slices.Clone(recs)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	got, n, _ := run(shuffled)
	if n > 2*len(d.Triples) {
		t.Errorf("shuffled: %d evaluations for %d summaries", n, len(d.Triples))
	}
	checkRel(t, "MAE", got.MAE, ordered.MAE, 1e-12)
	checkRel(t, "RMSE", got.RMSE, ordered.RMSE, 1e-12)
	checkRel(t, "predicted", got.Predicted, ordered.Predicted, 1e-12)
	for b := range got.Buckets {
		checkRel(t, "bucket mean predicted", got.Buckets[b].MeanPredicted, ordered.Buckets[b].MeanPredicted, 1e-12)
	}
}
