package segment

import (
	"context"
	"errors"
	"fmt"
	"iter"
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
	// Workers is the number of goroutines evaluating the rule while
	// another one scans the snapshot. If zero, 1 when GOMAXPROCS > 1
	// (the scan and the store's own work take the other core), else the
	// rule is evaluated inline in the scan. Negative: inline.
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

// tally accumulates evaluation results. Values are summed per chunk and
// the chunk sums in scan order, so Value does not depend on scheduling.
type tally struct {
	evaluated, members, errors int64
	firstErr                   string
	firstErrAt                 [2]int64 // (chunk seq, index) of the first error
	values                     []float64
}

// error counts a failure at (chunk seq, index in the scan).
func (t *tally) error(seq, i int64, err error) {
	t.errors++
	t.first(seq, i, evalMessage(err))
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

// Materialize evaluates a rule over every customer of a snapshot and
// replaces the segment's membership with the customers it selects, in
// one store transaction that computes exact entries and exits.
//
// The snapshot is streamed, never held: a scan goroutine copies customers
// into fixed-size chunks (only the fields the rule reads), the workers
// evaluate chunks, and member ids are fed to MembershipApply as they come.
// The store needs two connections at once (the scan and the apply).
//
// A customer for whom the rule fails at run time is not a member; it is
// counted in Stats.Errors. Materialize fails when the scan or the apply
// fails (store.ErrNotFound for a missing snapshot, store.ErrConflict for
// an older snapshot than the applied one); then nothing changes.
func Materialize(ctx context.Context, st Store, p *MaterializeParams) (*Stats, error) {
	switch {
	case p == nil:
		return nil, errors.New("segment: nil MaterializeParams")
	case p.Rule == nil:
		return nil, fmt.Errorf("segment %s: no rule", p.Segment)
	case st == nil:
		return nil, fmt.Errorf("segment %s: no store", p.Segment)
	}
	workers := p.Workers
	if workers == 0 && runtime.GOMAXPROCS(0) > 1 {
		workers = 1
	}
	var t tally
	members := func(yield func(string, error) bool) {
		if workers > 0 {
			pipeline(ctx, st, p, workers, &t, yield)
		} else {
			inline(ctx, st, p, &t, yield)
		}
	}
	diff, err := st.MembershipApply(ctx, &store.MembershipApplyParams{
		Segment:    p.Segment,
		SnapshotID: p.SnapshotID,
		Members:    iter.Seq2[string, error](members),
	})
	if err != nil {
		return nil, fmt.Errorf("segment %s: materialize on snapshot %d: %w", p.Segment, p.SnapshotID, err)
	}
	s := &Stats{
		Size: diff.Size, Entered: diff.Entered, Exited: diff.Exited, PreviousSnapshotID: diff.PreviousSnapshotID,
		Evaluated: t.evaluated, Value: t.total(), Errors: t.errors, FirstError: t.firstErr,
	}
	if s.Evaluated > 0 {
		s.Share = float64(s.Size) / float64(s.Evaluated)
	}
	return s, nil
}

var errStopped = errors.New("segment: members no longer wanted")

// inline evaluates in the scan callback and yields from there.
func inline(ctx context.Context, st Store, p *MaterializeParams, t *tally, yield func(string, error) bool) {
	m := p.Rule.NewMatcher(p.Now)
	var i int64
	stopped := false
	err := st.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: p.SnapshotID}, func(c *customer.Scored) error {
		ok, err := m.Match(c)
		t.evaluated++
		seq := i / chunkSize
		if err != nil {
			t.error(seq, i, err)
		} else if ok {
			t.members++
			t.value(seq, c.Scores.ExpectedValue)
			if !yield(c.ID, nil) {
				stopped = true
				return errStopped
			}
		}
		i++
		return nil
	})
	if err != nil && !stopped {
		yield("", err)
	}
}

// chunkSize is the number of customers copied and evaluated together.
const chunkSize = 512

type chunk struct {
	seq     int64
	n       int
	recs    []record
	members []string
	t       tally // this chunk's results
}

// pipeline runs the scan in one goroutine and the evaluation in workers,
// and yields member ids on the caller's goroutine (the store's consumer).
// Chunks circulate through three channels that each hold every chunk, so
// no send blocks; the scan waits for a free chunk.
func pipeline(ctx context.Context, st Store, p *MaterializeParams, workers int, t *tally, yield func(string, error) bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nChunks := 2*workers + 2
	free := make(chan *chunk, nChunks)
	work := make(chan *chunk, nChunks)
	done := make(chan *chunk, nChunks)
	for range nChunks {
		ch := &chunk{recs: make([]record, chunkSize)}
		for i := range ch.recs {
			ch.recs[i] = newRecord(p.Rule)
		}
		free <- ch
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
			cur.recs[cur.n].copyFrom(p.Rule, c)
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
			m := p.Rule.NewMatcher(p.Now)
			for ch := range work {
				ch.evaluate(m)
				done <- ch
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()

	stopped := false
	for ch := range done {
		if !stopped {
			for _, id := range ch.members {
				if !yield(id, nil) {
					stopped = true
					cancel()
					break
				}
			}
		}
		t.evaluated += ch.t.evaluated
		t.members += ch.t.members
		if ch.t.errors > 0 {
			t.errors += ch.t.errors
			t.first(ch.seq, ch.t.firstErrAt[1], ch.t.firstErr)
		}
		if len(ch.t.values) > 0 {
			t.value(ch.seq, ch.t.values[0])
		}
		clear(ch.members) // drop the id strings
		ch.members = ch.members[:0]
		free <- ch
	}
	if scanErr != nil && !stopped {
		yield("", scanErr)
	}
}

// evaluate runs the rule over the chunk's records.
func (ch *chunk) evaluate(m *Matcher) {
	ch.t = tally{values: ch.t.values[:0]}
	var value float64
	for i := range ch.n {
		r := &ch.recs[i]
		ok, err := m.matchRecord(r)
		ch.t.evaluated++
		if err != nil {
			ch.t.error(0, int64(i), err)
			continue
		}
		if ok {
			ch.t.members++
			value += r.c.Scores.ExpectedValue
			ch.members = append(ch.members, r.c.ID)
		}
		r.c.ID = "" // the id string is not kept past the chunk
	}
	ch.t.values = append(ch.t.values, value)
}
