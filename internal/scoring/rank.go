package scoring

import (
	"math"
)

// Ranks are counts: for customer g, cnt[g] is the number of scored
// customers whose key is at or below g's (ties share a count), so the
// percentile is 100·cnt/N and the quintile ⌈5·cnt/N⌉. Small integer keys
// (days, frequencies) are counted with a histogram; float keys (spend,
// value) are sorted with an LSD radix sort on their order-preserving bit
// patterns. Neither compares structs, and the buffers are reused.

// ranker holds the reusable buffers of the ranking passes.
type ranker struct {
	keys, tk []uint64
	ids, ti  []uint32
	hist     []uint32
}

// sortableFloat maps a float64 to a uint64 with the same order (NaN excluded).
func sortableFloat(f float64) uint64 {
	b := math.Float64bits(f + 0) // fold -0 into +0
	if b>>63 != 0 {
		return ^b
	}
	return b | 1<<63
}

// buffers returns the key and id buffers, of length n (reused across calls).
func (r *ranker) buffers(n int) ([]uint64, []uint32) {
	if cap(r.keys) < n {
		r.keys = make([]uint64, n)
		r.ids = make([]uint32, n)
	}
	return r.keys[:n], r.ids[:n]
}

// count sets cnt[ids[i]] to the number of keys at or below keys[i].
func (r *ranker) count(keys []uint64, ids []uint32, cnt []uint32) {
	n := len(keys)
	if n == 0 {
		return
	}
	lo, hi := keys[0], keys[0]
	for _, k := range keys {
		lo, hi = min(lo, k), max(hi, k)
	}
	if hi-lo < 1<<20 {
		size := int(hi-lo) + 1
		if cap(r.hist) < size {
			r.hist = make([]uint32, size)
		}
		h := r.hist[:size]
		clear(h)
		for _, k := range keys {
			h[k-lo]++
		}
		var c uint32
		for i := range h {
			c += h[i]
			h[i] = c
		}
		for i, k := range keys {
			cnt[ids[i]] = h[k-lo]
		}
		return
	}
	keys, ids = r.radixSort(keys, ids)
	for i := 0; i < n; {
		k := i
		for k < n && keys[k] == keys[i] {
			k++
		}
		for ; i < k; i++ {
			cnt[ids[i]] = uint32(k)
		}
	}
}

const (
	radixBits    = 11
	radixBuckets = 1 << radixBits
	radixPasses  = (64 + radixBits - 1) / radixBits
)

// radixSort sorts keys ascending, permuting ids alike, and returns the
// sorted slices (either the inputs or r's scratch buffers). Passes whose
// digit is the same for every key are skipped.
func (r *ranker) radixSort(keys []uint64, ids []uint32) ([]uint64, []uint32) {
	n := len(keys)
	if cap(r.tk) < n {
		r.tk = make([]uint64, n)
		r.ti = make([]uint32, n)
	}
	tk, ti := r.tk[:n], r.ti[:n]
	var hist [radixPasses][radixBuckets]uint32
	for _, k := range keys {
		for p := 0; p < radixPasses; p++ {
			hist[p][(k>>(p*radixBits))&(radixBuckets-1)]++
		}
	}
	src, dst := keys, tk
	sid, did := ids, ti
	for p := 0; p < radixPasses; p++ {
		h := &hist[p]
		if h[(src[0]>>(p*radixBits))&(radixBuckets-1)] == uint32(n) {
			continue
		}
		var off uint32
		for b := range h {
			c := h[b]
			h[b] = off
			off += c
		}
		shift := uint(p * radixBits)
		for i, k := range src {
			b := (k >> shift) & (radixBuckets - 1)
			o := h[b]
			h[b]++
			dst[o] = k
			did[o] = sid[i]
		}
		src, dst = dst, src
		sid, did = did, sid
	}
	return src, sid
}

// rankKind selects the key of a ranking pass.
type rankKind int

const (
	rankRecency   rankKind = iota // more recent is better: MaxInt32 − recency days
	rankFrequency                 // repeat purchase days
	rankMonetary                  // mean value of a purchase day
	rankValue                     // expected value
)

// rankKeys builds (key, global id) of every scored customer, shard by
// shard in parallel, and counts them into cnt.
func (j *job) rankKeys(cnt []uint32, kind rankKind) {
	r := &j.ranker
	keys, ids := r.buffers(int(j.scored))
	parallel(j.shards, func(si int, s *shard) {
		pos := j.dense[si]
		base := j.base[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			if j.tri[g] < 0 {
				continue
			}
			var k uint64
			if kind == rankValue {
				k = sortableFloat(j.value[g])
			} else {
				f := s.feat(i)
				switch kind {
				case rankRecency:
					k = uint64(math.MaxInt32 - int64(f.recDays))
				case rankFrequency:
					k = uint64(f.x)
				default:
					k = sortableFloat(f.dayMean)
				}
			}
			keys[pos] = k
			ids[pos] = uint32(g)
			pos++
		}
	})
	r.count(keys, ids, cnt)
}

// rankRFM ranks recency (more recent is better), frequency and the mean
// value of a purchase day.
func (j *job) rankRFM() {
	g := j.total
	j.recCnt = make([]uint32, g)
	j.freqCnt = make([]uint32, g)
	j.monCnt = make([]uint32, g)
	j.rankKeys(j.recCnt, rankRecency)
	j.rankKeys(j.freqCnt, rankFrequency)
	j.rankKeys(j.monCnt, rankMonetary)
}

// rankValue ranks expected value and sums the population summary.
func (j *job) rankValue() {
	j.valCnt = make([]uint32, j.total)
	j.rankKeys(j.valCnt, rankValue)
	thr := j.p.o.AtRiskThreshold
	pops := make([]Population, len(j.shards))
	parallel(j.shards, func(si int, s *shard) {
		pop := &pops[si]
		base := j.base[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			tri := j.tri[g]
			if tri < 0 {
				continue
			}
			var pa float64
			var x int32
			if j.model != nil {
				pa = j.pa[tri]
				x = j.m.triples[tri].X
			} else {
				pa = float64(j.recCnt[g]) / float64(j.scored)
				x = j.m.triples[tri].X
			}
			if x > 0 {
				pop.RepeatBuyers++
			}
			if pa >= thr {
				pop.Active++
			} else if x > 0 {
				pop.AtRisk++
			}
			fl := s.recs.at(i).flags
			if fl&flagPrev != 0 {
				pop.RetentionBase++
				if fl&flagLast != 0 {
					pop.Retained++
				}
			}
			pop.TotalExpectedValue += j.value[g]
		}
	})
	pop := &j.res.Population
	for _, p := range pops {
		pop.Active += p.Active
		pop.AtRisk += p.AtRisk
		pop.RepeatBuyers += p.RepeatBuyers
		pop.RetentionBase += p.RetentionBase
		pop.Retained += p.Retained
		pop.TotalExpectedValue += p.TotalExpectedValue
	}
	if pop.RetentionBase > 0 {
		pop.RetentionRate = float64(pop.Retained) / float64(pop.RetentionBase)
	}
	pop.TotalExpectedValue = finite(pop.TotalExpectedValue)
}

// quintile maps a rank count to a score 1..5.
func quintile(cnt uint32, n int64) int8 {
	if n <= 0 {
		return 0
	}
	q := (5*int64(cnt) + n - 1) / n
	return int8(min(max(q, 1), 5))
}

func percentile(cnt uint32, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return 100 * float64(cnt) / float64(n)
}
