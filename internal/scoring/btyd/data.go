package btyd

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
)

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrInvalidInput reports a summary or parameter outside the model's domain.
	ErrInvalidInput = errors.New("btyd: invalid input")
	// ErrDegenerate reports data that cannot identify a model (empty data,
	// a single customer, all T = 0, zero amounts).
	ErrDegenerate = errors.New("btyd: degenerate data")
	// ErrNoRepeatBuyers reports data without a single repeat purchase: every
	// transaction model then drifts to a boundary.
	ErrNoRepeatBuyers = errors.New("btyd: no repeat buyers")
	// ErrNotConverged reports an optimisation that stopped before meeting its
	// convergence criteria or met non-finite values it could not step around.
	ErrNotConverged = errors.New("btyd: fit did not converge")
	// ErrNotIdentifiable reports a fit that runs along a ridge of the
	// likelihood, so the parameters carry no information (e.g. Gamma-Gamma on
	// spend that does not vary between customers).
	ErrNotIdentifiable = errors.New("btyd: parameters not identifiable")
)

// Triple is a distinct (x, t_x, T) summary with the number of customers sharing it.
type Triple struct {
	X     int32   // repeat purchases x
	TX, T float64 // recency t_x and age T, 0 <= t_x <= T
	Count float64 // customers (or weight) sharing the summary, > 0
}

// validSummary checks one customer summary: x >= 0, 0 <= t_x <= T finite, and
// t_x = 0 when x = 0 (a customer without repeat purchases has no recency).
func validSummary(x int32, tx, T float64) error {
	switch {
	case x < 0:
		return fmt.Errorf("%w: x = %d < 0", ErrInvalidInput, x)
	case !(tx >= 0) || !(T >= tx) || math.IsInf(T, 1):
		return fmt.Errorf("%w: need 0 <= t_x <= T < Inf, have t_x = %v, T = %v", ErrInvalidInput, tx, T)
	case x == 0 && tx != 0:
		return fmt.Errorf("%w: x = 0 with t_x = %v != 0", ErrInvalidInput, tx)
	}
	return nil
}

type tripleKey struct {
	x     int32
	tx, T float64
}

// Compressor accumulates per-customer summaries into distinct triples with
// counts. The zero value is not usable; call NewCompressor. It is not safe for
// concurrent use: give each goroutine (or each Indexed Job worker) its own and
// Merge them.
type Compressor struct {
	index   map[tripleKey]int
	triples []Triple
}

// NewCompressor returns an empty Compressor.
func NewCompressor() *Compressor {
	return &Compressor{index: make(map[tripleKey]int)}
}

// Add records one customer with summary (x, t_x, T).
func (c *Compressor) Add(x int32, tx, T float64) error { return c.AddN(x, tx, T, 1) }

// AddN records n customers (n > 0, may be fractional: a weight) with summary (x, t_x, T).
func (c *Compressor) AddN(x int32, tx, T, n float64) error {
	if err := validTriple(Triple{X: x, TX: tx, T: T, Count: n}); err != nil {
		return fmt.Errorf("compressor add: %w", err)
	}
	tx, T = tx+0, T+0 // fold -0 into +0 so they share a key
	k := tripleKey{x, tx, T}
	if i, ok := c.index[k]; ok {
		c.triples[i].Count += n
		return nil
	}
	c.index[k] = len(c.triples)
	c.triples = append(c.triples, Triple{X: x, TX: tx, T: T, Count: n})
	return nil
}

// Merge adds the counts of o into c (partial counts of sharded workers); o is unchanged.
func (c *Compressor) Merge(o *Compressor) {
	for _, t := range o.triples {
		// o's triples were validated on entry, so AddN cannot fail.
		_ = c.AddN(t.X, t.TX, t.T, t.Count)
	}
}

// Len returns the number of distinct triples recorded so far.
func (c *Compressor) Len() int { return len(c.triples) }

// Triples returns a copy of the recorded triples in insertion order (for
// shipping partial counts between workers).
func (c *Compressor) Triples() []Triple { return slices.Clone(c.triples) }

// Data returns the fit input built from the recorded triples. It fails with
// ErrDegenerate when nothing was recorded.
func (c *Compressor) Data() (*Data, error) { return NewData(c.triples) }

// Data is the fit input: distinct triples with counts plus the index
// structure the likelihoods use. Build it with a Compressor or NewData; it is
// read-only afterwards and safe for concurrent use.
type Data struct {
	// Triples are the distinct summaries sorted by (X, T, TX).
	Triples []Triple

	total   float64 // Σ Count
	repeat  float64 // Σ Count over x > 0
	xs      []int32 // distinct x ascending
	xCount  []float64
	times   []float64 // distinct t_x and T values ascending
	tri     []triRef  // per triple, parallel to Triples
	xStart  []int32   // triples of xs[k] are tri[xStart[k]:xStart[k+1]]
	maxTime float64

	// The (x, t) pair tables only Pareto/NBD uses: built by pairIndex on
	// first use.
	pairOnce sync.Once
	pairs    []pairRef // distinct (x, t) pairs, grouped by x
	pStart   []int32   // pairs of xs[k] are pairs[pStart[k]:pStart[k+1]]
	pref     []pairIdx // per triple, parallel to tri

	subOnce sync.Once
	sub     *Data // see subsample
}

// triRef holds a triple's indices into the per-x and per-time tables and
// its count: 24 bytes, what a BG/NBD evaluation reads per triple.
type triRef struct {
	xi, txi, ti int32 // into xs, times, times
	c           float64
}

// pairIdx holds a triple's indices into pairs: (x, t_x) and (x, T).
type pairIdx struct{ ptx, pt int32 }

type pairRef struct {
	xi, ti int32
}

// NewData validates the triples (duplicates are merged) and builds the index
// tables. It fails with ErrInvalidInput on an invalid summary and with
// ErrDegenerate when there are no customers.
//
// Triples already distinct and in canonical order (strictly ascending by
// (X, T, TX), as Data.Triples and internal/scoring's summaries are) are
// copied as they are; others are sorted and equal summaries merged, their
// counts summed in input order. The triples are not retained.
func NewData(triples []Triple) (*Data, error) { return newData(triples, false) }

// NewDataShared is NewData without the copy: when the triples are already
// distinct and in canonical order (strictly ascending by (X, T, TX), no
// -0), Data.Triples is triples itself, so the caller must not modify them
// while the Data is in use. Other triples are copied, sorted and merged as
// by NewData. It saves a fit input's largest table when the caller keeps
// its triples anyway (to score them).
func NewDataShared(triples []Triple) (*Data, error) { return newData(triples, true) }

func newData(triples []Triple, share bool) (*Data, error) {
	canonical := true
	for i, t := range triples {
		if err := validTriple(t); err != nil {
			return nil, fmt.Errorf("new data: triple %d: %w", i, err)
		}
		if canonical && (i > 0 && compareTriples(triples[i-1], t) >= 0 || math.Signbit(t.TX) || math.Signbit(t.T)) {
			canonical = false
		}
	}
	if len(triples) == 0 {
		return nil, fmt.Errorf("new data: %w: no customers", ErrDegenerate)
	}
	if canonical && share {
		d := &Data{Triples: triples[:len(triples):len(triples)]}
		d.index()
		return d, nil
	}
	ts := make([]Triple, len(triples))
	for i, t := range triples {
		t.TX, t.T = t.TX+0, t.T+0 // fold -0 into +0 so they compare and index equal
		ts[i] = t
	}
	if !canonical && !slices.IsSortedFunc(ts, compareTriples) {
		slices.SortFunc(ts, compareTriples)
		if !mergeExact(ts) {
			// Equal summaries whose sum may depend on the order: order them
			// by input position, so that their counts are summed in input
			// order, as a Compressor does.
			perm := make([]int32, len(triples))
			for i := range perm {
				perm[i] = int32(i)
			}
			slices.SortFunc(perm, func(a, b int32) int {
				return cmp.Or(compareTriples(triples[a], triples[b]), cmp.Compare(a, b))
			})
			for i, j := range perm {
				t := triples[j]
				t.TX, t.T = t.TX+0, t.T+0
				ts[i] = t
			}
		}
	}
	if !canonical {
		ts = mergeSorted(ts)
	}
	d := &Data{Triples: ts}
	d.index()
	return d, nil
}

// validTriple checks one summary with its count.
func validTriple(t Triple) error {
	if err := validSummary(t.X, t.TX, t.T); err != nil {
		return err
	}
	if !(t.Count > 0) || math.IsInf(t.Count, 1) {
		return fmt.Errorf("%w: count %v must be positive and finite", ErrInvalidInput, t.Count)
	}
	return nil
}

// compareTriples orders triples canonically: by X, then T, then TX.
func compareTriples(a, b Triple) int {
	return cmp.Or(cmp.Compare(a.X, b.X), cmp.Compare(a.T, b.T), cmp.Compare(a.TX, b.TX))
}

// mergeExact reports whether merging the equal summaries of sorted ts
// gives the same counts in any order: true when every count of a run of
// equal summaries is a multiple of 2^-20 and the run's sum stays below
// 2^32, so that every partial sum is exact (customer counts always are).
func mergeExact(ts []Triple) bool {
	const scale = 1 << 20
	for i := 1; i < len(ts); {
		if compareTriples(ts[i-1], ts[i]) != 0 {
			i++
			continue
		}
		j := i - 1
		var sum float64
		for ; j < len(ts) && compareTriples(ts[i-1], ts[j]) == 0; j++ {
			c := ts[j].Count * scale
			sum += ts[j].Count
			if c != math.Trunc(c) || !(sum < 1<<32) {
				return false
			}
		}
		i = j + 1
	}
	return true
}

// mergeSorted merges runs of equal summaries of sorted ts in place.
func mergeSorted(ts []Triple) []Triple {
	n := 0
	for i, t := range ts {
		if i > 0 && t.X == ts[n-1].X && t.T == ts[n-1].T && t.TX == ts[n-1].TX {
			ts[n-1].Count += t.Count
			continue
		}
		ts[n] = t
		n++
	}
	return ts[:n]
}

// index builds the distinct-x, distinct-time and pair tables of the
// canonically ordered d.Triples. Every table is allocated once at its final
// size; distinct times are found with a small open-addressing table of
// their bit patterns (there are typically a few hundred, one per day of
// the observation period), and only those are sorted.
func (d *Data) index() {
	n := len(d.Triples)
	nx := 0
	for i, t := range d.Triples {
		if i == 0 || t.X != d.Triples[i-1].X {
			nx++
		}
	}
	d.xs = make([]int32, 0, nx)
	d.xCount = make([]float64, 0, nx)
	d.xStart = make([]int32, 0, nx+1)
	d.tri = make([]triRef, n)
	ft := newFloatIndex(1024)
	lastT, lastTi := math.NaN(), int32(0)
	for i, t := range d.Triples {
		if len(d.xs) == 0 || d.xs[len(d.xs)-1] != t.X {
			d.xs = append(d.xs, t.X)
			d.xCount = append(d.xCount, 0)
			d.xStart = append(d.xStart, int32(i))
		}
		xi := int32(len(d.xs) - 1)
		d.xCount[xi] += t.Count
		d.total += t.Count
		if t.X > 0 {
			d.repeat += t.Count
		}
		if t.T != lastT { // T runs within an x: one lookup per run
			lastT, lastTi = t.T, ft.id(t.T)
		}
		d.tri[i] = triRef{xi: xi, txi: ft.id(t.TX), ti: lastTi, c: t.Count}
	}
	d.xStart = append(d.xStart, int32(n))
	// Sort the distinct times and renumber the provisional ids (first-seen
	// order) by rank.
	order := make([]int32, len(ft.vals))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(ft.vals[a], ft.vals[b]) })
	rank := make([]int32, len(order))
	d.times = make([]float64, len(order))
	for r, id := range order {
		rank[id] = int32(r)
		d.times[r] = ft.vals[id]
	}
	for i := range d.tri {
		r := &d.tri[i]
		r.txi, r.ti = rank[r.txi], rank[r.ti]
	}
	d.maxTime = d.times[len(d.times)-1]
}

// floatIndex numbers distinct float64 values (+0 for zero, no NaN) in
// first-seen order: open addressing over their bit patterns.
type floatIndex struct {
	slot  []int32 // id+1, 0 empty; len a power of two
	mask  uint64
	shift uint
	vals  []float64
}

func newFloatIndex(size int) *floatIndex {
	f := &floatIndex{vals: make([]float64, 0, size/2)}
	f.resize(size)
	return f
}

func (f *floatIndex) resize(size int) {
	f.slot = make([]int32, size)
	f.mask = uint64(size - 1)
	f.shift = uint(64 - bits.Len(uint(size-1)))
}

// hash is Fibonacci hashing: the top bits of the product depend on every
// bit of v (the low bits of whole and k/7 day values would collide).
func (f *floatIndex) hash(v float64) uint64 {
	return math.Float64bits(v) * 0x9e3779b97f4a7c15 >> f.shift
}

// id returns v's number, assigning the next one to a new value.
func (f *floatIndex) id(v float64) int32 {
	for i := f.hash(v) & f.mask; ; i = (i + 1) & f.mask {
		s := f.slot[i]
		if s == 0 {
			break
		}
		if f.vals[s-1] == v {
			return s - 1
		}
	}
	if 2*(len(f.vals)+1) > len(f.slot) {
		f.grow()
	}
	id := int32(len(f.vals))
	f.vals = append(f.vals, v)
	i := f.hash(v) & f.mask
	for f.slot[i] != 0 {
		i = (i + 1) & f.mask
	}
	f.slot[i] = id + 1
	return id
}

func (f *floatIndex) grow() {
	f.resize(2 * len(f.slot))
	for id, v := range f.vals {
		i := f.hash(v) & f.mask
		for f.slot[i] != 0 {
			i = (i + 1) & f.mask
		}
		f.slot[i] = int32(id) + 1
	}
}

// pairIndex builds, once, the pair tables (see indexPairs).
func (d *Data) pairIndex() { d.pairOnce.Do(d.indexPairs) }

// indexPairs lists the distinct (x, t) pairs, t being a t_x or a T of a
// triple with that x, grouped by x and sorted by t within a group. A
// per-time stamp finds each group's distinct times in one pass; only those
// are sorted.
func (d *Data) indexPairs() {
	nt := len(d.times)
	d.pStart = make([]int32, 0, len(d.xs)+1)
	d.pairs = make([]pairRef, 0, min(2*len(d.tri), len(d.xs)*nt))
	d.pref = make([]pairIdx, len(d.tri))
	seen := make([]int32, nt) // k+1 when time i was seen in group k
	pos := make([]int32, nt)  // pair index of time i in the current group
	var ts []int32
	for k := range d.xs {
		d.pStart = append(d.pStart, int32(len(d.pairs)))
		tri := d.tri[d.xStart[k]:d.xStart[k+1]]
		ts = ts[:0]
		stamp := int32(k + 1)
		for _, r := range tri {
			if seen[r.txi] != stamp {
				seen[r.txi] = stamp
				ts = append(ts, r.txi)
			}
			if seen[r.ti] != stamp {
				seen[r.ti] = stamp
				ts = append(ts, r.ti)
			}
		}
		slices.Sort(ts)
		for _, ti := range ts {
			pos[ti] = int32(len(d.pairs))
			d.pairs = append(d.pairs, pairRef{xi: int32(k), ti: ti})
		}
		for i, r := range tri {
			d.pref[int(d.xStart[k])+i] = pairIdx{ptx: pos[r.txi], pt: pos[r.ti]}
		}
	}
	d.pStart = append(d.pStart, int32(len(d.pairs)))
}

// Customers returns the total count of customers.
func (d *Data) Customers() float64 { return d.total }

// RepeatBuyers returns the count of customers with x > 0.
func (d *Data) RepeatBuyers() float64 { return d.repeat }

// DistinctX returns the number of distinct x values.
func (d *Data) DistinctX() int { return len(d.xs) }

// DistinctTimes returns the number of distinct t_x and T values.
func (d *Data) DistinctTimes() int { return len(d.times) }

// checkTransaction reports data on which no transaction model is identifiable.
func (d *Data) checkTransaction() error {
	switch {
	case d.repeat == 0:
		return fmt.Errorf("%w: all %v customers have x = 0", ErrNoRepeatBuyers, d.total)
	case d.maxTime == 0:
		return fmt.Errorf("%w: all T = 0", ErrDegenerate)
	case len(d.Triples) == 1 && d.total <= 1:
		return fmt.Errorf("%w: a single customer", ErrDegenerate)
	}
	return nil
}

// subsampleSize is the number of triples above which fits first converge
// on a subsample of about this size.
const subsampleSize = 20000

// subsample returns a weighted subsample of d's triples for a warm start, or
// nil when d is small. It is built once per Data. Triples holding more than 1/subsampleSize of the
// customers are all kept with their counts; of the rest every k-th is kept
// with its count multiplied by k, so that every sum over customers is
// estimated without bias (Horvitz-Thompson weights of a systematic sample).
func (d *Data) subsample() *Data {
	d.subOnce.Do(func() { d.sub = d.buildSubsample() })
	return d.sub
}

func (d *Data) buildSubsample() *Data {
	if len(d.Triples) <= 2*subsampleSize {
		return nil
	}
	k := len(d.Triples) / subsampleSize
	big := d.total / subsampleSize
	s := &Data{Triples: make([]Triple, 0, 2*subsampleSize)}
	j := 0
	for _, t := range d.Triples {
		if t.Count >= big {
			s.Triples = append(s.Triples, t)
			continue
		}
		if j%k == 0 {
			t.Count *= float64(k)
			s.Triples = append(s.Triples, t)
		}
		j++
	}
	s.index()
	return s
}
