package stats

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// maxAudience bounds SampleSize's answer so that it converts to an int64
// exactly; a plan needing more customers than this is not a plan.
const maxAudience = 1 << 62

// powerFactor is (z_{1−α/2} + z_{power}) for a two-sided test at level
// alpha with the given power. Both quantiles are taken from the tail
// probability (α/2 and 1−power), which keeps full relative precision near
// 0 where the complementary probability would round to 1.
func powerFactor(alpha, power float64) (float64, error) {
	if !(alpha > 0 && alpha < 1) || !(power > 0 && power < 1) {
		return 0, fmt.Errorf("%w: alpha %v and power %v must be in (0, 1)", ErrInvalidInput, alpha, power)
	}
	k := -distuv.UnitNormal.Quantile(alpha/2) - distuv.UnitNormal.Quantile(1-power)
	if !(k > 0) {
		// The test already rejects that often with no lift at all: no
		// effect size is the answer, and the formulas below would invert.
		return 0, fmt.Errorf("%w: power %v does not exceed what a level-%v test has with no lift", ErrInvalidInput, power, alpha)
	}
	return k, nil
}

// MinimumDetectableEffect returns the smallest absolute lift δ (the
// treatment's rate p0+δ minus the base rate p0) that a two-sided test at
// level alpha detects with the given power, for groups of nTreatment and
// nHoldout: the δ with (z_{1−α/2} + z_power)·√(p0(1−p0)/nHoldout +
// p1(1−p1)/nTreatment) = δ, p1 = p0 + δ (unpooled variances), found by
// bisection. It fails with ErrInvalidInput when the base rate is not in
// (0, 1) (at 1 nothing can rise, at 0 the normal approximation the formula
// rests on fails), a group is empty or alpha or power is outside (0, 1),
// and with ErrUnderpowered when no lift up to a rate of 1 is detectable.
func MinimumDetectableEffect(p0 float64, nTreatment, nHoldout int64, alpha, power float64) (float64, error) {
	if !(p0 > 0 && p0 < 1) {
		return 0, fmt.Errorf("%w: base rate %v is not in (0, 1)", ErrInvalidInput, p0)
	}
	if nTreatment <= 0 || nHoldout <= 0 {
		return 0, fmt.Errorf("%w: groups of %d and %d: an empty group detects nothing", ErrInvalidInput, nTreatment, nHoldout)
	}
	k, err := powerFactor(alpha, power)
	if err != nil {
		return 0, err
	}
	// gap is δ minus a concave function of δ (the square root of a concave
	// quadratic), so it is convex; it is negative at δ = 0, so it crosses
	// zero at most once on [0, 1−p0] and bisection finds that crossing.
	gap := func(d float64) float64 {
		p1 := p0 + d
		return d - k*math.Sqrt(p0*(1-p0)/float64(nHoldout)+math.Max(0, p1*(1-p1))/float64(nTreatment))
	}
	lo, hi := 0.0, 1-p0
	if gap(hi) < 0 {
		return 0, fmt.Errorf("%w: groups of %d and %d cannot detect any lift from a base rate of %v", ErrUnderpowered, nTreatment, nHoldout, p0)
	}
	for range 200 {
		mid := (lo + hi) / 2
		if gap(mid) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

// SampleSize returns the total audience (treatment plus holdout, the
// holdout a share holdoutShare of it) needed to detect a relative lift rel
// on base rate p0 with a two-sided test at level alpha and the given
// power, with the variances of MinimumDetectableEffect:
// N = (z_{1−α/2} + z_power)² · (p0(1−p0)/h + p1(1−p1)/(1−h)) / (p1−p0)²,
// p1 = p0(1+rel), rounded up. For a rate the campaign should lower (churn),
// plan on its complement (retention): the variance is the same.
// It fails with ErrInvalidInput when p0, holdoutShare, alpha or power is
// outside (0, 1), rel is not positive or p1 is not below 1, and with
// ErrUnderpowered when the audience would exceed 2^62.
func SampleSize(p0, rel, holdoutShare, alpha, power float64) (int64, error) {
	if !(p0 > 0 && p0 < 1) || !(rel > 0) || !(p0*(1+rel) < 1) {
		return 0, fmt.Errorf("%w: base rate %v with a relative lift of %v is not a pair of rates in (0, 1)", ErrInvalidInput, p0, rel)
	}
	if !(holdoutShare > 0 && holdoutShare < 1) {
		return 0, fmt.Errorf("%w: holdout share %v is not in (0, 1)", ErrInvalidInput, holdoutShare)
	}
	k, err := powerFactor(alpha, power)
	if err != nil {
		return 0, err
	}
	d := p0 * rel
	p1 := p0 + d
	n := k * k * (p0*(1-p0)/holdoutShare + p1*(1-p1)/(1-holdoutShare)) / (d * d)
	// Converting a float beyond the int64 range is implementation-defined
	// in Go (a tiny lift would come back as a negative audience); refuse
	// instead. The negated test also catches +Inf from a lift that
	// underflows to 0.
	if !(n <= maxAudience) {
		return 0, fmt.Errorf("%w: a relative lift of %v on a base rate of %v needs more than 2^62 customers", ErrUnderpowered, rel, p0)
	}
	return int64(math.Ceil(n)), nil
}

// SampleRatioMismatch tests observed group sizes against planned shares
// (summing to 1): Pearson's χ² goodness of fit with k−1 degrees of
// freedom. It returns the statistic and its p-value; a small p-value means
// the assignment did not split customers as planned, and no uplift
// measured on those groups should be trusted. It fails with
// ErrInvalidInput on fewer than two groups, mismatched lengths, a negative
// count, no customers at all, a share that is not positive, or shares not
// summing to 1 within 1e-9.
func SampleRatioMismatch(observed []int64, planned []float64) (chi2, p float64, err error) {
	if len(observed) < 2 || len(observed) != len(planned) {
		return 0, 0, fmt.Errorf("sample ratio: %w: %d groups against %d planned shares", ErrInvalidInput, len(observed), len(planned))
	}
	var total, shares float64 // float64: no int64 overflow on huge counts
	for i, o := range observed {
		if o < 0 || !(planned[i] > 0) {
			return 0, 0, fmt.Errorf("sample ratio: group %d: %w: %d observed against a planned share of %v", i, ErrInvalidInput, o, planned[i])
		}
		total += float64(o)
		shares += planned[i]
	}
	if total == 0 || !(math.Abs(shares-1) <= 1e-9) {
		return 0, 0, fmt.Errorf("sample ratio: %w: %v observed in all, planned shares summing to %v", ErrInvalidInput, total, shares)
	}
	for i, o := range observed {
		e := total * planned[i]
		chi2 += sq(float64(o)-e) / e
	}
	return chi2, chiSquareSurvival(chi2, len(observed)-1), nil
}

// chiSquareSurvival is P(X > x) for X χ²-distributed with df >= 1 degrees
// of freedom. It is unexported because gonum panics on df <= 0; every
// caller here passes a group count minus one, at least 1.
func chiSquareSurvival(x float64, df int) float64 {
	return distuv.ChiSquared{K: float64(df)}.Survival(x)
}
