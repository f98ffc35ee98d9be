package scoring

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// Benchmarks read SCORING_BENCH_CSV (customer_id,date,amount with ISO
// dates, e.g. from `retention-operator generate`, see
// hack/bench-scoring.sh) or, without it, an in-memory log of
// SCORING_BENCH_CUSTOMERS (default 200 000) synthetic BG/NBD customers
// over three years ending 2024-12-31, sorted by date.
var benchData = sync.OnceValue(func() []byte {
	if p := os.Getenv("SCORING_BENCH_CSV"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		return b
	}
	n := 200_000
	if s := os.Getenv("SCORING_BENCH_CUSTOMERS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	return synthLog(n, 1)
})

var benchEnd = date("2024-12-31")

// synthLog simulates n BG/NBD customers (r=0.243, α=1, a=0.793, b=6 per
// week; first purchases uniform over 2022–2024) and returns their
// transactions sorted by date.
func synthLog(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	m := btyd.BGNBD{R: 0.243, Alpha: 1, A: 0.793, B: 6}
	gg := btyd.GammaGamma{P: 6.25, Q: 3.74, V: 15.44}
	start := date("2022-01-01")
	days := int32(benchEnd.Sub(start).Hours()/24) + 1
	type row struct {
		c, d int32
		amt  float64
	}
	var rows []row
	for c := int32(0); c < int32(n); c++ {
		first := rng.Int32N(days)
		times := btyd.SimulateBGNBD(rng, m, float64(days-1-first)/7)
		amts := btyd.SimulateGammaGamma(rng, gg, len(times)+1)
		rows = append(rows, row{c, first, amts[0]})
		for i, t := range times {
			rows = append(rows, row{c, first + int32(t*7), amts[i+1]})
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return int(a.d - b.d) })
	var buf bytes.Buffer
	buf.WriteString("customer_id,date,amount\n")
	for _, r := range rows {
		fmt.Fprintf(&buf, "c%07d,%s,%.2f\n", r.c, start.AddDate(0, 0, int(r.d)).Format("2006-01-02"), r.amt)
	}
	return buf.Bytes()
}

func benchReader(b []byte) source.Reader {
	return &source.CSV{Transactions: source.FromBytes(b), Mapping: source.Mapping{
		Timestamp: "date", DateLayout: "2006-01-02", MaxRejectedRatio: 1}}
}

func benchOptions() Options {
	return Options{ObservationEnd: benchEnd, Clock: RealClock{}, HorizonDays: 364, AnnualDiscountPercent: 10}
}

func reportRows(b *testing.B, rows int) {
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkScore(b *testing.B) {
	data := benchData()
	rows := bytes.Count(data, []byte{'\n'}) - 1
	for _, model := range []btyd.ModelName{btyd.NameBGNBD, Auto} {
		b.Run(string(model), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				o := benchOptions()
				o.Model = model
				var n int
				res, err := Score(context.Background(), benchReader(data), o, func(*customer.Scored) error { n++; return nil })
				if err != nil {
					b.Fatal(err)
				}
				if int64(n) != res.Customers {
					b.Fatal("emitted", n, "of", res.Customers)
				}
				b.ReportMetric(float64(res.Triples), "triples")
			}
			reportRows(b, rows)
		})
	}
}

// preparedJob returns a job after the read (and, with summarize, after
// the summary stage).
func preparedJob(b *testing.B, o Options, summarize bool) *job {
	p, err := o.compile()
	if err != nil {
		b.Fatal(err)
	}
	j := newJob(p, nil)
	if err := j.read(context.Background(), benchReader(benchData())); err != nil {
		b.Fatal(err)
	}
	if summarize {
		if err := j.summarize(); err != nil {
			b.Fatal(err)
		}
	}
	return j
}

func BenchmarkAggregate(b *testing.B) {
	data := benchData()
	rows := bytes.Count(data, []byte{'\n'}) - 1
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			o := benchOptions()
			o.Workers = w
			p, _ := o.compile()
			for b.Loop() {
				j := newJob(p, nil)
				if err := j.read(context.Background(), benchReader(data)); err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, rows)
		})
	}
}

func BenchmarkSummarize(b *testing.B) {
	j := preparedJob(b, benchOptions(), false)
	for b.Loop() {
		j.total, j.scored = 0, 0
		j.m = merged{}
		j.spendStats.excluded, j.spendStats.monN, j.spendStats.monSum, j.spendStats.firstSum = 0, 0, 0, 0
		j.res = &Result{}
		if err := j.summarize(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFit(b *testing.B) {
	for _, model := range []btyd.ModelName{btyd.NameBGNBD, btyd.NameMBGNBD, btyd.NameParetoNBD, Auto} {
		b.Run(string(model), func(b *testing.B) {
			o := benchOptions()
			o.Model = model
			j := preparedJob(b, o, true)
			spends, calTriples, groups := j.m.spends, j.m.calTriples, j.m.groups
			for b.Loop() {
				j.res = &Result{}
				j.model = nil
				j.m.spends, j.m.calTriples, j.m.groups = spends, calTriples, groups
				if err := j.fit(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkScoreRank(b *testing.B) {
	j := preparedJob(b, benchOptions(), true)
	if err := j.fit(context.Background()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		j.res.Population = Population{}
		j.rankRFM()
		j.scoreTriples()
		j.scoreCustomers()
		j.rankValue()
	}
	b.ReportMetric(float64(j.pairs), "pairs")
	b.ReportMetric(float64(len(j.m.triples)), "triples")
}
