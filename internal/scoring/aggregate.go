package scoring

import (
	"fmt"
	"math"
	"sync"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/source"
)

// seg summarises one customer's purchase days within one period: the
// calibration period (or the whole observed period without a holdout) or
// the holdout period. It is the only per-customer state of the read: no
// row is stored.
//
// Everything but days is exact whatever the order of the rows: sums,
// minimum, maximum, and the amount of the minimum day. days counts
// distinct days exactly when each new day is later than those seen (rows
// sorted by date or by customer and date, the usual case), earlier than
// all of them, equal to the first or last, or when the days seen are only
// the first and the last. A day strictly between the first and the last
// otherwise may or may not repeat an earlier day; add reports it and the
// customer's days are recounted by a second read (see rescan).
type seg struct {
	first, last int32 // days since 1970-01-01; valid when days > 0
	days        int32 // distinct purchase days
	rows        int32 // transactions
	firstAmt    float64
	total       float64
}

// add records a purchase of amt on day d. It returns true when d falls
// strictly inside (first, last) and the distinct-day count cannot tell
// whether d is new.
func (s *seg) add(d int32, amt float64) (uncertain bool) {
	s.rows++
	s.total += amt
	switch {
	case s.days == 0:
		s.first, s.last, s.days, s.firstAmt = d, d, 1, amt
	case d > s.last:
		s.last = d
		s.days++
	case d == s.first:
		s.firstAmt += amt
	case d == s.last:
	case d < s.first:
		s.first, s.firstAmt = d, amt
		s.days++
	case s.days == 2: // only first and last were seen: d is new
		s.days++
	case s.days == s.last-s.first+1: // every day of the range is a purchase day
	default:
		return true
	}
	return false
}

// merge returns the summary of two periods, o entirely after s.
func (s seg) merge(o seg) seg {
	switch {
	case o.days == 0:
		return s
	case s.days == 0:
		return o
	}
	return seg{first: s.first, last: o.last, days: s.days + o.days, rows: s.rows + o.rows,
		firstAmt: s.firstAmt, total: s.total + o.total}
}

// sumRec is a pre-aggregated customer (source.Summary), in model time units.
type sumRec struct {
	x         int32
	tx, T, mv float64
}

// Customer flags.
const (
	flagPrev    uint8 = 1 << iota // bought in the retention period before last
	flagLast                      // bought in the last retention period
	flagDirty                     // distinct days uncertain: recount by a second read
	flagSummary                   // features come from a source.Summary
)

// shard owns the customers whose id hashes to it: an id index and the
// per customer records. Nothing in it holds a pointer per customer, so the
// garbage collector has almost nothing to trace however many customers
// there are.
type shard struct {
	p *plan
	// ids maps the 64-bit hash of an id to the first customer with that
	// hash; the bytes are compared, and ids whose hash collides with
	// another's live in dups (practically never).
	ids   map[uint64]int32
	dups  map[string]int32
	arena idArena
	a, b  paged[seg] // a: up to the split day; b: the holdout (only with a holdout)
	flags paged[uint8]
	sums  paged[sumRec]
	attrs attrStore
	n     int32
	txns  int64
	dirty int64
	nsums int64
	// err is set when a customer cannot be recorded (too many customers,
	// an id longer than maxIDLen).
	err error
}

func newShard(p *plan) *shard {
	return &shard{p: p, ids: make(map[uint64]int32, 1<<12)}
}

// intern returns the index of the customer with id (hash h), adding it
// when it is new; -1 when it cannot be added.
func (s *shard) intern(h uint64, id []byte) int32 {
	idx, ok := s.ids[h]
	if ok {
		if string(s.arena.get(idx)) == string(id) {
			return idx
		}
		if s.dups == nil {
			s.dups = map[string]int32{}
		}
		if idx, ok := s.dups[string(id)]; ok {
			return idx
		}
	}
	switch {
	case s.n == math.MaxInt32:
		s.err = fmt.Errorf("scoring: more than %d customers in one shard", math.MaxInt32)
		return -1
	case len(id) > maxIDLen:
		s.err = fmt.Errorf("scoring: a customer id is longer than %d bytes", maxIDLen)
		return -1
	}
	idx = s.n
	s.n++
	n := int(s.n)
	s.arena.refs.grow(n)
	s.arena.add(idx, id)
	if ok {
		s.dups[string(id)] = idx
	} else {
		s.ids[h] = idx
	}
	s.a.grow(n)
	if s.p.holdout {
		s.b.grow(n)
	}
	s.flags.grow(n)
	return idx
}

// lookup returns the index of a known customer, or -1.
func (s *shard) lookup(h uint64, id []byte) int32 {
	idx, ok := s.ids[h]
	if !ok {
		return -1
	}
	if string(s.arena.get(idx)) == string(id) {
		return idx
	}
	if idx, ok := s.dups[string(id)]; ok {
		return idx
	}
	return -1
}

// txn aggregates one transaction (day <= the observation end).
func (s *shard) txn(h uint64, id []byte, day int32, amt float64) {
	idx := s.intern(h, id)
	if idx < 0 {
		return
	}
	s.txns++
	sg := s.a.at(idx)
	if day > s.p.split {
		sg = s.b.at(idx)
	}
	fl := s.flags.at(idx)
	if sg.add(day, amt) && *fl&flagDirty == 0 {
		*fl |= flagDirty
		s.dirty++
	}
	if day > s.p.lastFrom {
		*fl |= flagLast
	} else if day > s.p.prevFrom {
		*fl |= flagPrev
	}
}

// record applies a customer or summary record.
func (s *shard) record(r *rec, kvs []kv) {
	idx := s.intern(hashID(r.id), unsafeBytes(r.id))
	if idx < 0 {
		return
	}
	if r.summary {
		s.sums.grow(int(idx) + 1)
		*s.sums.at(idx) = r.sum
		if *s.flags.at(idx)&flagSummary == 0 {
			s.nsums++
		}
		*s.flags.at(idx) |= flagSummary
		if len(kvs) == 0 && r.contact == (customer.Contact{}) && !s.attrs.known.has(idx) {
			return
		}
	}
	s.attrs.put(idx, kvs, &r.contact)
}

// apply aggregates a batch in order.
func (s *shard) apply(b *batch) {
	start := int32(0)
	row := 0
	runTo := func(pos int) {
		for ; row < pos; row++ {
			end := b.ends[row]
			s.txn(b.hashes[row], b.ids[start:end], b.days[row], b.amts[row])
			start = end
		}
	}
	for i := range b.recs {
		r := &b.recs[i]
		runTo(r.pos)
		s.record(r, b.kvs[r.kvFrom:r.kvTo])
	}
	runTo(len(b.days))
}

// rec is a customer or summary record in transit to its shard.
type rec struct {
	pos          int // applies after this many transactions of the batch
	id           string
	summary      bool
	sum          sumRec
	kvFrom, kvTo int32
	contact      customer.Contact
}

// batch carries rows from the reader's goroutine to a shard's goroutine.
type batch struct {
	hashes []uint64
	ids    []byte
	ends   []int32
	days   []int32
	amts   []float64
	recs   []rec
	kvs    []kv
}

const (
	batchRows     = 16384
	batchesPerWkr = 4
)

func (b *batch) reset() {
	b.hashes, b.ids, b.ends, b.days, b.amts = b.hashes[:0], b.ids[:0], b.ends[:0], b.days[:0], b.amts[:0]
	clear(b.recs)
	clear(b.kvs)
	b.recs, b.kvs = b.recs[:0], b.kvs[:0]
}

// aggregator is the source.Sink of the first read. With one shard it
// aggregates on the reader's goroutine; with more, it batches rows by
// customer hash to one goroutine per shard.
type aggregator struct {
	p      *plan
	shards []*shard
	cur    []*batch
	work   []chan *batch
	free   []chan *batch
	wg     sync.WaitGroup
	late   int64
	seen   int64
	prog   *progress
	kvs    []kv
	closed bool
}

var _ source.Sink = (*aggregator)(nil)

func newAggregator(p *plan, shards []*shard, prog *progress) *aggregator {
	a := &aggregator{p: p, shards: shards, prog: prog}
	if len(shards) == 1 {
		return a
	}
	for i, sh := range shards {
		work := make(chan *batch, batchesPerWkr)
		free := make(chan *batch, batchesPerWkr)
		for k := 0; k < batchesPerWkr-1; k++ {
			free <- newBatch()
		}
		a.work = append(a.work, work)
		a.free = append(a.free, free)
		a.cur = append(a.cur, newBatch())
		a.wg.Add(1)
		go func(sh *shard) {
			defer a.wg.Done()
			for b := range work {
				sh.apply(b)
				free <- b
			}
		}(sh)
		_ = i
	}
	return a
}

func newBatch() *batch {
	return &batch{
		hashes: make([]uint64, 0, batchRows),
		ids:    make([]byte, 0, batchRows*12),
		ends:   make([]int32, 0, batchRows),
		days:   make([]int32, 0, batchRows),
		amts:   make([]float64, 0, batchRows),
	}
}

func (a *aggregator) tick() {
	a.seen++
	if a.seen&0xffff == 0 && a.prog != nil {
		a.prog.update(a.seen)
	}
}

// Transaction implements source.Sink.
func (a *aggregator) Transaction(t *source.Transaction) error {
	a.tick()
	if t.Day > a.p.end {
		a.late++
		return nil
	}
	h := hashID(t.CustomerID)
	if len(a.shards) == 1 {
		a.shards[0].txn(h, t.CustomerID, t.Day, t.Amount)
		return nil
	}
	s := shardOfHash(h, len(a.shards))
	b := a.cur[s]
	b.hashes = append(b.hashes, h)
	b.ids = append(b.ids, t.CustomerID...)
	b.ends = append(b.ends, int32(len(b.ids)))
	b.days = append(b.days, t.Day)
	b.amts = append(b.amts, t.Amount)
	if len(b.days) >= batchRows {
		a.flush(s)
	}
	return nil
}

func (a *aggregator) flush(s int) {
	a.work[s] <- a.cur[s]
	b := <-a.free[s]
	b.reset()
	a.cur[s] = b
}

func (a *aggregator) send(r rec, attrs customer.Attributes) {
	if len(a.shards) == 1 {
		a.kvs = a.kvs[:0]
		for k, v := range attrs {
			a.kvs = append(a.kvs, kv{k, v})
		}
		a.shards[0].record(&r, a.kvs)
		return
	}
	s := shardOfHash(hashID(r.id), len(a.shards))
	b := a.cur[s]
	r.pos = len(b.days)
	r.kvFrom = int32(len(b.kvs))
	for k, v := range attrs {
		b.kvs = append(b.kvs, kv{k, v})
	}
	r.kvTo = int32(len(b.kvs))
	b.recs = append(b.recs, r)
	if len(b.recs) >= batchRows/4 {
		a.flush(s)
	}
}

// Customer implements source.Sink.
func (a *aggregator) Customer(c *source.Customer) error {
	a.tick()
	a.send(rec{id: c.ID, contact: c.Contact}, c.Attributes)
	return nil
}

// Summary implements source.Sink.
func (a *aggregator) Summary(m *source.Summary) error {
	a.tick()
	if !(m.Age >= m.Recency && m.Recency >= 0) || m.Frequency < 0 || math.IsInf(m.Age, 0) ||
		(m.Frequency == 0 && m.Recency != 0) || math.IsNaN(m.Monetary) || math.IsInf(m.Monetary, 0) {
		return fmt.Errorf("scoring: summary row %d: invalid frequency %d, recency %v, age %v, monetary %v",
			m.Row, m.Frequency, m.Recency, m.Age, m.Monetary)
	}
	a.send(rec{id: m.ID, summary: true, contact: m.Contact,
		sum: sumRec{x: m.Frequency, tx: m.Recency, T: m.Age, mv: m.Monetary}}, m.Attributes)
	return nil
}

// close hands the last batches to the shards and waits for them. It is
// safe to call twice.
func (a *aggregator) close() {
	if a.closed || len(a.shards) == 1 {
		a.closed = true
		return
	}
	a.closed = true
	for s := range a.shards {
		if b := a.cur[s]; len(b.days) > 0 || len(b.recs) > 0 {
			a.work[s] <- b
		}
		close(a.work[s])
	}
	a.wg.Wait()
}
