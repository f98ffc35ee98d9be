package btyd

import (
	"cmp"
	"errors"
	"fmt"
	"math"
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
	if err := validSummary(x, tx, T); err != nil {
		return fmt.Errorf("compressor add: %w", err)
	}
	if !(n > 0) || math.IsInf(n, 1) {
		return fmt.Errorf("compressor add: %w: count %v must be positive and finite", ErrInvalidInput, n)
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
	pairs   []pairRef // distinct (x, t) pairs used by Pareto/NBD, grouped by x
	pStart  []int32   // pairs of xs[k] are pairs[pStart[k]:pStart[k+1]]
	maxTime float64

	subOnce sync.Once
	sub     *Data // see subsample
}

// triRef holds a triple's indices into the per-x, per-time and per-pair tables.
type triRef struct {
	xi, txi, ti int32 // into xs, times, times
	ptx, pt     int32 // into pairs: (x, t_x) and (x, T)
	c           float64
}

type pairRef struct {
	xi, ti int32
}

// NewData validates the triples (duplicates are merged) and builds the index
// tables. It fails with ErrInvalidInput on an invalid summary and with
// ErrDegenerate when there are no customers.
func NewData(triples []Triple) (*Data, error) {
	c := NewCompressor()
	for _, t := range triples {
		if err := c.AddN(t.X, t.TX, t.T, t.Count); err != nil {
			return nil, fmt.Errorf("new data: %w", err)
		}
	}
	if len(c.triples) == 0 {
		return nil, fmt.Errorf("new data: %w: no customers", ErrDegenerate)
	}
	d := &Data{Triples: slices.Clone(c.triples)}
	slices.SortFunc(d.Triples, func(a, b Triple) int {
		return cmp.Or(cmp.Compare(a.X, b.X), cmp.Compare(a.T, b.T), cmp.Compare(a.TX, b.TX))
	})
	d.index()
	return d, nil
}

// index builds the distinct-x, distinct-time and pair tables.
func (d *Data) index() {
	timeSet := make([]float64, 0, 2*len(d.Triples))
	for _, t := range d.Triples {
		timeSet = append(timeSet, t.TX, t.T)
	}
	slices.Sort(timeSet)
	d.times = slices.Compact(timeSet)
	d.maxTime = d.times[len(d.times)-1]
	timeIdx := make(map[float64]int32, len(d.times))
	for i, v := range d.times {
		timeIdx[v] = int32(i)
	}
	d.tri = make([]triRef, len(d.Triples))
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
		r := triRef{xi: xi, txi: timeIdx[t.TX], ti: timeIdx[t.T], c: t.Count}
		d.tri[i] = r
	}
	d.xStart = append(d.xStart, int32(len(d.Triples)))
	d.indexPairs()
}

// indexPairs lists the distinct (x, t) pairs, t being a t_x or a T of a
// triple with that x, grouped by x and sorted by t within a group.
func (d *Data) indexPairs() {
	d.pStart = make([]int32, 0, len(d.xs)+1)
	var ts []int32
	for k := range d.xs {
		d.pStart = append(d.pStart, int32(len(d.pairs)))
		ts = ts[:0]
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
			r := &d.tri[i]
			p, _ := slices.BinarySearch(ts, r.txi)
			r.ptx = base + int32(p)
			p, _ = slices.BinarySearch(ts, r.ti)
			r.pt = base + int32(p)
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
