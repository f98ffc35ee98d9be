package scoring

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRFMQuintilesAndPercentiles ranks a hand-made population: the
// percentile is the share of customers at or below (more recent, more
// frequent, more valuable is higher) and the quintile ⌈5·share⌉.
func TestRFMQuintilesAndPercentiles(t *testing.T) {
	t.Parallel()
	// end 2024-01-31; recency days A 1, B 11, C 21, D 61, E 91;
	// repeat purchase days A 2, B 1, C 0, D 4, E 0; mean day value
	// A 100, B 50, C 20, D 10, E 200.
	csv := `customer_id,date,amount
A,2024-01-28,100
A,2024-01-29,100
A,2024-01-30,100
B,2024-01-01,50
B,2024-01-20,50
C,2024-01-10,20
D,2023-11-01,10
D,2023-11-10,10
D,2023-11-20,10
D,2023-11-25,10
D,2023-12-01,10
E,2023-11-01,150
E,2023-11-01,50
`
	end := date("2024-01-31")
	res, cs := collect(t, csvReader(csv), Options{ObservationEnd: end, TimeUnit: 1, Clock: fixedClock(end)})
	want := map[string]struct {
		r, f, m    int8
		rPct, fPct float64
	}{
		"A": {5, 4, 4, 100, 80},
		"B": {4, 3, 3, 80, 60},
		"C": {3, 2, 2, 60, 40},
		"D": {2, 5, 1, 40, 100},
		"E": {1, 2, 5, 20, 40},
	}
	for id, w := range want {
		s := cs[id].Scores
		if s.RecencyScore != w.r || s.FrequencyScore != w.f || s.MonetaryScore != w.m ||
			s.RecencyPercentile != w.rPct || s.FrequencyPercentile != w.fPct {
			t.Errorf("%s: R %d F %d M %d R%% %v F%% %v, want %+v", id, s.RecencyScore, s.FrequencyScore,
				s.MonetaryScore, s.RecencyPercentile, s.FrequencyPercentile, w)
		}
	}
	// Value percentiles follow expected value, ties sharing a rank.
	for a, ca := range cs {
		for b, cb := range cs {
			va, vb := ca.Scores.ExpectedValue, cb.Scores.ExpectedValue
			pa, pb := ca.Scores.ValuePercentile, cb.Scores.ValuePercentile
			if (va < vb) != (pa < pb) || (va == vb) != (pa == pb) {
				t.Errorf("value %s %v (pct %v) vs %s %v (pct %v)", a, va, pa, b, vb, pb)
			}
		}
	}
	t.Logf("selected %s %s", res.Selected, res.Fallback)
}

func TestRankerCount(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1, 7, 5000} {
		for _, wide := range []bool{false, true} {
			keys := make([]uint64, n)
			ids := make([]uint32, n)
			for i := range keys {
				if wide {
					keys[i] = sortableFloat(math.Round(rng.NormFloat64()*1e3) / 10) // negatives, ties, wide range
				} else {
					keys[i] = uint64(rng.IntN(50))
				}
				ids[i] = uint32(i)
			}
			orig := slices.Clone(keys)
			cnt := make([]uint32, n)
			var r ranker
			r.count(keys, ids, cnt)
			sorted := slices.Clone(orig)
			slices.Sort(sorted)
			for i, k := range orig {
				want := uint32(len(sorted))
				if p, found := slices.BinarySearch(sorted, k+1); found || p < len(sorted) {
					want = uint32(p)
				}
				if cnt[i] != want {
					t.Fatalf("n %d wide %v: cnt[%d] = %d, want %d", n, wide, i, cnt[i], want)
				}
			}
		}
	}
	if !(sortableFloat(-2) < sortableFloat(-1) && sortableFloat(-1) < sortableFloat(0) &&
		sortableFloat(math.Copysign(0, -1)) == sortableFloat(0) && sortableFloat(0) < sortableFloat(1e-300)) {
		t.Error("sortableFloat does not preserve order")
	}
}

func TestQuintile(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cnt  uint32
		n    int64
		want int8
	}{{1, 1, 5}, {1, 5, 1}, {2, 10, 1}, {3, 10, 2}, {10, 10, 5}, {8, 10, 4}, {9, 10, 5}, {1, 1000, 1}} {
		if q := quintile(c.cnt, c.n); q != c.want {
			t.Errorf("quintile(%d, %d) = %d, want %d", c.cnt, c.n, q, c.want)
		}
	}
}
