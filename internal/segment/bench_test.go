package segment

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
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
