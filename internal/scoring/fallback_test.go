package scoring

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// TestFallbacks: when no model can be fitted, scores fall back (finally to
// RFM only) with the reason in the Result, and nothing is NaN.
func TestFallbacks(t *testing.T) {
	t.Parallel()
	end := date("2024-03-31")
	var oneTime, sameAmount strings.Builder
	oneTime.WriteString("customer_id,date,amount\n")
	sameAmount.WriteString("customer_id,date,amount\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&oneTime, "c%d,2024-%02d-%02d,%d\n", i, 1+i%3, 1+i%28, 10+i%7)
		fmt.Fprintf(&sameAmount, "c%d,2024-01-%02d,10\nc%d,2024-%02d-%02d,10\n", i, 1+i%28, i, 2+i%2, 1+(i*7)%28)
		if i%3 == 0 {
			fmt.Fprintf(&sameAmount, "c%d,2024-03-%02d,10\n", i, 1+(i*5)%28)
		}
	}
	tests := []struct {
		name         string
		r            source.Reader
		o            Options
		selected     btyd.ModelName
		fallback     string // substring of Result.Fallback ("" none)
		spendFitted  bool
		spendReason  string
		checkValueEq float64 // when > 0: every repeat buyer's expected spend
	}{
		{name: "no repeat buyers: RFM only", r: csvReader(oneTime.String()), selected: RFMOnly,
			fallback: "no repeat buyers", spendReason: "no customer with repeat purchases"},
		{name: "fits stopped after one iteration: RFM only", r: cdnowReader(t),
			o:        Options{ObservationEnd: date("1997-09-30"), Fit: btyd.FitOptions{MaxIterations: 1}},
			selected: RFMOnly, fallback: "did not converge", spendReason: "did not converge"},
		// Whichever model is published on this data (BG/NBD converges to
		// its Poisson limit here), a model other than BG/NBD must come
		// with a reason.
		{name: "spend does not vary: Gamma-Gamma not identifiable", r: csvReader(sameAmount.String()),
			spendReason: "not identifiable", checkValueEq: 10},
		{name: "Auto with every fit failing", r: cdnowReader(t),
			o: Options{Model: Auto, ObservationEnd: date("1998-06-30"), CalibrationEnd: date("1997-09-30"),
				Fit: btyd.FitOptions{MaxIterations: 1}},
			selected: RFMOnly, fallback: "no transaction model could be fitted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.o
			if o.ObservationEnd.IsZero() {
				o.ObservationEnd = end
			}
			o.Clock = fixedClock(end)
			res, cs := collect(t, tc.r, o)
			switch {
			case tc.selected == "":
				if res.Selected != btyd.NameBGNBD && !strings.Contains(res.Fallback, string(btyd.NameBGNBD)+":") {
					t.Errorf("selected %s without saying why BG/NBD was not: %q", res.Selected, res.Fallback)
				}
			case res.Selected != tc.selected:
				t.Errorf("selected %s, want %s (fallback %q)", res.Selected, tc.selected, res.Fallback)
			}
			if !strings.Contains(res.Fallback, tc.fallback) {
				t.Errorf("fallback %q, want it to mention %q", res.Fallback, tc.fallback)
			}
			if res.Spend.Fitted != tc.spendFitted || !strings.Contains(res.Spend.Fallback, tc.spendReason) {
				t.Errorf("spend %+v, want fitted %v with reason %q", res.Spend, tc.spendFitted, tc.spendReason)
			}
			if len(cs) == 0 || int64(len(cs)) != res.Customers {
				t.Fatalf("emitted %d of %d", len(cs), res.Customers)
			}
			var paSum float64
			for id, c := range cs {
				paSum += c.Scores.PAlive
				if tc.checkValueEq > 0 && c.Features.Frequency > 0 && c.Scores.ExpectedSpend != tc.checkValueEq {
					t.Errorf("%s: expected spend %v, want %v", id, c.Scores.ExpectedSpend, tc.checkValueEq)
				}
				if res.Selected == RFMOnly && !approx(c.Scores.PAlive, c.Scores.RecencyPercentile/100) {
					t.Errorf("%s: RFM-only P(alive) %v, recency percentile %v", id, c.Scores.PAlive, c.Scores.RecencyPercentile)
				}
			}
			if !(paSum > 0) {
				t.Error("every P(alive) is 0")
			}
			t.Logf("selected %s; fallback %q; spend %q", res.Selected, res.Fallback, res.Spend.Fallback)
		})
	}
}

// TestDegenerate: data that cannot be scored is a clear error; data that
// can only partly be modelled falls back, never producing NaN.
func TestDegenerate(t *testing.T) {
	t.Parallel()
	end := date("2024-03-31")
	tests := []struct {
		name     string
		csv      string
		err      error // expected error, or nil
		selected btyd.ModelName
	}{
		{name: "header only", csv: "", err: ErrNoCustomers},
		{name: "every purchase after the end", csv: "a,2024-04-01,1\nb,2024-05-01,2\n", err: ErrNoCustomers},
		{name: "one customer", csv: "a,2024-01-01,10\na,2024-02-01,20\na,2024-03-01,5\n", selected: RFMOnly},
		{name: "all purchases on the last day", csv: "a,2024-03-31,10\nb,2024-03-31,20\nb,2024-03-31,5\n", selected: RFMOnly},
		{name: "all purchases on one earlier day", csv: "a,2024-02-01,10\nb,2024-02-01,20\nc,2024-02-01,5\n", selected: RFMOnly},
		{name: "zero amounts", csv: "a,2024-01-01,0\na,2024-02-01,0\nb,2024-01-15,0\nb,2024-03-01,0\nc,2024-03-03,0\nd,2024-02-02,0\nd,2024-02-20,0\n"},
		{name: "negative amounts (refunds)", csv: "a,2024-01-01,10\na,2024-02-01,-10\nb,2024-01-15,5\nb,2024-03-01,7\nc,2024-03-03,1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := csvReader("customer_id,date,amount\n" + tc.csv)
			o := Options{ObservationEnd: end, Clock: fixedClock(end)}
			if tc.err != nil {
				res, err := Score(t.Context(), r, o, func(*customer.Scored) error { t.Error("emitted"); return nil })
				if !errors.Is(err, tc.err) || res != nil {
					t.Fatalf("Score = %v, %v; want %v", res, err, tc.err)
				}
				return
			}
			res, cs := collect(t, r, o)
			if tc.selected != "" && res.Selected != tc.selected {
				t.Errorf("selected %s, want %s", res.Selected, tc.selected)
			}
			if res.Selected == RFMOnly && res.Fallback == "" {
				t.Error("RFM only without a fallback reason")
			}
			for id, c := range cs {
				if c.Scores.ExpectedValue < 0 || c.Scores.ExpectedSpend < 0 {
					t.Errorf("%s: negative value %+v", id, c.Scores)
				}
			}
			t.Logf("selected %s fallback %q spend %q", res.Selected, res.Fallback, res.Spend.Fallback)
		})
	}
}

// TestAutoPicksLowestHoldoutMAE: Auto on CDNOW (calibration to 1997-09-30,
// holdout to 1998-06-30) fits all three models, reports their holdout
// errors and publishes the one with the lowest MAE, refitted on the whole period.
func TestAutoPicksLowestHoldoutMAE(t *testing.T) {
	t.Parallel()
	res, cs := collect(t, cdnowReader(t), Options{Model: Auto, TimeUnit: 7,
		CalibrationEnd: date("1997-09-30"), ObservationEnd: date("1998-06-30"), Clock: fixedClock(date("2000-01-01"))})
	best, bestMAE := btyd.ModelName(""), math.Inf(1)
	for _, name := range transactionModels {
		m := res.Model(name, Calibration)
		if m == nil || m.Holdout == nil || !m.Converged {
			t.Fatalf("%s: no converged calibration fit with a holdout report: %+v", name, m)
		}
		h := m.Holdout
		if h.Customers != 2357 || h.Actual != 1882 {
			t.Errorf("%s holdout: %v customers, %v actual purchases; want 2357, 1882", name, h.Customers, h.Actual)
		}
		var n float64
		for _, b := range h.Buckets {
			n += b.Customers
		}
		if n != h.Customers {
			t.Errorf("%s: buckets hold %v customers of %v", name, n, h.Customers)
		}
		if h.MAE < bestMAE {
			best, bestMAE = name, h.MAE
		}
		t.Logf("%-9s MAE %.4f RMSE %.4f predicted %.1f actual %.0f", name, h.MAE, h.RMSE, h.Predicted, h.Actual)
	}
	if res.Selected != best || !strings.Contains(res.Selection, "MAE") || res.Fallback != "" {
		t.Errorf("selected %s (%s, fallback %q), want %s", res.Selected, res.Selection, res.Fallback, best)
	}
	if p := res.Published(); p == nil || p.Period != Observation || p.Name != best {
		t.Errorf("published %+v", p)
	}
	if res.Selected != btyd.NameParetoNBD {
		t.Logf("note: CDNOW's winner changed from ParetoNBD to %s", res.Selected)
	}
	// Published features cover the whole period.
	if c := cs["00004"]; c.Features.Frequency != 3 || !c.Features.LastPurchase.Equal(date("1997-12-12")) {
		t.Errorf("customer 00004 features %+v", c.Features)
	}
	t.Logf("selected %s: %s", res.Selected, res.Selection)
}

// TestFactorisation checks E[Y(t)|x,t_x,T] = P(alive)·h(t; x, T) and the
// expected value against btyd's own CustomerLifetimeValue.
func TestFactorisation(t *testing.T) {
	t.Parallel()
	models := []btyd.Model{
		btyd.BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426},
		btyd.MBGNBD{R: 0.5248, Alpha: 6.183, A: 0.8914, B: 1.614},
		btyd.ParetoNBD{R: 0.5533, Alpha: 10.58, S: 0.6062, Beta: 11.67},
	}
	p, err := Options{HorizonDays: 364, AnnualDiscountPercent: 10, ObservationEnd: date("2024-01-01")}.compile()
	if err != nil {
		t.Fatal(err)
	}
	j := &job{p: p}
	summaries := [][3]float64{{0, 0, 30}, {0, 0, 0.5}, {2, 30.43, 38.86}, {1, 0, 10}, {10, 5, 70}, {40, 60, 61}, {5, 52, 52}}
	for _, m := range models {
		f := newFactored(m, 39)
		for _, s := range summaries {
			x, tx, T := int32(s[0]), s[1], s[2]
			want := m.ExpectedPurchases(39, x, tx, T)
			if got := f.ExpectedPurchases(39, x, tx, T); math.Abs(got-want) > 1e-12*math.Max(want, 1e-300) {
				t.Errorf("%s %v: factored %v, direct %v", m.Name(), s, got, want)
			}
			c := j.pairCurve(m, x, T)
			if !c.ok {
				t.Errorf("%s %v: curve not ok", m.Name(), s)
				continue
			}
			clv, err := btyd.CustomerLifetimeValue(m, x, tx, T, 1, btyd.CLVOptions{Periods: p.periods,
				UnitsPerPeriod: p.periodUnits, DiscountRate: p.periodRate})
			if err != nil {
				t.Fatal(err)
			}
			pa := m.PAlive(x, tx, T)
			if got := pa * c.d; math.Abs(got-clv) > 1e-9*math.Max(clv, 1e-300) {
				t.Errorf("%s %v: value factor %v, btyd CLV %v", m.Name(), s, got, clv)
			}
			if got, want := pa*c.h, m.ExpectedPurchases(p.horizon, x, tx, T); math.Abs(got-want) > 1e-9*math.Max(want, 1e-300) {
				t.Errorf("%s %v: horizon purchases %v, want %v", m.Name(), s, got, want)
			}
		}
	}
}

// TestWorkersAgree: one or two shards give the same scores, and a run is
// deterministic (same order of emission).
func TestWorkersAgree(t *testing.T) {
	t.Parallel()
	data := synthLog(4000, 11)
	o := Options{ObservationEnd: benchEnd, Model: Auto, HoldoutPeriod: 120 * 24 * 3600e9, AnnualDiscountPercent: 10,
		Clock: fixedClock(benchEnd), CustomScores: []CustomScore{{Name: "v", Expression: "customer.expectedValue * 2.0"}}}
	var orders [][]string
	var results []map[string]customer.Scored
	for _, w := range []int{1, 2, 2} {
		o.Workers = w
		var order []string
		res, err := Score(t.Context(), benchReader(data), o, func(c *customer.Scored) error { order = append(order, c.ID); return nil })
		if err != nil {
			t.Fatal(err)
		}
		_, cs := collect(t, benchReader(data), o)
		orders = append(orders, order)
		results = append(results, cs)
		_ = res
	}
	if strings.Join(orders[1], ",") != strings.Join(orders[2], ",") {
		t.Error("two runs with two workers emitted in different orders")
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }
	for id, a := range results[0] {
		b := results[1][id]
		sa, sb := a.Scores, b.Scores
		if a.Features != b.Features || !close(sa.PAlive, sb.PAlive) || !close(sa.ExpectedValue, sb.ExpectedValue) ||
			sa.RecencyScore != sb.RecencyScore || sa.FrequencyScore != sb.FrequencyScore || sa.MonetaryScore != sb.MonetaryScore ||
			!close(sa.Custom["v"], sb.Custom["v"]) {
			t.Fatalf("%s: one worker %+v\ntwo workers %+v", id, a, b)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	end := date("2024-03-31")
	for _, o := range []Options{
		{TimeUnit: -7},
		{Model: "Magic"},
		{ObservationEnd: end, CalibrationEnd: end},
		{ObservationEnd: end, CalibrationEnd: date("2024-01-01"), HoldoutPeriod: 1},
		{HoldoutPeriod: 3600e9},
		{HorizonDays: -1},
		{AnnualDiscountPercent: 120},
		{AtRiskThreshold: 1.5},
		{RetentionPeriodDays: -3},
		{MaxRejectedRatio: -1},
	} {
		_, err := Score(context.Background(), csvReader(smallLog), o, nil)
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: error %v, want ErrInvalidOptions", o, err)
		}
	}
	if _, err := Score(context.Background(), nil, Options{}, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("nil reader: %v", err)
	}
}
