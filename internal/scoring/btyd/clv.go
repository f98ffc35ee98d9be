package btyd

import (
	"fmt"
	"math"
)

// CLVOptions sets the horizon and discounting of CustomerLifetimeValue.
type CLVOptions struct {
	// Periods is the number of discounting periods (default 12).
	Periods int
	// UnitsPerPeriod is the length of a period in the model's time unit
	// (default 4.345: a month in weeks, as lifetimes' freq "W").
	UnitsPerPeriod float64
	// DiscountRate is the discount rate per period (default 0.01).
	DiscountRate float64
}

func (o CLVOptions) withDefaults() (CLVOptions, error) {
	if o.Periods == 0 {
		o.Periods = 12
	}
	if o.UnitsPerPeriod == 0 {
		o.UnitsPerPeriod = 4.345
	}
	if o.DiscountRate == 0 {
		o.DiscountRate = 0.01
	}
	if o.Periods < 0 || !(o.UnitsPerPeriod > 0) || math.IsInf(o.UnitsPerPeriod, 1) || !(o.DiscountRate > -1) || math.IsInf(o.DiscountRate, 1) {
		return o, fmt.Errorf("%w: CLV options %+v", ErrInvalidInput, o)
	}
	return o, nil
}

// CustomerLifetimeValue returns the discounted value of one customer's
// future purchases, as lifetimes' customer_lifetime_value:
//
//	CLV = Σ_{i=1}^{n} spend · (E[Y(i·u)] − E[Y((i−1)·u)]) / (1+d)^i,
//
// with E[Y(t)] = m.ExpectedPurchases(t, x, t_x, T) in the model's time unit,
// u = UnitsPerPeriod, d = DiscountRate per period and n = Periods: the
// expected purchases of each period, valued at spend (typically
// GammaGamma.ExpectedSpend(x, mean)) and discounted to the end of the
// calibration period at the period's end. It fails with ErrInvalidInput on
// invalid options, summary or spend (negative or not finite).
func CustomerLifetimeValue(m Model, x int32, tx, T, spend float64, o CLVOptions) (float64, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, fmt.Errorf("customer lifetime value: %w", err)
	}
	if m == nil {
		return 0, fmt.Errorf("customer lifetime value: %w: nil model", ErrInvalidInput)
	}
	if err := validSummary(x, tx, T); err != nil {
		return 0, fmt.Errorf("customer lifetime value: %w", err)
	}
	if !(spend >= 0) || math.IsInf(spend, 1) {
		return 0, fmt.Errorf("customer lifetime value: %w: spend %v", ErrInvalidInput, spend)
	}
	var clv, prev float64
	disc := 1.0
	for i := 1; i <= o.Periods; i++ {
		cum := m.ExpectedPurchases(float64(i)*o.UnitsPerPeriod, x, tx, T)
		disc /= 1 + o.DiscountRate
		clv += spend * math.Max(cum-prev, 0) * disc
		prev = cum
	}
	return finiteOr(clv, 0), nil
}
