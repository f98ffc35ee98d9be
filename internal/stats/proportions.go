package stats

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Interval is a two-sided confidence interval, Lower <= Upper.
type Interval struct{ Lower, Upper float64 }

// MinGroupSize is the smallest group TooFewToSay lets through. Ten is
// where a figure starts to be more than one customer's behaviour:
//
//   - below ten customers, one customer moves a group's rate by more than
//     ten percentage points, more than any plausible campaign effect;
//   - a group of n with no conversions has a Wilson upper bound of
//     z²/(n+z²), 0.2775 at n = 10 and 95% (Newcombe 1998), rising fast
//     below ten, so the uplift interval is at least that wide on one side
//     whatever happens and cannot separate realistic effects from none;
//   - the p-value is a large-sample approximation (the z-test), which
//     single-digit groups do not support.
//
// The rule looks at group sizes only, never at outcomes, so whether a
// result is reported does not depend on what the result is.
const MinGroupSize = 10

// TooFewToSay reports whether either group is too small for an interval
// to mean anything (fewer than MinGroupSize customers). CompareProportions
// and MantelHaenszel still compute on smaller groups; callers are expected
// to report "too few to say" instead of the figures.
func TooFewToSay(n1, n2 int64) bool { return n1 < MinGroupSize || n2 < MinGroupSize }

// z returns the two-sided normal quantile of a confidence level, the z with
// P(|Z| ≤ z) = conf. It takes the lower-tail quantile of (1−conf)/2, a
// small number float64 holds to full relative precision, whereas
// 1−(1−conf)/2 rounds to 1, and its quantile to +Inf, for conf within
// 1e-16 of 1.
func z(conf float64) (float64, error) {
	if !(conf > 0 && conf < 1) {
		return 0, fmt.Errorf("%w: confidence level %v is not in (0, 1)", ErrInvalidInput, conf)
	}
	return -distuv.UnitNormal.Quantile((1 - conf) / 2), nil
}

// checkCount validates x conversions among a group of n customers.
func checkCount(x, n int64) error {
	switch {
	case n <= 0:
		return fmt.Errorf("%w: a group of %d customers", ErrInvalidInput, n)
	case x < 0 || x > n:
		return fmt.Errorf("%w: %d converted out of %d customers", ErrInvalidInput, x, n)
	}
	return nil
}

// Wilson returns the Wilson score interval (no continuity correction) for
// x successes in n trials at two-sided confidence conf. It inverts the
// score test, so unlike the Wald interval it stays inside [0, 1] and has
// positive width at x = 0 and x = n. It fails with ErrInvalidInput on
// n <= 0, x outside [0, n] or conf outside (0, 1).
func Wilson(x, n int64, conf float64) (Interval, error) {
	if err := checkCount(x, n); err != nil {
		return Interval{}, fmt.Errorf("wilson interval: %w", err)
	}
	zz, err := z(conf)
	if err != nil {
		return Interval{}, fmt.Errorf("wilson interval: %w", err)
	}
	return wilson(float64(x), float64(n), zz), nil
}

// wilson is the score interval for x of n at normal quantile z.
func wilson(x, n, z float64) Interval {
	p := x / n
	z2 := z * z
	center := (2*n*p + z2) / (2 * (n + z2))
	half := z * math.Sqrt(z2+4*n*p*(1-p)) / (2 * (n + z2))
	w := Interval{Lower: math.Max(0, center-half), Upper: math.Min(1, center+half)}
	// With no conversions (or all) the bound is 0 (or 1) exactly; say so
	// rather than a rounding error away from it.
	if x == 0 {
		w.Lower = 0
	}
	if x == n {
		w.Upper = 1
	}
	return w
}

// Difference compares a treatment group (x1 of n1 converted) with a
// holdout group (x2 of n2).
type Difference struct {
	// Rate1 and Rate2 are x1/n1 and x2/n2.
	Rate1, Rate2 float64
	// Diff is Rate1 − Rate2, the absolute uplift.
	Diff float64
	// CI is Newcombe's hybrid score interval for Diff (method 10 of
	// Newcombe 1998, Statistics in Medicine 17:873–890), built from the
	// groups' Wilson intervals without continuity correction. Unlike the
	// Wald interval it never collapses to zero width at 0% or 100% rates
	// and never leaves [−1, 1].
	CI Interval
	// RelativeUplift is Diff / Rate2, set when HasRelative.
	RelativeUplift float64
	// HasRelative reports whether RelativeUplift is set: false when the
	// holdout rate is 0, where a relative uplift is undefined (it is left
	// 0 rather than ±Inf or NaN).
	HasRelative bool
	// PValue is the two-sided p-value of the pooled two-proportion z-test
	// (Pearson's χ² with one degree of freedom, no continuity correction);
	// 1 when the pooled rate is 0 or 1 (nothing to tell apart).
	PValue float64
}

// CompareProportions compares two independent proportions at two-sided
// confidence conf: Newcombe's hybrid score interval (method 10), built
// from the groups' Wilson intervals, and the pooled z-test. Counts are
// intent to treat (see the package comment). It fails with
// ErrInvalidInput on an empty group, a negative count, more conversions
// than customers or conf outside (0, 1).
func CompareProportions(x1, n1, x2, n2 int64, conf float64) (Difference, error) {
	if err := checkCount(x1, n1); err != nil {
		return Difference{}, fmt.Errorf("compare proportions: treatment group: %w", err)
	}
	if err := checkCount(x2, n2); err != nil {
		return Difference{}, fmt.Errorf("compare proportions: holdout group: %w", err)
	}
	zz, err := z(conf)
	if err != nil {
		return Difference{}, fmt.Errorf("compare proportions: %w", err)
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	w1, w2 := wilson(float64(x1), float64(n1), zz), wilson(float64(x2), float64(n2), zz)
	d := Difference{Rate1: p1, Rate2: p2, Diff: p1 - p2}
	// Each limit combines the two groups' Wilson half-widths on the side
	// that moves the difference that way (Newcombe 1998, eq. for method 10).
	// In exact arithmetic the limits stay within [−1, 1]; the clamp absorbs
	// rounding.
	d.CI = Interval{
		Lower: math.Max(-1, d.Diff-math.Hypot(p1-w1.Lower, w2.Upper-p2)),
		Upper: math.Min(1, d.Diff+math.Hypot(w1.Upper-p1, p2-w2.Lower)),
	}
	if p2 > 0 {
		d.RelativeUplift, d.HasRelative = d.Diff/p2, true
	}
	d.PValue = pooledZTest(x1, n1, x2, n2)
	return d, nil
}

func sq(v float64) float64 { return v * v }

// pooledZTest is the two-sided p-value of the pooled two-proportion z-test.
// It sums in float64 so that counts near the int64 limit cannot overflow.
func pooledZTest(x1, n1, x2, n2 int64) float64 {
	p := (float64(x1) + float64(x2)) / (float64(n1) + float64(n2))
	se := math.Sqrt(p * (1 - p) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 1
	}
	zs := (float64(x1)/float64(n1) - float64(x2)/float64(n2)) / se
	return twoSidedP(zs)
}

// twoSidedP is P(|Z| >= |z|) for a standard normal Z. It takes the lower
// tail, CDF(−|z|), which gonum computes with erfc and so keeps its relative
// precision far out. gonum's Survival is 1 − erf: it loses digits from
// |z| ≈ 5 and is 0 beyond |z| ≈ 8.4, z values that campaigns of a few
// hundred thousand customers reach routinely.
func twoSidedP(z float64) float64 {
	return 2 * distuv.UnitNormal.CDF(-math.Abs(z))
}
