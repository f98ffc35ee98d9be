package campaign

import (
	"math"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/store"
)

// TestMeasure: the conversion rule, on day-granular purchase dates, with
// the reference time in the afternoon of 10 March and a one-week window.
func TestMeasure(t *testing.T) {
	t.Parallel()
	ref := time.Date(2026, 3, 10, 15, 30, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	base := store.Baseline{Transactions: 4, Spend: 100, ReferenceAt: ref, WindowEnd: ref.Add(7 * 24 * time.Hour)}
	for _, tc := range []struct {
		name       string
		tx         int32
		spend      float64
		last       time.Time
		converts   bool
		setRevenue bool
		revenue    float64
	}{
		{"no new purchase", 4, 100, day(8), false, false, 0},
		{"new purchase on the reference day (before or after the send: both groups alike)", 5, 130, day(10), true, true, 30},
		{"new purchase the day before the reference", 5, 130, day(9), false, false, 0},
		{"two purchases, the last inside the window", 6, 180, day(14), true, true, 80},
		{"on the window end's day (before the end's time)", 5, 120, day(17), true, true, 20},
		{"after the window: cannot tell, nothing moves", 5, 120, day(18), false, false, 0},
		{"fewer transactions than the baseline (a correction)", 3, 90, day(12), false, false, 0},
		{"a refund lowers spend: revenue never negative", 5, 80, day(12), true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &customer.Scored{Features: customer.Features{Transactions: tc.tx, TotalSpend: tc.spend, LastPurchase: tc.last}}
			b := base
			got := Measure(&b, c)
			if got.ConvertedAt.IsZero() == tc.converts || got.SetRevenue != tc.setRevenue || math.Abs(got.Revenue-tc.revenue) > 1e-9 {
				t.Fatalf("Measure = %+v; want converts %v, revenue %v (set %v)", got, tc.converts, tc.revenue, tc.setRevenue)
			}
			if tc.converts && !got.ConvertedAt.Equal(tc.last) {
				t.Fatalf("converted at %v, want the purchase day %v", got.ConvertedAt, tc.last)
			}
		})
	}
}

func TestForecast(t *testing.T) {
	t.Parallel()
	params := map[string]float64{"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
	f, err := Forecast("BGNBD", params, 7, 28*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := btyd.BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	c := &customer.Scored{Features: customer.Features{Frequency: 2, Recency: 30, Age: 38}}
	if got, want := f(c), m.ProbPurchase(4, 2, 30, 38); got != want || got <= 0 || got >= 1 {
		t.Fatalf("forecast %v, want P(purchase in 4 weeks) = %v", got, want)
	}
	for _, tc := range []struct {
		model  string
		params map[string]float64
	}{
		{"BGNBD", map[string]float64{"r": 0.2, "alpha": 4, "a": 0.8}},
		{"ParetoNBD", map[string]float64{"r": 0.2, "alpha": 4, "s": -1, "beta": 3}},
		{"RFMOnly", params},
	} {
		if _, err := Forecast(tc.model, tc.params, 7, time.Hour); err == nil {
			t.Errorf("Forecast(%s, %v) took it", tc.model, tc.params)
		}
	}
}
