package scoring

import (
	"math"
	"testing"

	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// checkPrinted checks got rounds to want at want's printed precision.
func checkPrinted(t *testing.T, what string, got, want float64, decimals int) {
	t.Helper()
	half := 0.5 * math.Pow(10, -float64(decimals))
	if !(math.Abs(got-want) <= half*(1+1e-9)) {
		t.Errorf("%s = %.6f, want %.*f to printed precision", what, got, decimals, want)
	}
}

func TestCDNOWThroughScore(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		res, cs := collect(t, cdnowReader(t), Options{
			TimeUnit: 7, ObservationEnd: date("1997-09-30"), Model: btyd.NameBGNBD, Workers: workers,
			Clock: fixedClock(date("2000-01-01")),
		})
		m := res.Published()
		if m == nil {
			t.Fatalf("no published model: %+v", res)
		}
		t.Logf("workers %d: %+v", workers, *m)
		t.Logf("spend %+v", res.Spend)
		t.Logf("population %+v customers %d transactions %d triples %d", res.Population, res.Customers, res.Transactions, res.Triples)
		checkPrinted(t, "r", m.Params["r"], 0.243, 3)
		checkPrinted(t, "alpha", m.Params["alpha"], 4.414, 3)
		checkPrinted(t, "a", m.Params["a"], 0.793, 3)
		checkPrinted(t, "b", m.Params["b"], 2.426, 3)
		checkPrinted(t, "LL", m.LogLikelihood, -9582.4, 1)
		if res.Customers != 2357 || len(cs) != 2357 {
			t.Errorf("customers %d (emitted %d), want 2357", res.Customers, len(cs))
		}
	}
}

func TestCDNOWAutoHoldout(t *testing.T) {
	t.Parallel()
	res, _ := collect(t, cdnowReader(t), Options{
		TimeUnit: 7, CalibrationEnd: date("1997-09-30"), ObservationEnd: date("1998-06-30"), Model: Auto,
		Clock: fixedClock(date("2000-01-01")),
	})
	for _, m := range res.Models {
		t.Logf("%s %s %v LL %.2f conv %v it %d", m.Name, m.Period, m.Params, m.LogLikelihood, m.Converged, m.Iterations)
		if h := m.Holdout; h != nil {
			t.Logf("  holdout actual %.0f predicted %.1f MAE %.4f RMSE %.4f", h.Actual, h.Predicted, h.MAE, h.RMSE)
			for _, b := range h.Buckets {
				t.Logf("   x=%d n=%4.0f actual %.3f predicted %.3f", b.X, b.Customers, b.MeanActual, b.MeanPredicted)
			}
		}
	}
	t.Logf("selected %s: %s; fallback %q", res.Selected, res.Selection, res.Fallback)
	t.Logf("durations %+v", res.Durations)
}
