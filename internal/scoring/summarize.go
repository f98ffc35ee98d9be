package scoring

import (
	"math"
	"slices"
	"sync"

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
	if *s.flags.at(idx)&flagSummary != 0 {
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
	g := *s.a.at(idx)
	if p.holdout {
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

// localTriple is a distinct summary of one shard and its key.
type localTriple struct {
	t   btyd.Triple
	key uint64 // day-based key; 0 with flt
	flt bool
}

type fkey struct {
	x     int32
	tx, T float64
}

// holdGroup counts the customers of one calibration triple (local index)
// with the same number of holdout purchase days.
type holdGroup struct {
	cal    int32
	actual int32
	n      float64
}

// shardWork is what the stages after the read keep per shard.
type shardWork struct {
	tri     []int32 // per customer: triple index, local then global; -1 unscored
	triples []localTriple
	dayKeys map[uint64]int32
	fltKeys map[fkey]int32

	calTriples []localTriple
	calKeys    map[uint64]int32
	groups     []holdGroup

	spends   []btyd.Spend
	excluded int64

	scored, repeat, unscored int64
	firstSum                 float64 // Σ first-day amounts (mean spend without repeat buyers)
	monSum                   float64 // Σ positive mean repeat values of repeat buyers
	monN                     int64

	value  []float64 // per customer expected value
	custom []float64 // per customer × custom score
}

// dayKey packs a day-based summary; ok is false when a part does not fit.
func dayKey(x, txd, Td int32) (uint64, bool) {
	if x < 0 || x >= 1<<22 || txd < 0 || txd >= 1<<21 || Td < 0 || Td >= 1<<21 {
		return 0, false
	}
	return uint64(x)<<42 | uint64(txd)<<21 | uint64(Td), true
}

func (w *shardWork) addTriple(key uint64, keyOK bool, x int32, tx, T float64) int32 {
	if keyOK {
		if i, ok := w.dayKeys[key]; ok {
			w.triples[i].t.Count++
			return i
		}
		i := int32(len(w.triples))
		w.dayKeys[key] = i
		w.triples = append(w.triples, localTriple{t: btyd.Triple{X: x, TX: tx, T: T, Count: 1}, key: key})
		return i
	}
	k := fkey{x, tx + 0, T + 0}
	if i, ok := w.fltKeys[k]; ok {
		w.triples[i].t.Count++
		return i
	}
	i := int32(len(w.triples))
	w.fltKeys[k] = i
	w.triples = append(w.triples, localTriple{t: btyd.Triple{X: x, TX: k.tx, T: k.T, Count: 1}, flt: true})
	return i
}

// summarize turns the shard's customers into local triples, calibration
// triples with holdout counts, and Gamma-Gamma spend entries.
func (s *shard) summarize() {
	p := s.p
	w := &s.work
	n := int(s.n)
	w.tri = slices.Grow(w.tri[:0], n)[:n]
	w.triples = w.triples[:0]
	w.dayKeys = make(map[uint64]int32, 1024)
	w.fltKeys = make(map[fkey]int32)
	w.calTriples = w.calTriples[:0]
	w.calKeys = make(map[uint64]int32, 1024)
	w.spends = w.spends[:0]
	groups := map[uint64]float64{}
	for i := int32(0); i < s.n; i++ {
		f := s.feat(i)
		if !f.scored {
			w.tri[i] = -1
			w.unscored++
			continue
		}
		w.scored++
		if f.summary {
			w.tri[i] = w.addTriple(0, false, f.x, f.tx, f.T)
		} else {
			key, ok := dayKey(f.x, f.last-f.first, f.tenDays)
			w.tri[i] = w.addTriple(key, ok, f.x, f.tx, f.T)
		}
		if f.x > 0 {
			w.repeat++
			if f.mv > 0 && !math.IsInf(f.mv, 0) {
				w.spends = append(w.spends, btyd.Spend{X: f.x, M: f.mv, Count: 1})
				w.monSum += f.mv
				w.monN++
			} else {
				w.excluded++
			}
		}
		if !f.summary {
			fa := s.a.at(i).firstAmt
			if p.holdout && s.a.at(i).days == 0 {
				fa = s.b.at(i).firstAmt
			}
			w.firstSum += fa
		}
		// Calibration summary and holdout purchases.
		if p.holdout && !f.summary {
			c := s.a.at(i)
			if c.days == 0 {
				continue // first purchase in the holdout: not in the cohort
			}
			x, txd, Td := c.days-1, c.last-c.first, p.split-c.first
			key, ok := dayKey(x, txd, Td)
			if !ok {
				continue
			}
			ci, seen := w.calKeys[key]
			if !seen {
				ci = int32(len(w.calTriples))
				w.calKeys[key] = ci
				w.calTriples = append(w.calTriples, localTriple{key: key, t: btyd.Triple{
					X: x, TX: float64(txd) / p.unit, T: float64(Td) / p.unit}})
			}
			w.calTriples[ci].t.Count++
			groups[uint64(ci)<<32|uint64(uint32(s.b.at(i).days))]++
		}
	}
	w.groups = w.groups[:0]
	for k, c := range groups {
		w.groups = append(w.groups, holdGroup{cal: int32(k >> 32), actual: int32(uint32(k)), n: c})
	}
	slices.SortFunc(w.groups, func(a, b holdGroup) int {
		if a.cal != b.cal {
			return int(a.cal - b.cal)
		}
		return int(a.actual - b.actual)
	})
}

// merged is the population-wide fit input built from the shards.
type merged struct {
	triples    []btyd.Triple // global distinct triples (scoring order)
	calTriples []btyd.Triple
	calRemap   [][]int32 // per shard: local calibration triple → global
	spends     []btyd.Spend
}

// mergeTriples merges the shards' local triples into global ones and
// rewrites every customer's triple index to the global one.
func mergeTriples(shards []*shard) *merged {
	m := &merged{}
	dk := make(map[uint64]int32, 4096)
	fk := map[fkey]int32{}
	remaps := make([][]int32, len(shards))
	for si, s := range shards {
		rm := make([]int32, len(s.work.triples))
		for i, lt := range s.work.triples {
			var g int32
			var ok bool
			if lt.flt {
				k := fkey{lt.t.X, lt.t.TX, lt.t.T}
				if g, ok = fk[k]; !ok {
					g = int32(len(m.triples))
					fk[k] = g
					m.triples = append(m.triples, btyd.Triple{X: lt.t.X, TX: lt.t.TX, T: lt.t.T})
				}
			} else if g, ok = dk[lt.key]; !ok {
				g = int32(len(m.triples))
				dk[lt.key] = g
				m.triples = append(m.triples, btyd.Triple{X: lt.t.X, TX: lt.t.TX, T: lt.t.T})
			}
			m.triples[g].Count += lt.t.Count
			rm[i] = g
		}
		remaps[si] = rm
	}
	ck := make(map[uint64]int32, 4096)
	m.calRemap = make([][]int32, len(shards))
	for si, s := range shards {
		rm := make([]int32, len(s.work.calTriples))
		for i, lt := range s.work.calTriples {
			g, ok := ck[lt.key]
			if !ok {
				g = int32(len(m.calTriples))
				ck[lt.key] = g
				m.calTriples = append(m.calTriples, btyd.Triple{X: lt.t.X, TX: lt.t.TX, T: lt.t.T})
			}
			m.calTriples[g].Count += lt.t.Count
			rm[i] = g
		}
		m.calRemap[si] = rm
	}
	n := 0
	for _, s := range shards {
		n += len(s.work.spends)
	}
	m.spends = make([]btyd.Spend, 0, n)
	for _, s := range shards {
		m.spends = append(m.spends, s.work.spends...)
		s.work.spends = nil
	}
	var wg sync.WaitGroup
	for si, s := range shards {
		wg.Add(1)
		go func(s *shard, rm []int32) {
			defer wg.Done()
			for i, t := range s.work.tri {
				if t >= 0 {
					s.work.tri[i] = rm[t]
				}
			}
			s.work.triples, s.work.dayKeys, s.work.fltKeys = nil, nil, nil
			s.work.calKeys = nil
		}(s, remaps[si])
	}
	wg.Wait()
	return m
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

// parallelRange splits [0, n) into w contiguous chunks run concurrently.
func parallelRange(w, n int, fn func(lo, hi int)) {
	if w <= 1 || n < 1024 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < w; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			fn(i*n/w, (i+1)*n/w)
		}(i)
	}
	fn(0, n/w)
	wg.Wait()
}
