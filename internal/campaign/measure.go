package campaign

import (
	"fmt"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/store"
)

// day is the granularity of purchase dates: a scored customer's
// LastPurchase is a UTC midnight.
const day = 24 * time.Hour

// Measure is the conversion rule of every run, the same for both groups
// (intent to treat), for store.RunMeasureParams.Measure. A target converts
// when a snapshot shows more transactions than its baseline, the last of
// them dated within the window. Purchase dates are days, so the window is
// taken in whole days from the reference day: a purchase on the day
// sending started counts whether it was made before or after the send —
// for both groups alike, which keeps the comparison fair (a rule that
// dropped that day would drop it from both groups too, and lose real
// conversions). The revenue is the spend beyond the baseline, updated
// while the snapshot shows nothing after the window; once it does, a
// later purchase could not be told apart from one inside the window, so
// the figures stop moving.
func Measure(b *store.Baseline, c *customer.Scored) store.Measured {
	last := c.Features.LastPurchase
	if last.Before(b.ReferenceAt.UTC().Truncate(day)) || !last.Before(b.WindowEnd) {
		return store.Measured{}
	}
	if int64(c.Features.Transactions) <= b.Transactions {
		return store.Measured{}
	}
	return store.Measured{ConvertedAt: last, Revenue: max(c.Features.TotalSpend-b.Spend, 0), SetRevenue: true}
}

// Forecast returns each customer's probability of at least one purchase
// within window under a fitted purchase model (parameters by name, as
// CustomerSource status reports them), with unitDays days to the model's
// time unit: the base conversion rate the minimum detectable effect is
// computed from, before anything is sent.
func Forecast(model string, params map[string]float64, unitDays float64, window time.Duration) (func(*customer.Scored) float64, error) {
	m, err := ModelFromParams(model, params)
	if err != nil {
		return nil, err
	}
	if unitDays <= 0 || window <= 0 {
		return nil, fmt.Errorf("campaign: forecast: unit of %v days, window %v", unitDays, window)
	}
	t := window.Hours() / 24 / unitDays
	return func(c *customer.Scored) float64 {
		f := &c.Features
		return m.ProbPurchase(t, f.Frequency, f.Recency, f.Age)
	}, nil
}

// ModelFromParams rebuilds a fitted purchase model from its name and
// parameters.
func ModelFromParams(name string, p map[string]float64) (btyd.Model, error) {
	get := func(keys ...string) ([]float64, error) {
		out := make([]float64, len(keys))
		for i, k := range keys {
			v, ok := p[k]
			if !ok || !(v > 0) {
				return nil, fmt.Errorf("campaign: model %s: parameter %q missing or not positive", name, k)
			}
			out[i] = v
		}
		return out, nil
	}
	switch btyd.ModelName(name) {
	case btyd.NameBGNBD, btyd.NameMBGNBD:
		v, err := get("r", "alpha", "a", "b")
		if err != nil {
			return nil, err
		}
		if btyd.ModelName(name) == btyd.NameMBGNBD {
			return btyd.MBGNBD{R: v[0], Alpha: v[1], A: v[2], B: v[3]}, nil
		}
		return btyd.BGNBD{R: v[0], Alpha: v[1], A: v[2], B: v[3]}, nil
	case btyd.NameParetoNBD:
		v, err := get("r", "alpha", "s", "beta")
		if err != nil {
			return nil, err
		}
		return btyd.ParetoNBD{R: v[0], Alpha: v[1], S: v[2], Beta: v[3]}, nil
	}
	return nil, fmt.Errorf("campaign: no purchase model %q", name)
}
