package segment

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"runtime/debug"
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
// on one goroutine and split over two:
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
		r, err := Compile(tc.rule, benchSchema)
		if err != nil {
			b.Fatal(err)
		}
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", tc.name, workers), func(b *testing.B) {
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

// evaluateSlice splits pop into workers contiguous parts, each evaluated
// by its own Matcher.
func evaluateSlice(tb testing.TB, r *Rule, now time.Time, pop []customer.Scored, workers int) int64 {
	var wg sync.WaitGroup
	counts := make([]int64, workers)
	per := (len(pop) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(pop))
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := r.NewMatcher(now)
			for i := lo; i < hi; i++ {
				ok, err := m.Match(&pop[i])
				if err != nil {
					tb.Error(err)
					return
				}
				if ok {
					counts[w]++
				}
			}
		}()
	}
	wg.Wait()
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
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
