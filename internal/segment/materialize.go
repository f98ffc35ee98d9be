package segment

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"runtime"
	"sync"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Store is what Materialize needs of the store; store.Store has it.
type Store interface {
	SnapshotScan(ctx context.Context, params *store.SnapshotScanParams, fn func(*customer.Scored) error) error
	MembershipApply(ctx context.Context, params *store.MembershipApplyParams) (*store.MembershipDiff, error)
	// MembershipGet and MembershipScan read a stored membership, for a
	// Baseline that does not know a segment yet.
	MembershipGet(ctx context.Context, segment string) (*store.Membership, error)
	MembershipScan(ctx context.Context, params *store.MembershipScanParams, fn func(*store.Member) error) error
}

// MaterializeParams say which rule to evaluate on which snapshot, for
// which segment.
type MaterializeParams struct {
	// Segment is the key of the segment in the store, "namespace/name".
	Segment string
	// SnapshotID is the scored snapshot to evaluate. It must not be older
	// than the one the segment was last applied on (store.ErrConflict).
	SnapshotID int64
	// Rule is the compiled rule.
	Rule *Rule
	// Now is the rule's `now`.
	Now time.Time
	// Workers is as in BatchParams.
	Workers int
}

// Stats describe one materialization.
type Stats struct {
	// Size is the number of members after the apply; Entered and Exited
	// the customers that joined and left (the store's exact diff).
	Size, Entered, Exited int64
	// PreviousSnapshotID is the snapshot of the membership replaced (0
	// the first time).
	PreviousSnapshotID int64
	// Evaluated is the number of customers in the snapshot, all evaluated.
	Evaluated int64
	// Share is Size / Evaluated, 0 to 1 (0 for an empty snapshot).
	Share float64
	// Value is the members' total expected value.
	Value float64
	// Errors counts the customers for whom the rule failed at run time
	// (division by zero, the cost limit, ...): they are not members.
	// FirstError is the first failure's message, without customer data.
	Errors     int64
	FirstError string
}

// Materialize evaluates one rule over every customer of a snapshot and
// replaces the segment's membership with the customers it selects: a
// batch of one (see MaterializeBatch).
func Materialize(ctx context.Context, st Store, p *MaterializeParams) (*Stats, error) {
	if p == nil {
		return nil, errors.New("segment: nil MaterializeParams")
	}
	res, err := MaterializeBatch(ctx, st, &BatchParams{
		SnapshotID: p.SnapshotID, Now: p.Now, Workers: p.Workers,
		Segments: []BatchSegment{{Segment: p.Segment, Rule: p.Rule}},
	})
	if err != nil {
		return nil, err
	}
	return res[0].Stats, res[0].Err
}

// BatchSegment is one segment of a batch.
type BatchSegment struct {
	// Segment is the key of the segment in the store, "namespace/name".
	Segment string
	// Rule is its compiled rule.
	Rule *Rule
}

// BatchParams say which segments to evaluate on which snapshot.
type BatchParams struct {
	// SnapshotID is the scored snapshot to evaluate. It must not be older
	// than the one a segment was last applied on (that segment's result
	// is then store.ErrConflict).
	SnapshotID int64
	// Segments are the segments to evaluate, each key at most once.
	Segments []BatchSegment
	// Now is the rules' `now`.
	Now time.Time
	// Workers is the number of goroutines evaluating the rules while
	// another one scans the snapshot. If zero, GOMAXPROCS-1 (at least 1)
	// when GOMAXPROCS > 1 (the scan takes the other core), else the rules
	// are evaluated inline in the scan. Negative: inline.
	Workers int
	// Applies is the number of memberships applied at once, each in a
	// store transaction on a connection of its own. If zero, 2.
	Applies int
	// Baseline, when set, is what the store holds for the source's
	// segments after the previous batches: the applies then send only the
	// changes, and the batch updates it. Nil: every apply is a full one.
	Baseline *Baseline
}

// BatchResult is one segment's outcome: its Stats, or the error of its
// apply (store.ErrConflict when its membership is on a newer snapshot).
type BatchResult struct {
	Segment string
	Stats   *Stats
	Err     error
}

// MaterializeBatch evaluates every segment's rule over one scan of a
// snapshot, then replaces each segment's membership with the customers its
// rule selects, each in one store transaction that computes exact entries
// and exits. The results are in the order of p.Segments.
//
// The snapshot is streamed, never held: a scan goroutine copies customers
// into fixed-size chunks (only the fields the rules read), the workers
// evaluate every rule on a chunk, and what is kept is the customers' ids
// (one string each) and one bit per customer and segment. The applies run
// after the scan, p.Applies at a time, so the store needs at most
// max(1, p.Applies) connections.
//
// A customer for whom a rule fails at run time is not a member of that
// segment; it is counted in its Stats.Errors. MaterializeBatch fails as a
// whole when the scan fails (store.ErrNotFound for a missing snapshot);
// then nothing changes. A failed apply changes nothing of its segment and
// is that segment's BatchResult.Err.
func MaterializeBatch(ctx context.Context, st Store, p *BatchParams) ([]BatchResult, error) {
	if err := p.validate(st); err != nil {
		return nil, err
	}
	ev, err := p.evaluate(ctx, st)
	if err != nil {
		if len(p.Segments) == 1 {
			return nil, fmt.Errorf("segment %s: materialize on snapshot %d: %w", p.Segments[0].Segment, p.SnapshotID, err)
		}
		return nil, fmt.Errorf("segments: materialize %d on snapshot %d: %w", len(p.Segments), p.SnapshotID, err)
	}
	return p.apply(ctx, st, ev), nil
}

func (p *BatchParams) validate(st Store) error {
	switch {
	case p == nil:
		return errors.New("segment: nil BatchParams")
	case len(p.Segments) == 0:
		return errors.New("segment: no segments to materialize")
	case st == nil:
		return fmt.Errorf("segment %s: no store", p.Segments[0].Segment)
	}
	seen := make(map[string]bool, len(p.Segments))
	for _, s := range p.Segments {
		switch {
		case s.Rule == nil:
			return fmt.Errorf("segment %s: no rule", s.Segment)
		case seen[s.Segment]:
			return fmt.Errorf("segment %s: twice in one batch", s.Segment)
		}
		seen[s.Segment] = true
	}
	return nil
}

// evaluation is what the scan leaves for the applies: every customer's
// id in scan order and, per segment, a bitmap of its members and a tally.
type evaluation struct {
	ids     []string
	members [][]uint64
	tallies []tally

	indexOnce sync.Once
	index     map[string]int32 // ids by value, built on first use
}

// position returns the index of each customer id, built once.
func (ev *evaluation) position() map[string]int32 {
	ev.indexOnce.Do(func() {
		ev.index = make(map[string]int32, len(ev.ids))
		for i, id := range ev.ids {
			ev.index[id] = int32(i)
		}
	})
	return ev.index
}

// ids yields segment k's member ids.
func (ev *evaluation) memberIDs(k int) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for w, word := range ev.members[k] {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				if !yield(ev.ids[w*64+b], nil) {
					return
				}
			}
		}
	}
}

// apply replaces each segment's membership, p.Applies at a time.
func (p *BatchParams) apply(ctx context.Context, st Store, ev *evaluation) []BatchResult {
	res := make([]BatchResult, len(p.Segments))
	n := p.Applies
	if n <= 0 {
		n = 2
	}
	var a *alignment
	if p.Baseline != nil && p.Baseline.Len() > 0 {
		a = p.Baseline.align(ev.ids)
	}
	versions := make([]int64, len(p.Segments))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for k, s := range p.Segments {
		res[k].Segment = s.Segment
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var diff *store.MembershipDiff
			diff, res[k].Err = p.applyMembership(ctx, st, ev, a, k)
			if res[k].Err != nil {
				res[k].Err = fmt.Errorf("segment %s: materialize on snapshot %d: %w", s.Segment, p.SnapshotID, res[k].Err)
				return
			}
			versions[k] = diff.Version
			res[k].Stats = ev.stats(k, diff)
		}()
	}
	wg.Wait()
	if p.Baseline != nil {
		p.Baseline.update(ev, a, p, versions)
	}
	return res
}

// stats are segment k's Stats after its apply.
func (ev *evaluation) stats(k int, diff *store.MembershipDiff) *Stats {
	t := &ev.tallies[k]
	s := &Stats{
		Size: diff.Size, Entered: diff.Entered, Exited: diff.Exited, PreviousSnapshotID: diff.PreviousSnapshotID,
		Evaluated: int64(len(ev.ids)), Value: t.total(), Errors: t.errors, FirstError: t.firstErr,
	}
	if s.Evaluated > 0 {
		s.Share = float64(s.Size) / float64(s.Evaluated)
	}
	return s
}

// tally accumulates one segment's evaluation results. Values are summed
// per chunk and the chunk sums in scan order, so Value does not depend on
// scheduling.
type tally struct {
	errors     int64
	firstErr   string
	firstErrAt [2]int64 // (chunk seq, index) of the first error
	values     []float64
}

// first keeps msg when it is the earliest failure in scan order.
func (t *tally) first(seq, i int64, msg string) {
	at := [2]int64{seq, i}
	if t.firstErr == "" || at[0] < t.firstErrAt[0] || (at[0] == t.firstErrAt[0] && at[1] < t.firstErrAt[1]) {
		t.firstErr, t.firstErrAt = msg, at
	}
}

func (t *tally) value(seq int64, v float64) {
	for int64(len(t.values)) <= seq {
		t.values = append(t.values, 0)
	}
	t.values[seq] += v
}

func (t *tally) total() float64 {
	var s float64
	for _, v := range t.values {
		s += v
	}
	return s
}

func evalMessage(err error) string {
	var ee *EvalError
	if errors.As(err, &ee) {
		return ee.Message
	}
	return Redact(err.Error())
}

// chunkSize is the number of customers copied and evaluated together; a
// multiple of 64, so a chunk's member bits are whole bitmap words.
const (
	chunkSize  = 512
	chunkWords = chunkSize / 64
)

// chunk is chunkSize customers and, per segment, the results of its rule.
type chunk struct {
	seq  int64
	n    int
	recs []record
	segs []chunkResult
}

// chunkResult is one rule's results on a chunk.
type chunkResult struct {
	bits       [chunkWords]uint64
	errors     int64
	firstErr   string
	firstErrAt int64
	value      float64
}

// evaluate runs every rule over the chunk's records.
func (ch *chunk) evaluate(l *layout, ms []*Matcher) {
	for k := range ch.segs {
		cr := &ch.segs[k]
		*cr = chunkResult{}
		m, slots := ms[k], &l.rules[k]
		for i := range ch.n {
			ok, err := m.matchSlots(&ch.recs[i], slots)
			switch {
			case err != nil:
				if cr.errors == 0 {
					cr.firstErr, cr.firstErrAt = evalMessage(err), int64(i)
				}
				cr.errors++
			case ok:
				cr.bits[i/64] |= 1 << (i % 64)
				cr.value += ch.recs[i].c.Scores.ExpectedValue
			}
		}
	}
}

// evaluate scans the snapshot once and evaluates every rule.
func (p *BatchParams) evaluate(ctx context.Context, st Store) (*evaluation, error) {
	l := newLayout(p.Segments)
	workers := p.Workers
	if workers == 0 && runtime.GOMAXPROCS(0) > 1 {
		workers = max(1, runtime.GOMAXPROCS(0)-1)
	}
	ev := &evaluation{members: make([][]uint64, len(p.Segments)), tallies: make([]tally, len(p.Segments))}
	merge := func(ch *chunk) {
		for k := range ch.segs {
			cr, t := &ch.segs[k], &ev.tallies[k]
			bm := ev.members[k]
			for int64(len(bm)) < (ch.seq+1)*chunkWords {
				bm = append(bm, 0)
			}
			copy(bm[ch.seq*chunkWords:], cr.bits[:])
			ev.members[k] = bm
			if cr.errors > 0 {
				t.errors += cr.errors
				t.first(ch.seq, cr.firstErrAt, cr.firstErr)
			}
			t.value(ch.seq, cr.value)
		}
	}
	newChunk := func() *chunk {
		ch := &chunk{recs: make([]record, chunkSize), segs: make([]chunkResult, len(p.Segments))}
		for i := range ch.recs {
			ch.recs[i] = l.newRecord()
		}
		return ch
	}
	var err error
	if workers > 0 {
		err = p.pipeline(ctx, st, l, workers, newChunk, merge, &ev.ids)
	} else {
		err = p.inline(ctx, st, l, newChunk(), merge, &ev.ids)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// inline evaluates each chunk on the scan's goroutine.
func (p *BatchParams) inline(ctx context.Context, st Store, l *layout, ch *chunk, merge func(*chunk), ids *[]string) error {
	ms := l.matchers(p.Now)
	flush := func() {
		ch.evaluate(l, ms)
		merge(ch)
		ch.seq++
		ch.n = 0
	}
	err := st.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: p.SnapshotID}, func(c *customer.Scored) error {
		ch.recs[ch.n].copyFrom(l, c)
		*ids = append(*ids, c.ID)
		ch.n++
		if ch.n == chunkSize {
			flush()
		}
		return nil
	})
	if err == nil && ch.n > 0 {
		flush()
	}
	return err
}

// pipeline runs the scan in one goroutine and the evaluation in workers,
// and merges the results on the caller's goroutine. Chunks circulate
// through three channels that each hold every chunk, so no send blocks;
// the scan waits for a free chunk.
func (p *BatchParams) pipeline(ctx context.Context, st Store, l *layout, workers int, newChunk func() *chunk, merge func(*chunk), ids *[]string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nChunks := 2*workers + 2
	free := make(chan *chunk, nChunks)
	work := make(chan *chunk, nChunks)
	done := make(chan *chunk, nChunks)
	for range nChunks {
		free <- newChunk()
	}

	var scanErr error
	go func() {
		defer close(work)
		var seq int64
		var cur *chunk
		take := func() bool {
			select {
			case cur = <-free:
				cur.seq, cur.n = seq, 0
				seq++
				return true
			case <-ctx.Done():
				cur = nil
				return false
			}
		}
		if !take() {
			scanErr = ctx.Err()
			return
		}
		scanErr = st.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: p.SnapshotID}, func(c *customer.Scored) error {
			cur.recs[cur.n].copyFrom(l, c)
			*ids = append(*ids, c.ID)
			cur.n++
			if cur.n == chunkSize {
				work <- cur
				if !take() {
					return ctx.Err()
				}
			}
			return nil
		})
		if cur != nil && cur.n > 0 && scanErr == nil {
			work <- cur
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := l.matchers(p.Now)
			for ch := range work {
				ch.evaluate(l, ms)
				done <- ch
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	for ch := range done {
		merge(ch)
		free <- ch
	}
	return scanErr
}

// layout is the union of what a batch's rules read: each attribute and
// custom score gets one slot in a record, and each rule maps its own
// slots to them.
type layout struct {
	attrs, customs []string
	rules          []ruleSlots
}

// ruleSlots are a rule and, for each of its attribute and custom score
// slots, the record's slot.
type ruleSlots struct {
	rule           *Rule
	attrs, customs []int
}

func newLayout(segs []BatchSegment) *layout {
	l := &layout{rules: make([]ruleSlots, len(segs))}
	attrSlot, customSlot := map[string]int{}, map[string]int{}
	slot := func(m map[string]int, list *[]string, key string) int {
		if i, ok := m[key]; ok {
			return i
		}
		m[key] = len(*list)
		*list = append(*list, key)
		return m[key]
	}
	for k, s := range segs {
		rs := ruleSlots{rule: s.Rule, attrs: make([]int, len(s.Rule.attrs)), customs: make([]int, len(s.Rule.customs))}
		for i, a := range s.Rule.attrs {
			rs.attrs[i] = slot(attrSlot, &l.attrs, a)
		}
		for i, c := range s.Rule.customs {
			rs.customs[i] = slot(customSlot, &l.customs, c)
		}
		l.rules[k] = rs
	}
	return l
}

// matchers returns one Matcher per rule.
func (l *layout) matchers(now time.Time) []*Matcher {
	ms := make([]*Matcher, len(l.rules))
	for k := range l.rules {
		ms[k] = l.rules[k].rule.NewMatcher(now)
	}
	return ms
}
