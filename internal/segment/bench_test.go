package segment

import (
	"context"
	"fmt"
	"maps"
	"math/bits"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/postgres"
	"github.com/retention-dev/retention-operator/internal/store/sqlite"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// benchCustomers is the size of the benchmark population.
const benchCustomers = 1_000_000

// benchSchema is what storetest.Customer fills in.
var benchSchema = Schema{
	Attributes:   map[string]customer.AttributeType{"country": customer.String, "vip": customer.Bool, "signup": customer.Timestamp},
	CustomScores: []string{"churn_risk"},
}

// benchRule is the four-clause rule of the measurement in
// ARCHITECTURE.md.
const benchRule = `customer.pAlive < 0.5 && customer.recencyDays <= 365 && customer.frequency >= 1 && customer.expectedValue > 10.0`

var (
	benchOnce sync.Once
	benchPop  []customer.Scored
)

// population returns n customers made by storetest.Customer, kept in
// memory. The attribute and custom score maps (read-only here) are
// shared between customers with the same values, so a million records
// hold a thousand maps instead of two million.
func population(n int) []customer.Scored {
	benchOnce.Do(func() {
		const pool = 1000
		attrs := make([]customer.Attributes, pool)
		custom := make([]map[string]float64, pool)
		var c customer.Scored
		for i := range pool {
			storetest.Customer(i, &c)
			attrs[i] = maps.Clone(c.Attributes)
			custom[i] = maps.Clone(c.Scores.Custom)
		}
		benchPop = make([]customer.Scored, benchCustomers)
		for i := range benchPop {
			storetest.Customer(i, &c)
			benchPop[i] = c
			// Customer's attributes and custom score depend on i mod 1000
			// (country i%5, vip i%50, churn risk i%1000) but for signup;
			// shared maps keep the values of i mod 1000.
			benchPop[i].Attributes = attrs[i%pool]
			benchPop[i].Scores.Custom = custom[i%pool]
		}
	})
	return benchPop[:n]
}

// BenchmarkEvaluate1M evaluates rules over 1,000,000 customers in memory,
// on one goroutine and split over two, with the fast path (fastpath.go)
// and with CEL alone (cel); the Timestamps rule has no fast path:
//
//	go test -run '^$' -bench Evaluate1M -benchtime 5x ./internal/segment/
func BenchmarkEvaluate1M(b *testing.B) {
	pop := population(benchCustomers)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, rule string }{
		{"FourClauses", benchRule},
		{"Attributes", `customer.attributes.country == "IR" && !customer.attributes.vip && customer.custom.churn_risk > 0.5 && !customer.contact.optOut`},
		{"Timestamps", `customer.lastPurchase > now - duration("8760h") && customer.pAlive < 0.5`},
	} {
		compiled, err := Compile(tc.rule, benchSchema)
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []string{"fastpath", "cel"} {
			r := compiled
			switch {
			case path == "cel":
				r = noFast(compiled)
			case compiled.fast == nil:
				continue
			}
			for _, workers := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/goroutines=%d", tc.name, path, workers), func(b *testing.B) {
					var members int64
					b.ReportAllocs()
					for range b.N {
						members = evaluateSlice(b, r, now, pop, workers)
					}
					b.ReportMetric(float64(members), "members")
					b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/1M")
				})
			}
		}
	}
	b.Run("PlainGo", func(b *testing.B) {
		var members int64
		for range b.N {
			members = 0
			for i := range pop {
				c := &pop[i]
				if c.Scores.PAlive < 0.5 && c.Features.RecencyDays <= 365 && c.Features.Frequency >= 1 && c.Scores.ExpectedValue > 10 {
					members++
				}
			}
		}
		b.ReportMetric(float64(members), "members")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/1M")
	})
}

// BenchmarkEvaluateBatch200 evaluates the 200 rules of batchRules(200)
// over 1,000,000 customers in memory as MaterializeBatch's workers do
// (records copied into 512-customer chunks, every rule over each chunk),
// without a store, with the fast path and with CEL alone, on one
// goroutine and split over two. Run it once:
//
//	go test -run '^$' -bench EvaluateBatch200 -benchtime 1x ./internal/segment/
func BenchmarkEvaluateBatch200(b *testing.B) {
	pop := population(benchCustomers)
	var rules []*Rule
	for _, src := range batchRules(200) {
		r, err := Compile(src, benchSchema)
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, r)
	}
	for _, path := range []string{"fastpath", "cel"} {
		segs := make([]BatchSegment, len(rules))
		for k, r := range rules {
			if path == "cel" {
				r = noFast(r)
			}
			segs[k] = BatchSegment{Segment: fmt.Sprintf("bench/%d", k), Rule: r}
		}
		l := newLayout(segs)
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", path, workers), func(b *testing.B) {
				var members int64
				for range b.N {
					members = evaluateChunks(l, benchNow, pop, workers)
				}
				b.ReportMetric(float64(members)/float64(len(rules)), "members/rule")
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/1M")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rules)*len(pop)), "wall-ns/rule/customer")
			})
		}
	}
}

// fanOut splits n items into workers contiguous parts, counts each part
// with count(lo, hi) on a goroutine of its own, and sums the counts.
func fanOut(n, workers int, count func(lo, hi int) int64) int64 {
	var wg sync.WaitGroup
	counts := make([]int64, workers)
	per := (n + workers - 1) / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[w] = count(w*per, min((w+1)*per, n))
		}()
	}
	wg.Wait()
	var total int64
	for _, c := range counts {
		total += c
	}
	return total
}

// evaluateChunks splits pop into workers contiguous parts, each copied
// chunk by chunk into records and evaluated by every rule of l, and
// returns the members summed over the rules.
func evaluateChunks(l *layout, now time.Time, pop []customer.Scored, workers int) int64 {
	return fanOut(len(pop), workers, func(lo, hi int) (n int64) {
		ms := l.matchers(now)
		ch := &chunk{recs: make([]record, chunkSize), segs: make([]chunkResult, len(l.rules))}
		for i := range ch.recs {
			ch.recs[i] = l.newRecord()
		}
		for i := lo; i < hi; {
			ch.n = 0
			for ; i < hi && ch.n < chunkSize; i++ {
				ch.recs[ch.n].copyFrom(l, &pop[i])
				ch.n++
			}
			ch.evaluate(l, ms)
			for k := range ch.segs {
				for _, word := range ch.segs[k].bits {
					n += int64(bits.OnesCount64(word))
				}
			}
		}
		return n
	})
}

// evaluateSlice splits pop into workers contiguous parts, each evaluated
// by its own Matcher.
func evaluateSlice(tb testing.TB, r *Rule, now time.Time, pop []customer.Scored, workers int) int64 {
	return fanOut(len(pop), workers, func(lo, hi int) (n int64) {
		m := r.NewMatcher(now)
		for i := lo; i < hi; i++ {
			ok, err := m.Match(&pop[i])
			if err != nil {
				tb.Error(err)
				return n
			}
			if ok {
				n++
			}
		}
		return n
	})
}

// BenchmarkMaterialize1M evaluates rules over a 1,000,000-customer
// snapshot pre-written in the store (storetest.Customer records, not
// timed) and applies the membership: scan + evaluate + MembershipApply.
// Initial applies to a new segment (every member enters), Reapply to the
// same snapshot again (no change: the diff alone). PostgreSQL runs with
// its stock durability settings, as the store's own benchmarks:
//
//	go test -run '^$' -bench Materialize1M -benchtime 1x ./internal/segment/
func BenchmarkMaterialize1M(b *testing.B) {
	for _, d := range []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"SQLite", func(b *testing.B) store.Store {
			s, err := sqlite.OpenPath(context.Background(), filepath.Join(b.TempDir(), "bench.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"PostgreSQL", func(b *testing.B) store.Store {
			srv, err := pgtest.NewServer(&pgtest.Config{Settings: map[string]string{
				"fsync": "", "synchronous_commit": "", "full_page_writes": "", "max_wal_size": "",
			}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { srv.Stop() })
			s, err := postgres.Open(context.Background(), pgtest.NewDatabase(b, srv), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		b.Run(d.name, func(b *testing.B) {
			ctx := context.Background()
			st := d.open(b)
			defer st.Close()
			w, err := st.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "bench/shop"})
			if err != nil {
				b.Fatal(err)
			}
			var c customer.Scored
			for i := range benchCustomers {
				storetest.Customer(i, &c)
				if err := w.Add(&c); err != nil {
					b.Fatal(err)
				}
			}
			sn, err := w.Commit()
			if err != nil {
				b.Fatal(err)
			}
			b.Run("ScanOnly", func(b *testing.B) {
				// The floor: the store's scan alone, counting customers.
				var n int64
				for range b.N {
					n = 0
					err := st.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: sn.ID}, func(*customer.Scored) error {
						n++
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op-wall")
				b.ReportMetric(float64(n), "evaluated")
			})
			segments := 0
			for _, rc := range []struct {
				name, rule string
				workers    []int
			}{
				{"FourClauses", benchRule, []int{-1, 1, 2}},
				{"Half", `customer.pAlive < 0.5`, []int{-1, 1, 2}},
				{"HalfByAttribute", `customer.attributes.country in ["DE", "IR"] || customer.attributes.vip`, []int{1}},
			} {
				r, err := Compile(rc.rule, benchSchema)
				if err != nil {
					b.Fatal(err)
				}
				for _, workers := range rc.workers {
					b.Run(fmt.Sprintf("%s/workers=%d/Initial", rc.name, workers), func(b *testing.B) {
						var stats *Stats
						debug.FreeOSMemory()
						storetest.ResetPeakRSS()
						b.ResetTimer()
						for range b.N {
							segments++
							stats, err = Materialize(ctx, st, &MaterializeParams{
								Segment: fmt.Sprintf("bench/seg-%d", segments), SnapshotID: sn.ID, Rule: r, Now: benchNow, Workers: workers,
							})
							if err != nil {
								b.Fatal(err)
							}
						}
						reportMaterialize(b, stats)
					})
				}
				b.Run(rc.name+"/Reapply", func(b *testing.B) {
					segments++
					p := &MaterializeParams{Segment: fmt.Sprintf("bench/seg-%d", segments), SnapshotID: sn.ID, Rule: r, Now: benchNow}
					if _, err := Materialize(ctx, st, p); err != nil {
						b.Fatal(err)
					}
					var stats *Stats
					debug.FreeOSMemory()
					storetest.ResetPeakRSS()
					b.ResetTimer()
					for range b.N {
						if stats, err = Materialize(ctx, st, p); err != nil {
							b.Fatal(err)
						}
					}
					reportMaterialize(b, stats)
				})
			}
		})
	}
}

var benchNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func reportMaterialize(b *testing.B, s *Stats) {
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op-wall")
	b.ReportMetric(float64(s.Size), "members")
	b.ReportMetric(float64(s.Entered), "entered")
	b.ReportMetric(float64(s.Evaluated), "evaluated")
	b.ReportMetric(float64(storetest.PeakRSS())/(1<<20), "peak-RSS-MiB")
}

// BenchmarkMaterializeBatch1M evaluates 1, 20 and 200 segments in one
// scan of a 1,000,000-customer PostgreSQL snapshot (issue #19's scale
// target: every segment of a source current within 60 s of a snapshot,
// and at most 3 times the time of one segment). Initial applies new
// segments (every member enters); NewSnapshot then evaluates the same
// segments on a second snapshot in which every tenth customer's P(alive)
// changed, as a rescoring does: the time from a new snapshot until every
// segment is current, with a Baseline (only the changes are applied, as
// the operator does). AfterRestart does the same on a third snapshot with
// a new Baseline, as after an operator restart: the memberships are read
// back from the store. NewSnapshotFull does it on a fourth without one
// (every apply in full), for 1 and 20 segments. Run once per size:
//
//	go test -run '^$' -bench MaterializeBatch1M -benchtime 1x ./internal/segment/
func BenchmarkMaterializeBatch1M(b *testing.B) {
	ctx := context.Background()
	srv, err := pgtest.NewServer(&pgtest.Config{Settings: map[string]string{
		"fsync": "", "synchronous_commit": "", "full_page_writes": "", "max_wal_size": "",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop() })
	st, err := postgres.Open(ctx, pgtest.NewDatabase(b, srv), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	write := func(changed func(i int) bool) int64 {
		w, err := st.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "bench/shop"})
		if err != nil {
			b.Fatal(err)
		}
		var c customer.Scored
		for i := range benchCustomers {
			storetest.Customer(i, &c)
			if changed(i) {
				c.Scores.PAlive = 1 - c.Scores.PAlive
			}
			if err := w.Add(&c); err != nil {
				b.Fatal(err)
			}
		}
		sn, err := w.Commit()
		if err != nil {
			b.Fatal(err)
		}
		return sn.ID
	}
	snap1 := write(func(int) bool { return false })
	snap2 := write(func(i int) bool { return i%10 == 0 })
	snap3 := write(func(i int) bool { return i%10 == 5 })
	snap4 := write(func(i int) bool { return i%10 == 3 })
	for _, n := range []int{1, 20, 200} {
		p := &BatchParams{SnapshotID: snap1, Now: benchNow, Baseline: NewBaseline(), Workers: benchWorkers(b)}
		for k, rule := range batchRules(n) {
			r, err := Compile(rule, benchSchema)
			if err != nil {
				b.Fatal(err)
			}
			p.Segments = append(p.Segments, BatchSegment{Segment: fmt.Sprintf("bench/n%d-%d", n, k), Rule: r})
		}
		for _, step := range []struct {
			name          string
			snapshot      int64
			full, restart bool
		}{{"Initial", snap1, false, false}, {"NewSnapshot", snap2, false, false}, {"AfterRestart", snap3, false, true}, {"NewSnapshotFull", snap4, true, false}} {
			if step.full && n > 20 {
				continue // about 1.5 s a segment: the point is made with 20
			}
			b.Run(fmt.Sprintf("Segments=%d/%s", n, step.name), func(b *testing.B) {
				p.SnapshotID = step.snapshot
				switch {
				case step.full:
					p.Baseline = nil
				case step.restart:
					p.Baseline = NewBaseline() // read back from the store
				}
				var res []BatchResult
				debug.FreeOSMemory()
				storetest.ResetPeakRSS()
				b.ResetTimer()
				for range b.N {
					if res, err = MaterializeBatch(ctx, st, p); err != nil {
						b.Fatal(err)
					}
				}
				var members, changed int64
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					members += r.Stats.Size
					changed += r.Stats.Entered + r.Stats.Exited
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op-wall")
				b.ReportMetric(float64(members)/float64(n), "members/segment")
				b.ReportMetric(float64(changed)/float64(n), "changed/segment")
				b.ReportMetric(float64(storetest.PeakRSS())/(1<<20), "peak-RSS-MiB")
			})
		}
	}
}

// benchWorkers is BatchParams.Workers from $SEGMENT_BENCH_WORKERS (0,
// the default, when unset), to compare worker counts.
func benchWorkers(b *testing.B) int {
	v := os.Getenv("SEGMENT_BENCH_WORKERS")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("SEGMENT_BENCH_WORKERS: %v", err)
	}
	return n
}

// batchRules returns n rules of five shapes (a score threshold, two
// clauses on features and scores, an attribute and a score, a custom
// score or an attribute, the four-clause benchRule with other thresholds),
// with thresholds spread so that shares range from a few percent to most
// of the population.
func batchRules(n int) []string {
	countries := []string{"DE", "IR", "FR", "US", "BR"}
	rules := make([]string, n)
	for k := range rules {
		f := float64((k*37+50)%100) / 100 // k = 0: the median threshold, not an empty segment
		switch k % 5 {
		case 0:
			rules[k] = fmt.Sprintf(`customer.pAlive < %.2f`, 0.05+0.9*f)
		case 1:
			rules[k] = fmt.Sprintf(`customer.frequency >= %d && customer.expectedValue > %.1f`, 1+k%4, 150*f*f)
		case 2:
			rules[k] = fmt.Sprintf(`customer.attributes.country == "%s" && customer.pAlive > %.2f`, countries[k%5], f)
		case 3:
			rules[k] = fmt.Sprintf(`customer.custom.churn_risk > %.2f || customer.attributes.vip`, f)
		default:
			rules[k] = fmt.Sprintf(`customer.pAlive < %.2f && customer.recencyDays <= %d && customer.frequency >= 1 && customer.expectedValue > %.1f`,
				0.2+0.6*f, 60+(k*7)%600, 100*f)
		}
	}
	return rules
}
