package scoring

import (
	"math"
	"math/bits"
	"slices"
	"sync"

	par "github.com/retention-dev/retention-operator/internal/parallel"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// feat is what the later stages need of one customer, derived from its
// records on demand (a few integer operations): nothing per customer is
// stored twice.
type feat struct {
	scored      bool
	summary     bool
	x           int32
	tx, T       float64 // model time units
	mv          float64 // mean value of the repeat purchase days
	rows        int32
	total       float64
	first, last int32 // days
	recDays     int32
	tenDays     int32
	dayMean     float64 // mean value of a purchase day (the RFM monetary key)
}

// feat returns customer idx's features over the whole observed period.
func (s *shard) feat(idx int32) (f feat) {
	p := s.p
	if s.recs.at(idx).flags&flagSummary != 0 {
		m := s.sums.at(idx)
		f = feat{scored: true, summary: true, x: m.x, tx: m.tx, T: m.T, mv: m.mv}
		f.tenDays = int32(math.Round(m.T * p.unit))
		f.recDays = int32(math.Round((m.T - m.tx) * p.unit))
		f.first = p.end - f.tenDays
		f.last = p.end - f.recDays
		f.rows = m.x + 1
		f.total = m.mv * float64(m.x)
		f.dayMean = m.mv
		return f
	}
	g := s.recs.at(idx).a
	if p.holdout && !s.folded {
		g = g.merge(*s.b.at(idx))
	}
	if g.days == 0 {
		return feat{}
	}
	f = feat{scored: true, x: g.days - 1, rows: g.rows, total: g.total, first: g.first, last: g.last}
	f.tx = float64(g.last-g.first) / p.unit
	f.T = float64(p.end-g.first) / p.unit
	f.recDays = p.end - g.last
	f.tenDays = p.end - g.first
	if f.x > 0 {
		f.mv = (g.total - g.firstAmt) / float64(f.x)
	}
	f.dayMean = g.total / float64(g.days)
	return f
}

// holdGroup counts the calibration customers of one calibration triple
// with the same number of holdout purchase days.
type holdGroup struct {
	cal    int32
	actual int32
	n      float64
}

// shardStats is the first summary pass over one shard.
type shardStats struct {
	scored, unscored, summaries, days, cal int64
	repeat, excluded, spends               int64
	firstSum, monSum                       float64
	maxX, maxTx, maxT                      int32 // whole period, day based
	maxCX, maxCTx, maxCT                   int32 // calibration period
	spendByX                               []int64
}

// packer packs a day-based summary (x, T, t_x) into one sortable key: x
// most significant, then T, then t_x — btyd's canonical triple order.
type packer struct{ bT, bTx uint }

func newPacker(maxX, maxT, maxTx int32) (packer, bool) {
	p := packer{bT: uint(bits.Len32(uint32(maxT))), bTx: uint(bits.Len32(uint32(maxTx)))}
	return p, uint(bits.Len32(uint32(maxX)))+p.bT+p.bTx <= 64
}

func (p packer) key(x, T, tx int32) uint64 {
	return uint64(x)<<(p.bT+p.bTx) | uint64(T)<<p.bTx | uint64(tx)
}

func (p packer) unpack(k uint64) (x, T, tx int32) {
	return int32(k >> (p.bT + p.bTx)), int32(k >> p.bTx & (1<<p.bT - 1)), int32(k & (1<<p.bTx - 1))
}

// summarize compresses the customers into distinct (x, t_x, T) triples
// with counts, the calibration customers into calibration triples with
// holdout purchase counts, and the repeat buyers into Gamma-Gamma input
// sorted by x. It sorts packed keys with the radix sort instead of
// hashing: the triples come out in btyd's canonical order, and every
// buffer is sized exactly or reused by the ranking.
func (j *job) summarize() error {
	p := j.p
	ns := len(j.shards)
	stats := make([]shardStats, ns)
	parallel(j.shards, func(si int, s *shard) {
		st := &stats[si]
		for i := int32(0); i < s.n; i++ {
			f := s.feat(i)
			if !f.scored {
				st.unscored++
				continue
			}
			st.scored++
			if f.summary {
				st.summaries++
			} else {
				st.days++
				st.maxX = max(st.maxX, f.x)
				st.maxT = max(st.maxT, f.tenDays)
				st.maxTx = max(st.maxTx, f.last-f.first)
				fa := s.recs.at(i).a.firstAmt
				if p.holdout && s.recs.at(i).a.days == 0 {
					fa = s.b.at(i).firstAmt
				}
				st.firstSum += fa
				if c := &s.recs.at(i).a; p.holdout && c.days > 0 {
					st.cal++
					st.maxCX = max(st.maxCX, c.days-1)
					st.maxCT = max(st.maxCT, p.split-c.first)
					st.maxCTx = max(st.maxCTx, c.last-c.first)
				}
			}
			if f.x > 0 {
				st.repeat++
				if f.mv > 0 && !math.IsInf(f.mv, 0) {
					st.spends++
					st.monSum += f.mv
					for int(f.x) >= len(st.spendByX) {
						st.spendByX = append(st.spendByX, 0)
					}
					st.spendByX[f.x]++
				} else {
					st.excluded++
				}
			}
		}
	})
	j.base = make([]int, ns)
	j.dense = make([]int, ns)
	dayPos := make([]int, ns)
	calPos := make([]int, ns)
	var days, cal int
	var maxX, maxT, maxTx, maxCX, maxCT, maxCTx int32
	maxSX := 0
	for i, s := range j.shards {
		st := &stats[i]
		j.base[i] = j.total
		j.dense[i] = int(j.scored)
		dayPos[i] = days
		calPos[i] = cal
		j.total += int(s.n)
		j.scored += st.scored
		days += int(st.days)
		cal += int(st.cal)
		j.res.Unscored += st.unscored
		maxX, maxT, maxTx = max(maxX, st.maxX), max(maxT, st.maxT), max(maxTx, st.maxTx)
		maxCX, maxCT, maxCTx = max(maxCX, st.maxCX), max(maxCT, st.maxCT), max(maxCTx, st.maxCTx)
		maxSX = max(maxSX, len(st.spendByX))
		j.spendStats.excluded += st.excluded
		j.spendStats.monSum += st.monSum
		j.spendStats.monN += st.spends
		j.spendStats.firstSum += st.firstSum
	}
	j.spendStats.scored = j.scored
	j.res.Customers = j.scored
	if j.scored == 0 {
		return ErrNoCustomers
	}
	pk, ok := newPacker(maxX, maxT, maxTx)
	if !ok {
		// Spans beyond any real data: keep such customers on the float path.
		pk = packer{}
		days = 0
	}
	cpk, calOK := newPacker(maxCX, maxCT, maxCTx)
	if !calOK {
		cal = 0
	}

	// Gamma-Gamma input, counting-sorted by x: shard si's customers with x
	// start at spendAt[si][x].
	spendAt := make([][]int64, ns)
	var off int64
	for x := 0; x < maxSX; x++ {
		for si := range j.shards {
			if spendAt[si] == nil {
				spendAt[si] = make([]int64, maxSX)
			}
			spendAt[si][x] = off
			if x < len(stats[si].spendByX) {
				off += stats[si].spendByX[x]
			}
		}
	}
	j.m.spends = make([]btyd.Spend, off)

	// Keys of the day-based customers; per customer triple index.
	j.tri = make([]int32, j.total)
	keys, ids := j.ranker.buffers(max(days, cal, int(j.scored)))
	parallel(j.shards, func(si int, s *shard) {
		pos := dayPos[si]
		base := j.base[si]
		at := spendAt[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			f := s.feat(i)
			if !f.scored {
				j.tri[g] = -1
				continue
			}
			if f.x > 0 && f.mv > 0 && !math.IsInf(f.mv, 0) {
				j.m.spends[at[f.x]] = btyd.Spend{X: f.x, M: f.mv, Count: 1}
				at[f.x]++
			}
			if f.summary || days == 0 {
				j.tri[g] = -2 // float path
				continue
			}
			keys[pos] = pk.key(f.x, f.tenDays, f.last-f.first)
			ids[pos] = uint32(g)
			pos++
		}
	})
	if days > 0 {
		sk, sid := j.ranker.radixSort(keys[:days], ids[:days])
		distinct := 0
		for i := range sk {
			if i == 0 || sk[i] != sk[i-1] {
				distinct++
			}
		}
		j.m.triples = make([]btyd.Triple, 0, distinct)
		for i := 0; i < len(sk); {
			k := sk[i]
			start := i
			ti := int32(len(j.m.triples))
			for ; i < len(sk) && sk[i] == k; i++ {
				j.tri[sid[i]] = ti
			}
			x, T, tx := pk.unpack(k)
			j.m.triples = append(j.m.triples, btyd.Triple{X: x, TX: float64(tx) / p.unit,
				T: float64(T) / p.unit, Count: float64(i - start)})
		}
	}
	// Summaries (and unpackable spans): distinct float triples by map.
	if days < int(j.scored) {
		index := map[btyd.Triple]int32{}
		for si, s := range j.shards {
			base := j.base[si]
			for i := int32(0); i < s.n; i++ {
				g := base + int(i)
				if j.tri[g] != -2 {
					continue
				}
				f := s.feat(i)
				k := btyd.Triple{X: f.x, TX: f.tx + 0, T: f.T + 0}
				ti, ok := index[k]
				if !ok {
					ti = int32(len(j.m.triples))
					index[k] = ti
					j.m.triples = append(j.m.triples, k)
				}
				j.m.triples[ti].Count++
				j.tri[g] = ti
			}
		}
	}
	j.res.Triples = len(j.m.triples)

	// Calibration triples and holdout counts.
	if cal > 0 {
		parallel(j.shards, func(si int, s *shard) {
			pos := calPos[si]
			for i := int32(0); i < s.n; i++ {
				c := &s.recs.at(i).a
				if c.days == 0 || s.recs.at(i).flags&flagSummary != 0 {
					continue
				}
				keys[pos] = cpk.key(c.days-1, p.split-c.first, c.last-c.first)
				ids[pos] = uint32(s.b.at(i).days) // holdout purchase days
				pos++
			}
		})
		sk, act := j.ranker.radixSort(keys[:cal], ids[:cal])
		distinct := 0
		for i := range sk {
			if i == 0 || sk[i] != sk[i-1] {
				distinct++
			}
		}
		j.m.calTriples = make([]btyd.Triple, 0, distinct)
		j.m.groups = make([]holdGroup, 0, distinct+distinct/2)
		for i := 0; i < len(sk); {
			k := sk[i]
			start := i
			for i < len(sk) && sk[i] == k {
				i++
			}
			ci := int32(len(j.m.calTriples))
			x, T, tx := cpk.unpack(k)
			j.m.calTriples = append(j.m.calTriples, btyd.Triple{X: x, TX: float64(tx) / p.unit,
				T: float64(T) / p.unit, Count: float64(i - start)})
			run := act[start:i]
			slices.Sort(run)
			for q := 0; q < len(run); {
				a := run[q]
				r := q
				for q < len(run) && run[q] == a {
					q++
				}
				j.m.groups = append(j.m.groups, holdGroup{cal: ci, actual: int32(a), n: float64(q - r)})
			}
		}
	}
	j.fold()
	return nil
}

// fold merges every customer's holdout period into its first period and
// drops the holdout records (32 bytes per customer): once the calibration
// triples exist, every later stage reads only the whole observed period,
// which is exactly a.merge(b) (see feat).
func (j *job) fold() {
	if !j.p.holdout {
		return
	}
	parallel(j.shards, func(_ int, s *shard) {
		if s.folded {
			return
		}
		for i := int32(0); i < s.n; i++ {
			r := s.recs.at(i)
			r.a = r.a.merge(*s.b.at(i))
		}
		s.b = paged[seg]{}
		s.folded = true
	})
}

// merged is the population-wide fit input.
type merged struct {
	triples    []btyd.Triple // distinct triples, canonical order
	calTriples []btyd.Triple
	groups     []holdGroup
	spends     []btyd.Spend // sorted by X
}

// parallel runs fn(i) for every shard on its own goroutine.
func parallel(shards []*shard, fn func(i int, s *shard)) {
	if len(shards) == 1 {
		fn(0, shards[0])
		return
	}
	var wg sync.WaitGroup
	for i, s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, s)
		}()
	}
	wg.Wait()
}

// chunks splits [0, n) into w contiguous chunks run concurrently (one
// chunk below 1024 items, where goroutines cost more than they save); fn
// gets the chunk number.
func chunks(w, n int, fn func(c, lo, hi int)) {
	if n < 1024 {
		w = 1
	}
	par.Chunks(w, n, fn)
}

// parallelRange splits [0, n) into w contiguous chunks run concurrently.
func parallelRange(w, n int, fn func(lo, hi int)) {
	chunks(w, n, func(_, lo, hi int) { fn(lo, hi) })
}
