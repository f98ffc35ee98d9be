package scoring

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestFeatures checks the per-customer features in the BTYD conventions.
func TestFeatures(t *testing.T) {
	t.Parallel()
	end := date("2024-03-31")
	day := func(s string) time.Time { return date(s) }
	tests := []struct {
		name string
		csv  string // rows after the header
		o    Options
		want map[string]customer.Features
	}{{
		name: "same-day purchases count once, amounts summed",
		csv: `a,2024-01-01,10
a,2024-01-01,5
a,2024-01-15,20
a,2024-01-15,2.5
a,2024-03-04,7`,
		want: map[string]customer.Features{"a": {Frequency: 2, Recency: 9, Age: 90.0 / 7, Monetary: (22.5 + 7) / 2,
			Transactions: 5, TotalSpend: 44.5, FirstPurchase: day("2024-01-01"), LastPurchase: day("2024-03-04"),
			RecencyDays: 27, TenureDays: 90}},
	}, {
		name: "out-of-order rows give the same features",
		csv: `b,2024-03-04,7
b,2024-01-15,20
b,2024-01-01,10
b,2024-01-15,2.5
b,2024-02-01,1
b,2024-01-01,5
b,2024-02-01,1`,
		want: map[string]customer.Features{"b": {Frequency: 3, Recency: 9, Age: 90.0 / 7, Monetary: (22.5 + 7 + 2) / 3,
			Transactions: 7, TotalSpend: 46.5, FirstPurchase: day("2024-01-01"), LastPurchase: day("2024-03-04"),
			RecencyDays: 27, TenureDays: 90}},
	}, {
		name: "monetary excludes the first purchase; one-time buyers have none",
		csv: `c,2024-03-01,100
d,2024-02-01,100
d,2024-02-02,10
d,2024-02-03,20`,
		want: map[string]customer.Features{
			"c": {Frequency: 0, Recency: 0, Age: 30.0 / 7, Monetary: 0, Transactions: 1, TotalSpend: 100,
				FirstPurchase: day("2024-03-01"), LastPurchase: day("2024-03-01"), RecencyDays: 30, TenureDays: 30},
			"d": {Frequency: 2, Recency: 2.0 / 7, Age: 59.0 / 7, Monetary: 15, Transactions: 3, TotalSpend: 130,
				FirstPurchase: day("2024-02-01"), LastPurchase: day("2024-02-03"), RecencyDays: 57, TenureDays: 59}},
	}, {
		name: "transactions after the observation end are ignored; days as the unit",
		csv: `e,2024-03-30,1
e,2024-03-31,2
e,2024-04-01,4
f,2024-04-02,8`,
		o: Options{TimeUnit: 1},
		want: map[string]customer.Features{"e": {Frequency: 1, Recency: 1, Age: 1, Monetary: 2, Transactions: 2,
			TotalSpend: 3, FirstPurchase: day("2024-03-30"), LastPurchase: day("2024-03-31"), RecencyDays: 0, TenureDays: 1}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.o
			o.ObservationEnd = end
			o.Clock = fixedClock(end)
			res, cs := collect(t, csvReader("customer_id,date,amount\n"+tc.csv+"\n"), o)
			if len(cs) != len(tc.want) {
				t.Fatalf("scored %d customers, want %d", len(cs), len(tc.want))
			}
			for id, want := range tc.want {
				got := cs[id].Features
				if got.Frequency != want.Frequency || !approx(got.Recency, want.Recency) || !approx(got.Age, want.Age) ||
					!approx(got.Monetary, want.Monetary) || got.Transactions != want.Transactions ||
					!approx(got.TotalSpend, want.TotalSpend) || !got.FirstPurchase.Equal(want.FirstPurchase) ||
					!got.LastPurchase.Equal(want.LastPurchase) || got.RecencyDays != want.RecencyDays ||
					got.TenureDays != want.TenureDays {
					t.Errorf("%s: features\n got %+v\nwant %+v", id, got, want)
				}
			}
			_ = res
		})
	}
}

// TestOutOfOrderRescan shuffles a log: customers whose distinct days cannot
// be counted in one pass are re-read, and every feature matches the sorted log.
func TestOutOfOrderRescan(t *testing.T) {
	t.Parallel()
	data := string(synthLog(3000, 7))
	lines := strings.Split(strings.TrimSpace(data), "\n")
	hdr, rows := lines[0], lines[1:]
	shuffled := append([]string(nil), rows...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, k int) { shuffled[i], shuffled[k] = shuffled[k], shuffled[i] })
	for _, workers := range []int{1, 2} {
		o := Options{ObservationEnd: benchEnd, CalibrationEnd: date("2024-06-30"), Workers: workers, Clock: fixedClock(benchEnd)}
		resA, a := collect(t, benchReader([]byte(data)), o)
		resB, b := collect(t, benchReader([]byte(hdr+"\n"+strings.Join(shuffled, "\n")+"\n")), o)
		if resA.Rereads != 0 || resB.Rereads != 1 || resB.OutOfOrder == 0 {
			t.Errorf("rereads sorted %d, shuffled %d (out of order %d)", resA.Rereads, resB.Rereads, resB.OutOfOrder)
		}
		if len(a) != len(b) || resA.Transactions != resB.Transactions {
			t.Fatalf("customers %d vs %d, transactions %d vs %d", len(a), len(b), resA.Transactions, resB.Transactions)
		}
		for id, ca := range a {
			fa, fb := ca.Features, b[id].Features
			fa.Monetary, fb.Monetary = math.Round(fa.Monetary*1e6), math.Round(fb.Monetary*1e6)
			fa.TotalSpend, fb.TotalSpend = math.Round(fa.TotalSpend*1e6), math.Round(fb.TotalSpend*1e6)
			if fa != fb {
				t.Fatalf("%s: sorted %+v\nshuffled %+v", id, fa, fb)
			}
		}
		for i, m := range resA.Models {
			if m.Holdout != nil && (resB.Models[i].Holdout == nil || m.Holdout.Actual != resB.Models[i].Holdout.Actual) {
				t.Errorf("%s holdout actual differs: %+v vs %+v", m.Name, m.Holdout, resB.Models[i].Holdout)
			}
		}
		t.Logf("workers %d: %d of %d customers re-read", workers, resB.OutOfOrder, len(b))
	}
}

// TestSegAdd covers the distinct-day counter's exact and uncertain cases.
func TestSegAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		days      []int32
		wantDays  int32
		uncertain bool
	}{
		{[]int32{5, 5, 6, 9, 9}, 3, false},
		{[]int32{9, 5, 5, 9}, 2, false},
		{[]int32{5, 9, 7}, 3, false},     // only first and last seen: 7 is new
		{[]int32{5, 9, 7, 7}, 3, true},   // 7 again: cannot tell
		{[]int32{5, 6, 7, 6}, 3, false},  // every day of the range seen
		{[]int32{5, 9, 3, 4}, 4, true},   // 4 between first and last
		{[]int32{10, 8, 6, 4}, 4, false}, // always earlier than the first
	}
	for _, tc := range tests {
		var s seg
		unc := false
		for _, d := range tc.days {
			unc = s.add(d, 1) || unc
		}
		if unc != tc.uncertain || (!unc && s.days != tc.wantDays) {
			t.Errorf("%v: days %d uncertain %v, want %d %v", tc.days, s.days, unc, tc.wantDays, tc.uncertain)
		}
		if s.rows != int32(len(tc.days)) || s.total != float64(len(tc.days)) {
			t.Errorf("%v: rows %d total %v", tc.days, s.rows, s.total)
		}
	}
}

// TestHoldoutFolded checks that folding the holdout period into the
// records after the summary (to free it before the fits) changes no
// customer's features: feat after the fold is bit for bit feat before it,
// for sorted and shuffled logs (the latter re-read) and Auto's default
// holdout.
func TestHoldoutFolded(t *testing.T) {
	t.Parallel()
	data := string(synthLog(3000, 5))
	lines := strings.Split(strings.TrimSpace(data), "\n")
	shuffled := append([]string(nil), lines[1:]...)
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(shuffled), func(i, k int) { shuffled[i], shuffled[k] = shuffled[k], shuffled[i] })
	logs := map[string]string{"sorted": data, "shuffled": lines[0] + "\n" + strings.Join(shuffled, "\n") + "\n"}
	for _, workers := range []int{1, 2} {
		held := Options{ObservationEnd: benchEnd, CalibrationEnd: date("2024-06-30"), Workers: workers, Clock: fixedClock(benchEnd)}
		auto := Options{ObservationEnd: benchEnd, Model: Auto, Workers: workers, Clock: fixedClock(benchEnd)}
		for _, o := range []Options{held, auto} {
			for name, log := range logs {
				p, err := o.compile()
				if err != nil {
					t.Fatal(err)
				}
				j := newJob(p, nil)
				if err := j.read(t.Context(), benchReader([]byte(log))); err != nil {
					t.Fatal(err)
				}
				before := make([][]feat, len(j.shards))
				for si, s := range j.shards {
					for i := int32(0); i < s.n; i++ {
						before[si] = append(before[si], s.feat(i))
					}
				}
				if err := j.summarize(); err != nil {
					t.Fatal(err)
				}
				n := 0
				for si, s := range j.shards {
					if !s.folded || s.b.pages != nil {
						t.Fatalf("%s, workers %d: shard %d not folded", name, workers, si)
					}
					for i := int32(0); i < s.n; i++ {
						if got := s.feat(i); got != before[si][i] {
							t.Fatalf("%s, workers %d: customer %s\nbefore the fold %+v\nafter          %+v", name, workers, s.id(i), before[si][i], got)
						}
						n++
					}
				}
				if n != 3000 {
					t.Fatalf("%s: %d customers", name, n)
				}
			}
		}
	}
}
