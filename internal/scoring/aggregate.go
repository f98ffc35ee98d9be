package scoring

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

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

// crec is the per customer record of the read: the id (inline when it is
// short), flags and the first period's summary, 48 bytes, so that a
// transaction usually touches one index slot and one record.
type crec struct {
	id    [14]byte
	idLen uint8 // <= 14: inline; longID: in the shard's arena
	flags uint8
	a     seg // up to the split day (the whole observed period without a holdout)
}

const (
	inlineID = 14
	longID   = 255
)

// shard owns the customers whose id hashes to it: an id index and the
// per customer records. Nothing in it holds a pointer per customer, so the
// garbage collector has almost nothing to trace however many customers
// there are.
type shard struct {
	p     *plan
	index idIndex
	recs  paged[crec]
	b     paged[seg] // the holdout period (only with a holdout, until folded)
	// folded: b has been merged into the records' a (after summarize).
	folded bool
	arena  idArena // ids longer than inlineID
	sums   paged[sumRec]
	attrs  attrStore
	n      int32
	txns   int64
	dirty  int64
	nsums  int64
	// err is set when a customer cannot be recorded (too many customers,
	// an id longer than maxIDLen).
	err error
	// touch keeps the prefetching loads from being optimised away.
	touch uint64
}

func newShard(p *plan) *shard {
	s := &shard{p: p}
	s.index.init(12)
	return s
}

// idIndex is an open-addressing hash index from customer id to index:
// slots hold the high 32 bits of the id's hash (the tag) and the index
// plus one; the position is the tag's top bits, probing linearly. A tag
// match is confirmed by comparing the id in the record, which the caller
// reads next anyway.
type idIndex struct {
	slots []uint64
	shift uint // 32 - log2(len(slots))
	n     int
}

func (t *idIndex) init(bits uint) {
	t.slots = make([]uint64, 1<<bits)
	t.shift = 32 - bits
	t.n = 0
}

func (t *idIndex) grow() {
	old := t.slots
	t.init(32 - t.shift + 1)
	mask := uint64(len(t.slots) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		pos := (v >> 32) >> t.shift
		for t.slots[pos] != 0 {
			pos = (pos + 1) & mask
		}
		t.slots[pos] = v
		t.n++
	}
}

// idEqual reports whether customer idx has the given id.
func (s *shard) idEqual(r *crec, idx int32, id []byte) bool {
	if r.idLen != longID {
		return int(r.idLen) == len(id) && string(r.id[:r.idLen]) == string(id)
	}
	return string(s.arena.get(idx)) == string(id)
}

// id returns customer idx's id, sharing the record's or arena's bytes.
func (s *shard) id(idx int32) string {
	r := s.recs.at(idx)
	if r.idLen != longID {
		if r.idLen == 0 {
			return ""
		}
		return unsafe.String(&r.id[0], int(r.idLen))
	}
	return s.arena.str(idx)
}

// find returns the index of the customer with id (hash h), or -1 and the
// free slot where it would go.
func (s *shard) find(h uint64, id []byte) (int32, uint64) {
	t := &s.index
	tag := h >> 32
	mask := uint64(len(t.slots) - 1)
	pos := tag >> t.shift
	for {
		v := t.slots[pos]
		if v == 0 {
			return -1, pos
		}
		if v>>32 == tag {
			idx := int32(uint32(v) - 1)
			if s.idEqual(s.recs.at(idx), idx, id) {
				return idx, pos
			}
		}
		pos = (pos + 1) & mask
	}
}

// intern returns the index of the customer with id (hash h), adding it
// when it is new; -1 when it cannot be added.
func (s *shard) intern(h uint64, id []byte) int32 {
	idx, pos := s.find(h, id)
	if idx >= 0 {
		return idx
	}
	switch {
	case s.n == math.MaxInt32-1:
		s.err = fmt.Errorf("scoring: more than %d customers in one shard", math.MaxInt32-1)
		return -1
	case len(id) > maxIDLen:
		s.err = fmt.Errorf("scoring: a customer id is longer than %d bytes", maxIDLen)
		return -1
	}
	idx = s.n
	s.n++
	n := int(s.n)
	s.recs.grow(n)
	r := s.recs.at(idx)
	if len(id) <= inlineID {
		r.idLen = uint8(copy(r.id[:], id))
	} else {
		r.idLen = longID
		s.arena.refs.grow(n)
		s.arena.add(idx, id)
	}
	if s.p.holdout {
		s.b.grow(n)
	}
	t := &s.index
	t.slots[pos] = (h>>32)<<32 | uint64(idx+1)
	t.n++
	if 2*t.n > len(t.slots) {
		t.grow()
	}
	return idx
}

// lookup returns the index of a known customer, or -1.
func (s *shard) lookup(h uint64, id []byte) int32 {
	idx, _ := s.find(h, id)
	return idx
}

// txn aggregates one transaction (day <= the observation end).
func (s *shard) txn(h uint64, id []byte, day int32, amt float64) {
	idx := s.intern(h, id)
	if idx < 0 {
		return
	}
	s.txns++
	r := s.recs.at(idx)
	sg := &r.a
	if day > s.p.split {
		sg = s.b.at(idx)
	}
	if sg.add(day, amt) && r.flags&flagDirty == 0 {
		r.flags |= flagDirty
		s.dirty++
	}
	if day > s.p.lastFrom {
		r.flags |= flagLast
	} else if day > s.p.prevFrom {
		r.flags |= flagPrev
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
		fl := &s.recs.at(idx).flags
		if *fl&flagSummary == 0 {
			s.nsums++
		}
		*fl |= flagSummary
		if len(kvs) == 0 && r.contact == (customer.Contact{}) && !s.attrs.known.has(idx) {
			return
		}
	}
	s.attrs.put(idx, kvs, &r.contact)
}

// apply aggregates a batch in order.
func (s *shard) apply(b *batch) {
	row := 0
	start := int32(0)
	for i := range b.recs {
		r := &b.recs[i]
		start = s.rows(b, row, r.pos, start)
		row = r.pos
		s.record(r, b.kvs[r.kvFrom:r.kvTo])
	}
	s.rows(b, row, len(b.days), start)
}

// prefetchGroup is how many rows' index slots and records are touched
// before the rows are applied: the loads are independent, so their cache
// misses overlap instead of following one another.
const prefetchGroup = 16

// rows applies transactions [from, to) of b (start: the first's id offset)
// and returns the id offset after them.
func (s *shard) rows(b *batch, from, to int, start int32) int32 {
	t := &s.index
	for g := from; g < to; g += prefetchGroup {
		end := min(g+prefetchGroup, to)
		slots, shift := t.slots, t.shift
		var touch uint64
		for r := g; r < end; r++ {
			touch += slots[(b.hashes[r]>>32)>>shift]
		}
		for r := g; r < end; r++ {
			h := b.hashes[r]
			if v := slots[(h>>32)>>shift]; v>>32 == h>>32 && v != 0 {
				touch += uint64(s.recs.at(int32(uint32(v) - 1)).idLen)
			}
		}
		s.touch += touch
		for r := g; r < end; r++ {
			e := b.ends[r]
			s.txn(b.hashes[r], b.ids[start:e], b.days[r], b.amts[r])
			start = e
		}
	}
	return start
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
	closed bool
}

var _ source.Sink = (*aggregator)(nil)

func newAggregator(p *plan, shards []*shard, prog *progress) *aggregator {
	a := &aggregator{p: p, shards: shards, prog: prog}
	if len(shards) == 1 {
		// One shard: the batches are applied on the reader's goroutine.
		a.cur = []*batch{newBatch()}
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
	if len(a.shards) == 1 {
		a.shards[0].apply(a.cur[0])
		a.cur[0].reset()
		return
	}
	a.work[s] <- a.cur[s]
	b := <-a.free[s]
	b.reset()
	a.cur[s] = b
}

func (a *aggregator) send(r rec, attrs customer.Attributes) {
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
	if a.closed {
		return
	}
	a.closed = true
	if len(a.shards) == 1 {
		a.flush(0)
		return
	}
	for s := range a.shards {
		if b := a.cur[s]; len(b.days) > 0 || len(b.recs) > 0 {
			a.work[s] <- b
		}
		close(a.work[s])
	}
	a.wg.Wait()
}
