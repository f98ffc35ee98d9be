// Package scoring runs the whole scoring job of a customer source: it
// streams the source once, aggregates every customer into one small
// fixed-size record, compresses customers into distinct (x, t_x, T)
// summaries, fits the BTYD models of package btyd on them, scores every
// customer (P(alive), expected purchases, spend and value over a horizon,
// RFM quintiles, percentiles, custom CEL scores) and streams the scored
// customers to the caller, which writes them into a store snapshot.
//
// The package does no I/O of its own and never calls time.Now: the clock
// is an option.
package scoring

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// job is one run of Score: the shards of customers and the stage results.
type job struct {
	p      *plan
	res    *Result
	progs  []customProgram
	shards []*shard
	nsums  int64

	m          merged
	spendStats struct {
		excluded, monN, scored int64
		monSum, firstSum       float64
	}
	model btyd.Model
	gg    btyd.GammaGamma
	// per global triple
	pa, ep, disc []float64
	pairs        int

	base   []int // per shard: first global customer id
	dense  []int // per shard: first position among scored customers
	total  int   // customers (global ids)
	scored int64
	// per global customer id (shard base + index)
	tri        []int32   // triple index; negative: not scored
	value      []float64 // expected value
	customVals []float64 // custom scores, len(progs) per customer

	recCnt, freqCnt, monCnt, valCnt []uint32
	ranker                          ranker
}

// Score runs the scoring job on the customers r streams and calls emit
// once per scored customer, after every customer is scored (so a failed
// run emits nothing), in a deterministic order. A nil emit only computes
// the Result.
//
// The record passed to emit, its Attributes map and its Scores.Custom map
// are reused for the next customer: emit must copy what it keeps (store
// snapshot writers encode it at once). An error from emit stops the run
// and is returned wrapped.
//
// Steps:
//  1. Read: every transaction up to the observation end updates its
//     customer's fixed-size record (per period: first and last day, number
//     of distinct days, rows, amount of the first day, total); customer
//     records merge attributes and contact by id (the last wins); summary
//     rows (push-down) set a customer's (x, t_x, T, monetary) directly.
//     Rows may come in any order; see seg for when the source is read a
//     second time for a few customers.
//  2. Summarize: customers become distinct (x, t_x, T) triples with counts.
//     Purchases on the same day count once: x = distinct days − 1,
//     t_x = (last − first day)/unit, T = (end − first day)/unit, monetary =
//     mean value of the repeat purchase days.
//  3. Fit: Options.Model by maximum likelihood; with a holdout, every model
//     on the calibration period with its holdout report, then the chosen
//     model (Auto: lowest holdout MAE) refitted on the whole period. A model
//     that cannot be fitted falls back to the next of its family (BG/NBD →
//     MBG/NBD → Pareto/NBD, …) and finally to RFM-only scores, where
//     P(alive) is the recency percentile; Result.Fallback says why.
//     Gamma-Gamma is fitted on the repeat buyers concurrently.
//  4. Score once per distinct triple, rank (RFM quintiles by histogram or
//     radix sort), evaluate the custom scores, emit.
//
// Score fails before reading anything on invalid Options
// (ErrInvalidOptions) or a custom score that cannot be used
// (*CustomScoreError); with ErrNoCustomers when nobody bought in the
// observed period; with the reader's error (e.g.
// *source.TooManyRejectedError) when the read fails.
func Score(ctx context.Context, r source.Reader, opts Options, emit func(*customer.Scored) error) (*Result, error) {
	p, err := opts.compile()
	if err != nil {
		return nil, err
	}
	progs, err := compileCustomScores(p.o.CustomScores, p.o.CELCostLimit)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%w: nil reader", ErrInvalidOptions)
	}
	j := newJob(p, progs)
	clock := p.o.Clock
	start := clock.Now()
	last := start
	stage := func(d *time.Duration) {
		now := clock.Now()
		*d += now.Sub(last)
		last = now
	}
	res := j.res
	if err := j.read(ctx, r); err != nil {
		return nil, err
	}
	// The read's id index and batches are garbage now. Collecting them
	// before the summary allocates its sort buffers keeps the heap from
	// growing toward a goal set at the read's peak, whatever point of the
	// read the last collection happened to run at.
	runtime.GC()
	stage(&res.Durations.Read)
	if err := j.summarize(); err != nil {
		return nil, err
	}
	// The sort buffers are not needed while fitting; the ranking makes
	// new ones. Collecting now, with the read's index and batches gone,
	// sets the heap goal from a small live heap before the fits allocate.
	j.ranker = ranker{}
	runtime.GC()
	stage(&res.Durations.Summarize)
	if err := j.fit(ctx); err != nil {
		return nil, err
	}
	// The fits' inputs (btyd's indexes, the calibration triples) are
	// garbage now: collecting them here (a few milliseconds: the heap
	// holds almost no pointers) lets the score and rank buffers reuse
	// their memory instead of growing the heap toward a goal set before
	// the fits.
	runtime.GC()
	stage(&res.Durations.Fit)
	j.rankRFM()
	stage(&res.Durations.Rank)
	j.scoreTriples()
	j.scoreCustomers()
	stage(&res.Durations.Score)
	j.rankValue()
	stage(&res.Durations.Rank)
	j.custom()
	stage(&res.Durations.Custom)
	if err := j.emit(ctx, emit); err != nil {
		return nil, err
	}
	stage(&res.Durations.Emit)
	res.Durations.Total = clock.Now().Sub(start)
	return res, nil
}

func newJob(p *plan, progs []customProgram) *job {
	j := &job{p: p, progs: progs, res: &Result{TimeUnit: p.unit, ObservationEnd: dayTime(p.end)}}
	if p.holdout {
		j.res.CalibrationEnd = dayTime(p.split)
	}
	return j
}

// read streams the source into the shards (and re-reads it for customers
// whose distinct days could not be counted in one pass).
func (j *job) read(ctx context.Context, r source.Reader) error {
	p := j.p
	j.shards = make([]*shard, p.workers)
	for i := range j.shards {
		j.shards[i] = newShard(p)
	}
	prog := newProgress(p)
	agg := newAggregator(p, j.shards, prog)
	rep, err := r.Read(ctx, agg)
	agg.close()
	if prog != nil {
		prog.done(agg.seen)
	}
	if err != nil {
		return fmt.Errorf("scoring: reading the source: %w", err)
	}
	if rep == nil {
		rep = &source.Report{}
	}
	if max := p.o.MaxRejectedRatio; max > 0 && rep.Rejected > 0 && rep.RejectedRatio() > max {
		return &source.TooManyRejectedError{Report: rep, MaxRatio: max}
	}
	res := j.res
	res.Source = rep
	res.Rejected = rep.Rejected
	res.Late = agg.late
	var dirty int64
	for _, s := range j.shards {
		if s.err != nil {
			return s.err
		}
		dirty += s.dirty
		j.nsums += s.nsums
	}
	if dirty > 0 {
		res.Rereads = 1
		res.OutOfOrder = dirty
		if err := j.rescan(ctx, r); err != nil {
			return err
		}
	}
	for _, s := range j.shards {
		res.Transactions += s.txns
		s.index = idIndex{} // only the read looks customers up by id
	}
	return nil
}

// signedKey maps a day to an unsigned value of the same order.
func signedKey(d int32) uint64 { return uint64(uint32(d) ^ 1<<31) }

// rescan reads the source again, keeping the rows of the customers whose
// distinct days were uncertain, and recomputes their records from those
// rows sorted by day. Only those customers' rows are held.
func (j *job) rescan(ctx context.Context, r source.Reader) error {
	p := j.p
	type spill struct {
		keys []uint64 // customer index << 32 | day
		amts []float64
	}
	sp := make([]spill, len(j.shards))
	n := len(j.shards)
	sink := source.SinkFuncs{OnTransaction: func(t *source.Transaction) error {
		if t.Day > p.end {
			return nil
		}
		h := hashID(t.CustomerID)
		si := shardOfHash(h, n)
		s := j.shards[si]
		idx := s.lookup(h, t.CustomerID)
		if idx < 0 || s.recs.at(idx).flags&flagDirty == 0 {
			return nil
		}
		sp[si].keys = append(sp[si].keys, uint64(idx)<<32|signedKey(t.Day))
		sp[si].amts = append(sp[si].amts, t.Amount)
		return nil
	}}
	if _, err := r.Read(ctx, sink); err != nil {
		return fmt.Errorf("scoring: re-reading the source for out-of-order customers: %w", err)
	}
	parallel(j.shards, func(si int, s *shard) {
		keys, amts := sp[si].keys, sp[si].amts
		ids := make([]uint32, len(keys))
		for i := range ids {
			ids[i] = uint32(i)
		}
		var rk ranker
		if len(keys) > 0 {
			keys, ids = rk.radixSort(keys, ids)
		}
		for i := 0; i < len(keys); {
			idx := int32(keys[i] >> 32)
			a := &s.recs.at(idx).a
			var b *seg
			old := a.rows
			*a = seg{}
			if p.holdout {
				b = s.b.at(idx)
				old += b.rows
				*b = seg{}
			}
			fl := &s.recs.at(idx).flags
			*fl &^= flagDirty | flagPrev | flagLast
			var rows int64
			for ; i < len(keys) && int32(keys[i]>>32) == idx; i++ {
				day := int32(uint32(keys[i]) ^ 1<<31)
				amt := amts[ids[i]]
				rows++
				sg := a
				if day > p.split {
					sg = b
				}
				sg.add(day, amt)
				if day > p.lastFrom {
					*fl |= flagLast
				} else if day > p.prevFrom {
					*fl |= flagPrev
				}
			}
			s.txns += rows - int64(old)
		}
		s.dirty = 0
	})
	return nil
}

// fill writes customer idx of shard si (scored) into rec, without custom
// scores and attributes.
func (j *job) fill(si int, s *shard, idx int32, rec *customer.Scored) {
	f := s.feat(idx)
	g := j.base[si] + int(idx)
	tri := j.tri[g]
	rec.ID = s.id(idx)
	rec.Features = customer.Features{
		Frequency: f.x, Recency: f.tx, Age: f.T, Monetary: finite(f.mv),
		Transactions: f.rows, TotalSpend: finite(f.total),
		FirstPurchase: dayTime(f.first), LastPurchase: dayTime(f.last),
		RecencyDays: f.recDays, TenureDays: f.tenDays,
	}
	custom := rec.Scores.Custom
	rec.Scores = customer.Scores{Custom: custom}
	j.customerScores(&f, tri, g, &rec.Scores)
	rec.Scores.ExpectedValue = j.value[g]
	n := j.scored
	rec.Scores.RecencyScore = quintile(j.recCnt[g], n)
	rec.Scores.FrequencyScore = quintile(j.freqCnt[g], n)
	rec.Scores.MonetaryScore = quintile(j.monCnt[g], n)
	rec.Scores.RecencyPercentile = percentile(j.recCnt[g], n)
	rec.Scores.FrequencyPercentile = percentile(j.freqCnt[g], n)
	rec.Scores.ValuePercentile = percentile(j.valCnt[g], n)
}

// custom evaluates the custom scores of every scored customer, one
// goroutine (and one activation) per shard.
func (j *job) custom() {
	k := len(j.progs)
	if k == 0 {
		return
	}
	issues := make([][]CustomScoreIssues, len(j.shards))
	j.customVals = make([]float64, j.total*k)
	parallel(j.shards, func(si int, s *shard) {
		iss := make([]CustomScoreIssues, k)
		var rec customer.Scored
		act := &activation{c: &rec}
		base := j.base[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			if j.tri[g] < 0 {
				continue
			}
			j.fill(si, s, i, &rec)
			for pi := range j.progs {
				v, prob, err := evalCustom(&j.progs[pi], act)
				j.customVals[g*k+pi] = v
				if prob == 0 {
					continue
				}
				is := &iss[pi]
				switch prob {
				case 'e':
					is.Errors++
				case 'n':
					is.NonNumeric++
				default:
					is.NonFinite++
				}
				if is.First == "" {
					is.First = err.Error()
				}
			}
		}
		issues[si] = iss
	})
	for pi, pr := range j.progs {
		var sum CustomScoreIssues
		for _, iss := range issues {
			is := iss[pi]
			sum.Errors += is.Errors
			sum.NonNumeric += is.NonNumeric
			sum.NonFinite += is.NonFinite
			if sum.First == "" {
				sum.First = is.First
			}
		}
		if sum.Errors+sum.NonNumeric+sum.NonFinite > 0 {
			if j.res.CustomScores == nil {
				j.res.CustomScores = map[string]CustomScoreIssues{}
			}
			j.res.CustomScores[pr.name] = sum
		}
	}
}

// emit streams every scored customer to fn, shard by shard.
func (j *job) emit(ctx context.Context, fn func(*customer.Scored) error) error {
	if fn == nil {
		return nil
	}
	k := len(j.progs)
	var rec customer.Scored
	if k > 0 {
		rec.Scores.Custom = make(map[string]float64, k)
	}
	for si, s := range j.shards {
		attrs := len(s.attrs.cols) > 0 || len(s.attrs.hasCont) > 0
		base := j.base[si]
		for i := int32(0); i < s.n; i++ {
			g := base + int(i)
			if j.tri[g] < 0 {
				continue
			}
			if i&0xffff == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("scoring: %w", err)
				}
			}
			j.fill(si, s, i, &rec)
			for pi, pr := range j.progs {
				rec.Scores.Custom[pr.name] = j.customVals[g*k+pi]
			}
			if attrs {
				if rec.Attributes == nil {
					rec.Attributes = customer.Attributes{}
				}
				rec.Contact = s.attrs.fill(i, rec.Attributes)
			} else {
				rec.Attributes = nil
				rec.Contact = customer.Contact{}
			}
			if err := fn(&rec); err != nil {
				return fmt.Errorf("scoring: emit: %w", err)
			}
		}
	}
	return nil
}
